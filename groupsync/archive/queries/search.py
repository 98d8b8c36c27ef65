"""What the search index is built from and what a hit is shown with (``groupsync.search``).

Posts are followed by ``change_seq``: an index at N has seen every change up to N."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..connection import Connection
from . import in_list

# The columns of a post's index document, in ``search.documents._document``'s order.
_DOCUMENT_COLUMNS = """
    p.id, p.group_id, p.conversation_id, p.thread_id, p.changeKey, p.receivedDateTime,
    p.hasAttachments, p.categories, p.body_text, p.from_name, p.from_address,
    p.sender_name, p.sender_address, p.newParticipants, p.deleted_at, p.change_seq,
    t.topic, t.toRecipients, t.ccRecipients
"""
_DOCUMENTS = f"SELECT {_DOCUMENT_COLUMNS} FROM posts p LEFT JOIN threads t ON t.id = p.thread_id"
# The columns of a hit, in ``search.api._hit``'s order.
_HITS = """
    SELECT p.change_seq, p.id, p.thread_id, p.conversation_id, p.group_id, g.displayName,
        t.topic, p.sender_name, p.sender_address, p.from_name, p.from_address,
        p.receivedDateTime,
        p.hasAttachments OR EXISTS (SELECT 1 FROM attachments a
            WHERE a.post_id = p.id AND a.deleted_at IS NULL),
        p.deleted_at, p.body_text
    FROM posts p LEFT JOIN threads t ON t.id = p.thread_id
    LEFT JOIN groups g ON g.id = p.group_id
"""
_CHUNK = 500  # values per IN (...): well under SQLite's limit on parameters


def _chunked(
    archive: Connection, sql: str, name: str, values: list[Any]
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` with its ``{}`` the IN list of ``values``, run _CHUNK values at
    a time."""
    for start in range(0, len(values), _CHUNK):
        listed, params = in_list(name, values[start : start + _CHUNK])
        yield from archive.conn.execute(sql.format(listed), params)


def changed_document_rows(
    archive: Connection, after: int, upto: int, with_deleted: bool
) -> list[tuple[Any, ...]]:
    """Document rows of the posts changed after ``after`` up to ``upto`` (and every deleted
    post when ``with_deleted``: the index's choice about them changed), in change order."""
    where = "p.change_seq > :after AND p.change_seq <= :upto"
    if with_deleted:
        where = f"({where}) OR p.deleted_at IS NOT NULL"
    return archive.conn.execute(
        f"{_DOCUMENTS} WHERE {where} ORDER BY p.change_seq", {"after": after, "upto": upto}
    ).fetchall()


def _has_purges(archive: Connection) -> bool:
    """Whether posts can be purged in this archive (migration 006 added the column)."""
    return any(r[1] == "purged_at" for r in archive.conn.execute("PRAGMA table_info(posts)"))


def _rebuilt(archive: Connection, keep_deleted: bool) -> str:
    """Which posts a rebuild up to change ``:upto`` indexes: never a purged one."""
    where = "p.change_seq <= :upto" + ("" if keep_deleted else " AND p.deleted_at IS NULL")
    return where + (" AND p.purged_at IS NULL" if _has_purges(archive) else "")


def count_documents(archive: Connection, upto: int, keep_deleted: bool) -> int:
    """How many posts a rebuild up to change ``upto`` indexes."""
    where = _rebuilt(archive, keep_deleted)
    return int(
        archive.conn.execute(
            f"SELECT count(*) FROM posts p WHERE {where}", {"upto": upto}
        ).fetchone()[0]
    )


def document_rows(archive: Connection, upto: int, keep_deleted: bool) -> Iterator[tuple[Any, ...]]:
    """Document rows of a rebuild up to change ``upto``, by group and delivery time."""
    where = _rebuilt(archive, keep_deleted)
    yield from archive.conn.execute(
        f"{_DOCUMENTS} WHERE {where} ORDER BY p.group_id, p.receivedDateTime, p.rowid",
        {"upto": upto},
    )


def sample_texts(archive: Connection, limit: int) -> list[str]:
    """The bodies of the newest ``limit`` live posts: what a rebuild counts words in."""
    return [
        row[0]
        for row in archive.conn.execute(
            "SELECT body_text FROM posts WHERE deleted_at IS NULL AND body_text IS NOT NULL "
            "ORDER BY change_seq DESC LIMIT :limit",
            {"limit": limit},
        )
    ]


def live_attachments(
    archive: Connection, post_ids: list[str] | None
) -> Iterable[tuple[str, str | None, str | None, str | None, int | None]]:
    """Live attachments of some posts, or of all: ``(post_id, name, contentType, sha256,
    size)``."""
    sql = (
        "SELECT post_id, name, contentType, sha256, size FROM attachments "
        "WHERE deleted_at IS NULL"
    )
    if post_ids is None:
        return archive.conn.execute(sql)
    return list(_chunked(archive, sql + " AND post_id IN {}", "post", post_ids))


def post_change_states(archive: Connection) -> Iterator[tuple[str, int, int]]:
    """Every post the index should know: ``(id, change_seq, deleted)``; purged posts are
    left out (a document of one is extra)."""
    where = " WHERE purged_at IS NULL" if _has_purges(archive) else ""
    yield from archive.conn.execute(
        f"SELECT id, change_seq, deleted_at IS NOT NULL FROM posts{where}"
    )


def hit_rows(archive: Connection, seqs: list[int]) -> Iterator[tuple[Any, ...]]:
    """Hit rows of the posts at these changes."""
    yield from _chunked(archive, _HITS + " WHERE p.change_seq IN {}", "seq", seqs)


def hit_rows_after(archive: Connection, after: int) -> Iterator[tuple[Any, ...]]:
    """Hit rows of every post changed after change ``after``."""
    yield from archive.conn.execute(f"{_HITS} WHERE p.change_seq > :after", {"after": after})


def post_ids_at(archive: Connection, seqs: list[int]) -> list[str]:
    """The posts at these changes (the index names a post by its change), purged ones left
    out."""
    sql = "SELECT id FROM posts WHERE change_seq IN {} AND purged_at IS NULL"
    return [r[0] for r in _chunked(archive, sql, "seq", seqs)]


def purged_among(archive: Connection, post_ids: list[str]) -> set[str]:
    """Which of these posts a retention purge emptied: the index drops them whatever it
    keeps of deleted posts."""
    if not _has_purges(archive):
        return set()
    sql = "SELECT id FROM posts WHERE id IN {} AND purged_at IS NOT NULL"
    return {r[0] for r in _chunked(archive, sql, "post", post_ids)}
