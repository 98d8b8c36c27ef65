"""What ``export`` reads and records, and what ``export-check`` compares with."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from ..connection import Connection
from . import in_list


def group_labels(archive: Connection) -> dict[str, dict[str, Any]]:
    """Every archived group's names, by id."""
    cursor = archive.conn.execute("SELECT id, displayName, mail, mailNickname FROM groups")
    return {r[0]: {"displayName": r[1], "mail": r[2], "mailNickname": r[3]} for r in cursor}


def thread_roots(archive: Connection, group_ids: list[str]) -> dict[str, str]:
    """Each thread's first post (deleted ones too), in these groups (all if none)."""
    where, params = ("", {}) if not group_ids else _in_groups("group_id", group_ids)
    rows = archive.conn.execute(
        "SELECT thread_id, id, min(coalesce(receivedDateTime, createdDateTime, '') || id) "
        f"FROM posts {where} GROUP BY thread_id",
        params,
    )
    return {r[0]: r[1] for r in rows}


def _in_groups(column: str, group_ids: list[str]) -> tuple[str, dict[str, Any]]:
    values, params = in_list("group", group_ids)
    return f"WHERE {column} IN {values}", params


def _post_filter(
    group_ids: list[str], since: str | None, until: str | None, include_deleted: bool
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (on ``posts p``) and parameters every export selects posts by:
    groups, a delivery-time window (the first 19 characters) and deleted posts or not."""
    where: list[str] = []
    params: dict[str, Any] = {"since": since, "until": until}
    if group_ids:
        values, more = in_list("group", group_ids)
        where.append(f"p.group_id IN {values}")
        params.update(more)
    moment = "substr(coalesce(p.receivedDateTime, p.createdDateTime), 1, 19)"
    if since:
        where.append(f"{moment} >= :since")
    if until:
        where.append(f"{moment} <= :until")
    if not include_deleted:
        where.append("p.deleted_at IS NULL")
    return (f"WHERE {' AND '.join(where)}" if where else ""), params


def exported_posts(
    archive: Connection,
    group_ids: list[str],
    since: str | None,
    until: str | None,
    include_deleted: bool,
) -> Iterator[tuple[Any, ...]]:
    """The posts to export with their latest version, in group and delivery order:
    ``(id, group_id, thread_id, conversation_id, changeKey, deleted_at, in_reply_to_id,
    attachments_note, topic, json, sha256, delivered)``. ``since``/``until`` bound the
    first 19 characters of the delivery time."""
    clause, params = _post_filter(group_ids, since, until, include_deleted)
    yield from archive.conn.execute(
        f"""
        SELECT p.id, p.group_id, p.thread_id, p.conversation_id, p.changeKey,
            p.deleted_at, p.in_reply_to_id, p.attachments_note, t.topic, v.json, v.sha256,
            coalesce(p.receivedDateTime, p.createdDateTime)
        FROM posts AS p
        JOIN threads AS t ON t.id = p.thread_id
        JOIN post_versions AS v ON v.post_id = p.id AND v.changeKey = p.changeKey
        {clause}
        ORDER BY p.group_id, p.receivedDateTime, p.id
        """,
        params,
    )


def attachment_states(
    archive: Connection, post_id: str
) -> dict[str, tuple[str | None, str | None]]:
    """A post's archived attachments: ``id -> (sha256, deleted_at)``."""
    return {
        r[0]: (r[1], r[2])
        for r in archive.conn.execute(
            "SELECT id, sha256, deleted_at FROM attachments WHERE post_id = :post_id",
            {"post_id": post_id},
        )
    }


def start_export(archive: Connection, values: dict[str, Any]) -> int:
    """Record an export as running; its id. ``values`` holds the columns ``started_at``,
    ``identity``, ``os_user``, ``format``, ``out``, ``filters`` and ``chain_digest``."""
    with archive.atomic():
        cursor = archive.conn.execute(
            """
            INSERT INTO exports (started_at, status, identity, os_user, format, out, filters,
                chain_digest)
            VALUES (:started_at, 'running', :identity, :os_user, :format, :out, :filters,
                :chain_digest)
            """,
            values,
        )
    return int(cursor.lastrowid or 0)


def fail_export(
    archive: Connection, export_id: int, finished_at: str, error: str, posts: int
) -> None:
    """Record an export that stopped on an error."""
    with archive.atomic():
        archive.conn.execute(
            "UPDATE exports SET status = 'failed', finished_at = :finished_at, error = :error, "
            "posts = :posts WHERE id = :id",
            {"finished_at": finished_at, "error": error, "posts": posts, "id": export_id},
        )


def finish_export(archive: Connection, export_id: int, values: dict[str, Any]) -> None:
    """Record how an export ended: ``status``, ``finished_at``, its counts (``groups``,
    ``posts``, ``attachments``, ``files``, ``bytes``), ``manifest_sha256`` and ``error``."""
    with archive.atomic():
        archive.conn.execute(
            """
            UPDATE exports SET status = :status, finished_at = :finished_at, groups = :groups,
                posts = :posts, attachments = :attachments, files = :files, bytes = :bytes,
                manifest_sha256 = :manifest_sha256, error = :error
            WHERE id = :id
            """,
            {**values, "id": export_id},
        )


def has_digest(archive: Connection, digest: str) -> bool:
    """Whether a sealed run of the archive has this digest."""
    found = archive.conn.execute(
        "SELECT 1 FROM sync_runs WHERE digest = :digest", {"digest": digest}
    ).fetchone()
    return found is not None


def export_record(archive: Connection, export_id: Any, started_at: Any) -> dict[str, Any] | None:
    """The archive's record of an export (its ``manifest_sha256``), or None."""
    row = archive.conn.execute(
        "SELECT manifest_sha256 FROM exports WHERE id = :id AND started_at = :started_at",
        {"id": export_id, "started_at": started_at},
    ).fetchone()
    return None if row is None else {"manifest_sha256": row[0]}


def production_posts(
    archive: Connection,
    group_ids: list[str],
    since: str | None,
    until: str | None,
    include_deleted: bool,
    only: Collection[str] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The posts of a production (of these, when ``only`` is given), in control-number
    order: group, then conversation and thread (each by its first post's delivery, then id),
    then delivery and id. The same columns as ``exported_posts``. The order is sorted on ids
    alone and the rows fetched 500 at a time, so the sort never holds the versions' JSON."""
    clause, params = _post_filter(group_ids, since, until, include_deleted)
    delivered = "coalesce(p.receivedDateTime, p.createdDateTime, '')"
    ordered = [
        r[0]
        for r in archive.conn.execute(
            f"""
            SELECT p.id FROM posts AS p
            {clause}
            ORDER BY p.group_id,
                min({delivered}) OVER (PARTITION BY coalesce(p.conversation_id, p.thread_id)),
                coalesce(p.conversation_id, p.thread_id),
                min({delivered}) OVER (PARTITION BY p.thread_id), p.thread_id,
                {delivered}, p.id
            """,
            params,
        )
        if only is None or r[0] in only
    ]
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        values, more = in_list("post", chunk)
        found = {
            r[0]: r
            for r in archive.conn.execute(
                f"""
                SELECT p.id, p.group_id, p.thread_id, p.conversation_id, p.changeKey,
                    p.deleted_at, p.in_reply_to_id, p.attachments_note, t.topic, v.json,
                    v.sha256, coalesce(p.receivedDateTime, p.createdDateTime)
                FROM posts AS p
                JOIN threads AS t ON t.id = p.thread_id
                JOIN post_versions AS v ON v.post_id = p.id AND v.changeKey = p.changeKey
                WHERE p.id IN {values}
                """,
                more,
            )
        }
        yield from (found[post_id] for post_id in chunk if post_id in found)


def attachment_hashes(archive: Connection, post_id: str) -> dict[str, str | None]:
    """A post's archived attachments and the SHA-256 of their bytes (None: no bytes)."""
    return {
        r[0]: r[1]
        for r in archive.conn.execute(
            "SELECT id, sha256 FROM attachments WHERE post_id = :post_id", {"post_id": post_id}
        )
    }


def has_post_version(archive: Connection, post_id: str, sha256: str) -> bool:
    """Whether the archive holds a version of this post that hashes to ``sha256``."""
    found = archive.conn.execute(
        "SELECT 1 FROM post_versions WHERE post_id = :post_id AND sha256 = :sha256",
        {"post_id": post_id, "sha256": sha256},
    ).fetchone()
    return found is not None
