"""The archive: a SQLite database of everything seen, every version, nothing erased.

Only this module and ``migrations`` talk to sqlite-utils. Writes are plain functions of an
``Archive`` that the sync calls inside ``archive.atomic()``, one transaction per thread, so
a killed sync leaves whole threads or nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlite_utils import Database

from .errors import ArchiveError
from .files import can_write, touch_private
from .html import to_text
from .migrations import applied_migrations, apply_migrations, unknown_migrations

__all__ = [
    "GENESIS",
    "MAILBOX_GROUPS",
    "Archive",
    "ThreadSignals",
    "archive_error",
    "canonical_json",
    "chain_digest",
    "connect_readonly",
    "prepare_post",
    "utc_now",
    "writable",
]

# Rows of ``groups`` that have a group mailbox. New archives hold no others, but an archive
# written before groupsync learnt that memberOf lists security groups and distribution lists
# may; they are kept (a record) and never synced or listed. NULL: a group saved from a bare id.
MAILBOX_GROUPS = "(groupTypes IS NULL OR groupTypes LIKE '%\"Unified\"%')"

# Graph fields of a thread that move when a post is delivered to it. When they are what
# the archive holds, the thread's posts are not listed again (except by a full reconcile,
# which also catches edits: an edit changes a post's changeKey but no delivery time).
SIGNAL_FIELDS = ("topic", "lastDeliveredDateTime", "preview", "hasAttachments", "uniqueSenders")
PAGE_SIZE = 8192  # bytes per database page, for archives created from now on
B64_CHUNK = 4 * 1024 * 256  # base64 characters decoded at a time (1 MiB of text)


def utc_now() -> str:
    """Now as Graph writes times: ISO 8601, UTC, ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(data: Any) -> str:
    """One spelling of a JSON value, so equal content always has the same SHA-256."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


GENESIS = "0" * 64  # what the first sync run's digest chains to
CHAIN_VERSION = "groupsync-chain/1"


def chain_digest(prev: str, run_id: int, items: Iterable[str]) -> str:
    """A sync run's digest: SHA-256 of the UTF-8 text

    ``groupsync-chain/1\n<run id>\n<previous run's digest>\n`` followed by one line per item,
    sorted, each ending in ``\n``: ``b <sha256> <size>`` per blob the run stored first and
    ``v <sha256> <post id> <changeKey>`` per post version it stored. Changing, adding or
    removing any of them, or a run in between, changes every later digest.
    """
    digest = hashlib.sha256(f"{CHAIN_VERSION}\n{run_id}\n{prev}\n".encode())
    for line in sorted(items):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def prepare_post(post: Mapping[str, Any]) -> tuple[str, str, str]:
    """The CPU work of storing a post, with no database: its version JSON, that JSON's
    SHA-256 and the body as text. Pure, so the sync runs it in its fetch workers.

    One shape whatever call fetched the post: no ``@odata.context`` (a single GET has it, a
    list does not), and always the attachments' metadata (their bytes live in blobs).
    """
    version = {k: v for k, v in post.items() if k not in {"attachments", "@odata.context"}}
    version["attachments"] = [
        {k: v for k, v in a.items() if k != "contentBytes"} for a in post.get("attachments") or []
    ]
    text = canonical_json(version)
    body = post.get("body") or {}
    return (
        text,
        hashlib.sha256(text.encode("utf-8")).hexdigest(),
        to_text(body.get("content"), body.get("contentType") or "html"),
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _address(recipient: Any) -> tuple[str | None, str | None]:
    if not isinstance(recipient, dict):
        return None, None
    email = recipient.get("emailAddress") or {}
    address = email.get("address")
    return email.get("name"), (address.lower() if isinstance(address, str) and address else None)


@dataclass(frozen=True)
class ThreadSignals:
    """What the archive last saw of a thread, to compare with a fresh thread listing."""

    values: tuple[Any, ...]
    deleted: bool

    @property
    def delivered(self) -> str | None:
        return self.values[SIGNAL_FIELDS.index("lastDeliveredDateTime")]

    @classmethod
    def of(cls, thread: Mapping[str, Any], deleted: bool = False) -> ThreadSignals:
        return cls(
            tuple(
                _json(thread.get(f)) if f == "uniqueSenders" else thread.get(f)
                for f in SIGNAL_FIELDS
            ),
            deleted,
        )


_POSTS_INSERT = """
    INSERT INTO posts (id, group_id, conversation_id, thread_id, changeKey, createdDateTime,
        lastModifiedDateTime, receivedDateTime, hasAttachments, categories, body_contentType,
        body_content, from_name, from_address, sender_name, sender_address, newParticipants,
        in_reply_to_id, attachments_note, first_seen_at, updated_at, body_text, change_seq)
"""
_POSTS_CONFLICT = """
    ON CONFLICT(id) DO UPDATE SET conversation_id = excluded.conversation_id,
        thread_id = excluded.thread_id, changeKey = excluded.changeKey,
        createdDateTime = excluded.createdDateTime,
        lastModifiedDateTime = excluded.lastModifiedDateTime,
        receivedDateTime = excluded.receivedDateTime,
        hasAttachments = excluded.hasAttachments, categories = excluded.categories,
        body_contentType = excluded.body_contentType,
        body_content = excluded.body_content, from_name = excluded.from_name,
        from_address = excluded.from_address, sender_name = excluded.sender_name,
        sender_address = excluded.sender_address,
        newParticipants = excluded.newParticipants,
        in_reply_to_id = coalesce(excluded.in_reply_to_id, posts.in_reply_to_id),
        attachments_note = excluded.attachments_note,
        body_text = excluded.body_text, change_seq = excluded.change_seq,
        version_count = posts.version_count + 1,
        updated_at = excluded.updated_at, deleted_at = NULL
"""
_VERSIONS_INSERT = """
    INSERT OR IGNORE INTO post_versions (post_id, changeKey, lastModifiedDateTime, json,
        sha256, sync_run_id, first_seen_at)
"""


# SQLite result codes (the primary code, the low byte) that are the file's fault, not a
# query's: they become one ArchiveError line naming the file.
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 8, 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB = 14, 26
_FILE_FAILURES = {
    _SQLITE_READONLY,
    _SQLITE_IOERR,
    _SQLITE_CORRUPT,
    _SQLITE_FULL,
    _SQLITE_CANTOPEN,
    _SQLITE_NOTADB,
}


def _code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def archive_error(path: str, error: sqlite3.Error) -> ArchiveError:
    """One line for a database failure, naming the file and what to do."""
    code = _code(error)
    if code == _SQLITE_NOTADB:
        return ArchiveError(f"{path} is not a SQLite database (a groupsync archive is one)")
    if code == _SQLITE_CORRUPT:
        return ArchiveError(f"{path} is damaged ({error}); restore it from a backup")
    if code == _SQLITE_FULL:
        return ArchiveError(
            f"the disk holding {path} is full; free some space and run the command again "
            "(the archive keeps every whole thread written so far)"
        )
    if code == _SQLITE_READONLY:
        return ArchiveError(f"{path} is read-only here ({error})")
    return ArchiveError(f"{path} is not a usable archive: {error}")


def writable(path: str | Path) -> bool:
    """Whether the archive and its folder can be written (SQLite writes beside the file):
    False for an evidence copy on a read-only mount, which is then only ever read."""
    resolved = Path(path).resolve()
    return can_write(resolved) and can_write(resolved.parent)


def connect_readonly(path: str) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection, and whether it had to be ``immutable``.

    ``mode=ro`` first: it sees a sync writing meanwhile. An archive in WAL mode whose
    folder cannot be written (an evidence copy on a read-only mount) cannot have its
    ``-shm`` created, so there ``immutable=1`` reads the file as it is: nothing can write
    to it anyway, and SQLite then takes no locks and creates nothing.
    """
    if path == ":memory:":
        return sqlite3.connect(path, check_same_thread=False), False
    name = urllib.parse.quote(str(Path(path).resolve()))
    conn = None
    try:
        conn = sqlite3.connect(f"file:{name}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn, False
    except sqlite3.DatabaseError as ex:
        if conn is not None:
            conn.close()
        if _code(ex) != _SQLITE_CANTOPEN or can_write(Path(path).resolve().parent):
            raise archive_error(path, ex) from None
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        # immutable=1 would read the file without the commits still in the -wal
        raise ArchiveError(
            f"{path} is read-only here and has a -wal without its -shm, which SQLite "
            "cannot read; copy the archive again while nothing writes to it"
        )
    try:
        conn = sqlite3.connect(f"file:{name}?immutable=1", uri=True, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as ex:
        raise archive_error(path, ex) from None
    return conn, True


class Archive:
    """An archive database, created or migrated on open.

    Parameters: ``path`` of the SQLite file (``":memory:"`` for tests), ``readonly`` to
    open an existing archive without writing (Datasette and the read commands).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        self.immutable = False
        if readonly:
            if self.path != ":memory:" and not Path(self.path).exists():
                raise ArchiveError(f"no archive at {self.path}; run `groupsync sync` first")
            conn, self.immutable = connect_readonly(self.path)
            self.db = Database(conn)
        else:
            if self.path != ":memory:" and Path(self.path).exists() and not writable(self.path):
                raise ArchiveError(
                    f"{self.path} is read-only here (it or its folder cannot be written); "
                    "the reading commands work on it as it is"
                )
            if self.path != ":memory:":
                try:
                    touch_private(self.path)  # SQLite gives -wal and -shm the same mode
                except OSError as ex:
                    raise ArchiveError(f"cannot create {self.path}: {ex.strerror}") from None
            try:
                self.db = Database(self.path)
            except sqlite3.DatabaseError as ex:
                raise archive_error(self.path, ex) from None
        self.conn = self.db.conn
        # People already written by this connection today: a sync sees the same senders
        # thousands of times, and last_seen_at only needs the day.
        self._people_seen: dict[str, tuple[str | None, str]] = {}
        self._seq: int | None = None
        self._depth = 0
        try:
            self._prepare()
        except BaseException as ex:
            self.db.close()
            if isinstance(ex, sqlite3.DatabaseError):
                raise archive_error(self.path, ex) from None
            raise

    def _prepare(self) -> None:
        """Check the schema; for writing, set the file up and migrate it."""
        if not self.readonly:
            # Only a new, empty file takes it. A post's row (HTML and text of its body)
            # or version (its JSON) is 2-4 kB: 8 kB pages hold them with less slack,
            # so the file is smaller and writes faster (docs/performance.md, "Storage").
            self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self._check_schema()
        if not self.readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives a killed process; only a power cut can lose
            # the last commits, which the next sync fetches again.
            self.db.execute("PRAGMA synchronous=NORMAL")
            apply_migrations(self.db)
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache: the sync's lookups by long Exchange ids stay in memory.
        self.db.execute("PRAGMA cache_size=-65536")
        if not self.readonly:
            self._tune_fts()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        """Closes; a database failure inside the block (a full disk, a damaged file)
        becomes one ``ArchiveError`` naming the file."""
        try:
            self.close()
        except sqlite3.Error:
            if error is None:
                raise
        if isinstance(error, sqlite3.DatabaseError) and _code(error) in _FILE_FAILURES:
            raise archive_error(self.path, error) from None

    def _check_schema(self) -> None:
        """Refuse a file that is not a groupsync archive this version can read."""
        newer = unknown_migrations(self.db)
        if newer:
            raise ArchiveError(
                f"{self.path} was written by a newer groupsync (it has migration "
                f"{newer[-1]}, unknown here); upgrade groupsync to use it"
            )
        if self.readonly and self.path != ":memory:" and not applied_migrations(self.db):
            raise ArchiveError(
                f"{self.path} is not a groupsync archive; run `groupsync sync` first"
            )

    @contextmanager
    def atomic(self) -> Iterator[Database]:
        """One transaction: everything in it is committed together or not at all.

        Inside a transaction it is a savepoint named by its depth: sqlite-utils names each
        one from 16 random bytes, a getrandom call and a new statement to compile for
        every thread of mail a sync writes.
        """
        conn = self.conn
        if not conn.in_transaction:
            conn.execute("BEGIN")
            try:
                yield self.db
            except BaseException:
                self._people_seen.clear()  # what it remembered writing was rolled back
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    self._people_seen.clear()
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                self._seq = None
            return
        self._depth += 1
        name = f"groupsync_{self._depth}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield self.db
        except BaseException:
            self._people_seen.clear()
            # An error can end the whole transaction (savepoints too): then there is
            # nothing left to roll back, and trying would hide the error.
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            conn.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._depth -= 1

    @contextmanager
    def batch(self, max_items: int = 16, max_seconds: float = 0.25) -> Iterator[Callable[[], None]]:
        """Commit several whole-thread transactions together; ``tick()`` after each one.

        Inside, each ``atomic()`` block becomes a savepoint: all of it or none of it, as
        before. Up to ``max_items`` of them, or ``max_seconds`` worth, share one commit:
        a commit (with its FTS5 segment) per thread of mail was a third of a sync's time.
        Whatever ends the batch, even an exception, commits the whole blocks done so far.
        """
        count, started = 0, time.monotonic()
        self.conn.execute("BEGIN")

        def tick() -> None:
            nonlocal count, started
            count += 1
            if count >= max_items or time.monotonic() - started >= max_seconds:
                self.conn.execute("COMMIT")
                self._seq = None
                self.conn.execute("BEGIN")
                count, started = 0, time.monotonic()

        try:
            yield tick
        finally:
            self._seq = None
            if self.conn.in_transaction:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error:
                    self.conn.execute("ROLLBACK")
                    raise

    def _tune_fts(self) -> None:
        """FTS5 writes a segment per transaction, and a sync commits once per thread: merge
        segments 16 at a time rather than 4, which costs a fifth of the sync's time less."""
        with self.atomic():
            for table in ("posts_fts", "threads_fts"):
                if self._one("SELECT 1 FROM sqlite_master WHERE name = ?", [table]):
                    self.conn.execute(
                        f"INSERT INTO {table} ({table}, rank) VALUES ('automerge', 16)"
                    )

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.conn.execute(sql, tuple(params)).fetchone()
        return row[0] if row else None

    # -- groups ---------------------------------------------------------------------------

    def save_group(self, group: Mapping[str, Any], now: str) -> str:
        data = {k: v for k, v in group.items() if not k.startswith("@odata.context")}
        self.conn.execute(
            """
            INSERT INTO groups (id, displayName, description, mail, mailNickname, visibility,
                groupTypes, createdDateTime, json, first_seen_at, last_seen_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET displayName = excluded.displayName,
                description = excluded.description, mail = excluded.mail,
                mailNickname = excluded.mailNickname, visibility = excluded.visibility,
                groupTypes = excluded.groupTypes, createdDateTime = excluded.createdDateTime,
                json = excluded.json, last_seen_at = excluded.last_seen_at,
                deleted_at = NULL, access_note = NULL
            """,
            (
                group["id"],
                group.get("displayName"),
                group.get("description"),
                group.get("mail"),
                group.get("mailNickname"),
                group.get("visibility"),
                _json(group.get("groupTypes")),
                group.get("createdDateTime"),
                canonical_json(data),
                now,
                now,
            ),
        )
        return group["id"]

    def group_ids(self, include_deleted: bool = False) -> list[str]:
        """The archived groups that have a mailbox, in the order they were first archived."""
        where = f"WHERE {MAILBOX_GROUPS}" + ("" if include_deleted else " AND deleted_at IS NULL")
        return [r[0] for r in self.conn.execute(f"SELECT id FROM groups {where} ORDER BY rowid")]

    def group(self, group_id: str) -> dict[str, Any] | None:
        """The archived group as Graph last described it, or None."""
        text = self._one("SELECT json FROM groups WHERE id = ?", [group_id])
        return None if text is None else json.loads(text)

    def note_group_access(self, group_id: str, note: str | None, deleted_at: str | None) -> None:
        """The identity can no longer read the group: say why; tombstone it on a full pass."""
        self.conn.execute(
            "UPDATE groups SET access_note = ?, deleted_at = coalesce(deleted_at, ?) WHERE id = ?",
            (note, deleted_at, group_id),
        )

    # -- conversations --------------------------------------------------------------------

    def save_conversation(
        self, group_id: str, conversation: Mapping[str, Any], now: str
    ) -> None:
        self.conn.execute(
            """
            INSERT INTO conversations (id, group_id, topic, hasAttachments,
                lastDeliveredDateTime, uniqueSenders, preview, first_seen_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET topic = excluded.topic,
                hasAttachments = excluded.hasAttachments,
                lastDeliveredDateTime = excluded.lastDeliveredDateTime,
                uniqueSenders = excluded.uniqueSenders, preview = excluded.preview,
                updated_at = CASE WHEN conversations.topic IS excluded.topic
                    AND conversations.hasAttachments IS excluded.hasAttachments
                    AND conversations.lastDeliveredDateTime IS excluded.lastDeliveredDateTime
                    AND conversations.uniqueSenders IS excluded.uniqueSenders
                    AND conversations.preview IS excluded.preview
                    AND conversations.deleted_at IS NULL
                    THEN conversations.updated_at ELSE excluded.updated_at END,
                deleted_at = NULL
            """,
            (
                conversation["id"],
                group_id,
                conversation.get("topic"),
                _bool(conversation.get("hasAttachments")),
                conversation.get("lastDeliveredDateTime"),
                _json(conversation.get("uniqueSenders")),
                conversation.get("preview"),
                now,
                now,
            ),
        )

    def has_conversation(self, conversation_id: str) -> bool:
        return self._one("SELECT 1 FROM conversations WHERE id = ?", [conversation_id]) is not None

    def conversation_ids(self, group_id: str) -> set[str]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM conversations WHERE group_id = ? AND deleted_at IS NULL",
                (group_id,),
            )
        }

    def tombstone_conversations(self, group_id: str, keep: set[str], now: str) -> int:
        gone = self.conversation_ids(group_id) - keep
        for conversation_id in gone:
            self.conn.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (now, conversation_id),
            )
        return len(gone)

    # -- threads --------------------------------------------------------------------------

    def thread_signals(self, group_id: str) -> dict[str, ThreadSignals]:
        """Every archived thread of a group (deleted ones too) and what was last seen of it."""
        columns = ", ".join(SIGNAL_FIELDS)
        rows = self.conn.execute(
            f"SELECT id, {columns}, deleted_at FROM threads WHERE group_id = ?", (group_id,)
        )
        out = {}
        flag = SIGNAL_FIELDS.index("hasAttachments")
        for row in rows:
            values = list(row[1:-1])
            values[flag] = (
                None if values[flag] is None else bool(values[flag])
            )
            out[row[0]] = ThreadSignals(tuple(values), row[-1] is not None)
        return out

    def save_thread(
        self,
        group_id: str,
        thread: Mapping[str, Any],
        conversation_id: str | None,
        now: str,
        *,
        post_count: int | None = None,
        possibly_truncated: bool | None = None,
    ) -> None:
        """Store a thread's listing; posts, if listed, were saved in the same transaction.

        A row that would not change is not rewritten (nor is its FTS entry): a full
        reconcile of an unchanged group writes nothing.
        """
        self.conn.execute(
            """
            INSERT INTO threads (id, group_id, conversation_id, topic, hasAttachments,
                lastDeliveredDateTime, uniqueSenders, preview, isLocked, toRecipients,
                ccRecipients, post_count, possibly_truncated, first_seen_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, coalesce(?, 0), coalesce(?, 0), ?, ?)
            ON CONFLICT(id) DO UPDATE SET
                conversation_id = coalesce(excluded.conversation_id, threads.conversation_id),
                topic = excluded.topic, hasAttachments = excluded.hasAttachments,
                lastDeliveredDateTime = excluded.lastDeliveredDateTime,
                uniqueSenders = excluded.uniqueSenders, preview = excluded.preview,
                isLocked = coalesce(excluded.isLocked, threads.isLocked),
                toRecipients = coalesce(excluded.toRecipients, threads.toRecipients),
                ccRecipients = coalesce(excluded.ccRecipients, threads.ccRecipients),
                post_count = coalesce(?, threads.post_count),
                possibly_truncated = coalesce(?, threads.possibly_truncated),
                updated_at = excluded.updated_at, deleted_at = NULL
            WHERE threads.deleted_at IS NOT NULL
                OR threads.conversation_id IS NOT coalesce(excluded.conversation_id,
                                                         threads.conversation_id)
                OR threads.topic IS NOT excluded.topic
                OR threads.hasAttachments IS NOT excluded.hasAttachments
                OR threads.lastDeliveredDateTime IS NOT excluded.lastDeliveredDateTime
                OR threads.uniqueSenders IS NOT excluded.uniqueSenders
                OR threads.preview IS NOT excluded.preview
                OR threads.isLocked IS NOT coalesce(excluded.isLocked, threads.isLocked)
                OR threads.toRecipients IS NOT coalesce(excluded.toRecipients,
                                                      threads.toRecipients)
                OR threads.ccRecipients IS NOT coalesce(excluded.ccRecipients,
                                                      threads.ccRecipients)
                OR threads.post_count IS NOT coalesce(?, threads.post_count)
                OR threads.possibly_truncated IS NOT coalesce(?, threads.possibly_truncated)
            """,
            (
                thread["id"],
                group_id,
                conversation_id,
                thread.get("topic"),
                _bool(thread.get("hasAttachments")),
                thread.get("lastDeliveredDateTime"),
                _json(thread.get("uniqueSenders")),
                thread.get("preview"),
                _bool(thread.get("isLocked")),
                _json(thread.get("toRecipients")),
                _json(thread.get("ccRecipients")),
                post_count,
                _bool(possibly_truncated),
                now,
                now,
                post_count,
                _bool(possibly_truncated),
                post_count,
                _bool(possibly_truncated),
            ),
        )
        for field in ("toRecipients", "ccRecipients"):
            for recipient in thread.get(field) or []:
                self._save_person(recipient, now)

    def thread_conversations(self, group_id: str) -> dict[str, str]:
        """``thread id -> conversation id`` for the group's archived threads."""
        return dict(
            self.conn.execute(
                "SELECT id, conversation_id FROM threads "
                "WHERE group_id = ? AND conversation_id IS NOT NULL",
                (group_id,),
            ).fetchall()
        )

    def tombstone_threads(self, group_id: str, keep: set[str], now: str) -> int:
        """Threads of the group that the listing no longer shows, with their posts."""
        live = {
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM threads WHERE group_id = ? AND deleted_at IS NULL", (group_id,)
            )
        }
        gone = live - keep
        for thread_id in gone:
            self.tombstone_thread(thread_id, now)
        return len(gone)

    def tombstone_thread(self, thread_id: str, now: str) -> bool:
        """Mark one thread and its posts deleted; False if it was not live in the archive."""
        changed = self.conn.execute(
            "UPDATE threads SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
            (now, thread_id),
        ).rowcount
        if changed:
            self.tombstone_posts(thread_id, set(), now)
        return bool(changed)

    def tombstone_empty_conversation(self, thread_id: str, now: str) -> bool:
        """Graph deletes a conversation with its last thread; mark it so once none is live."""
        return bool(
            self.conn.execute(
                """
                UPDATE conversations SET deleted_at = :now
                WHERE id = (SELECT conversation_id FROM threads WHERE id = :thread)
                  AND deleted_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.conversation_id = conversations.id
                                  AND t.deleted_at IS NULL)
                """,
                {"now": now, "thread": thread_id},
            ).rowcount
        )

    # -- posts ----------------------------------------------------------------------------

    def post_change_keys(self, thread_id: str) -> dict[str, str | None]:
        """Live posts of a thread and their changeKeys."""
        return dict(
            self.conn.execute(
                "SELECT id, changeKey FROM posts WHERE thread_id = ? AND deleted_at IS NULL",
                (thread_id,),
            ).fetchall()
        )

    def save_posts(
        self,
        group_id: str,
        thread_id: str,
        posts: Sequence[Mapping[str, Any]],
        now: str,
        *,
        run_id: int | None = None,
        notes: dict[str, str] | None = None,
        prepared: dict[str, tuple[str, str, str]] | None = None,
        known: dict[str, tuple[str | None, str | None]] | None = None,
        repair: set[str] | frozenset[str] = frozenset(),
    ) -> list[str]:
        """Store the posts of one thread whose changeKey is new; for each post, in order,
        ``"new"``, ``"changed"``, ``"same"`` or ``"repaired"``.

        ``repair`` names archived posts whose attachments are missing (the audit's
        ``incomplete_posts``):
        with the same changeKey their version is not stored again, but the attachments (and
        the note on why some could not be had) are.

        Every (id, changeKey) ever seen stays in ``post_versions`` with the SHA-256 of its
        canonical JSON; ``posts`` holds the latest. Attachments' bytes go to ``blobs`` once
        per SHA-256, decoded in chunks from the base64 Graph sent. ``notes`` maps post ids
        to an ``attachments_note``; ``prepared`` maps them to ``prepare_post(post)`` done
        earlier, off the writing thread; ``known`` is ``post_states(thread_id)``.

        The rows go in as one multi-row INSERT per table, not one per post: each statement
        lets go of Python's GIL while SQLite works, and a sync's fetch threads need it back
        every time, so fewer, longer statements let both sides run at once.
        """
        if known is None:
            known = self.post_states(thread_id)
        # A post archived under another thread is not in ``known``: its state, by id.
        elsewhere = self._post_states_by_id([p["id"] for p in posts if p["id"] not in known])
        outcomes: list[str] = []
        post_rows: list[tuple[Any, ...]] = []
        version_rows: list[tuple[Any, ...]] = []
        attachment_lists: list[tuple[str, list[dict[str, Any]]]] = []
        written: set[tuple[str, str]] = set()
        for post in posts:
            post_id = post["id"]
            change_key = post.get("changeKey") or ""
            stored = known.get(post_id) or elsewhere.get(post_id)
            unchanged = stored is not None and stored[0] == change_key and stored[1] is None
            if unchanged and post_id in repair:
                outcomes.append("repaired")
                self.conn.execute(
                    "UPDATE posts SET attachments_note = ? WHERE id = ?",
                    ((notes or {}).get(post_id), post_id),
                )
                attachment_lists.append((post_id, post.get("attachments") or []))
                continue
            if unchanged or (post_id, change_key) in written:
                outcomes.append("same")
                continue
            written.add((post_id, change_key))
            outcomes.append("new" if stored is None else "changed")
            text, digest, body_text = (prepared or {}).get(post_id) or prepare_post(post)
            for recipient in [
                post.get("from"),
                post.get("sender"),
                *(post.get("newParticipants") or []),
            ]:
                self._save_person(recipient, now)
            from_name, from_address = _address(post.get("from"))
            sender_name, sender_address = _address(post.get("sender"))
            body = post.get("body") or {}
            in_reply_to = post.get("inReplyTo")
            post_rows.append(
                (
                    post_id,
                    group_id,
                    post.get("conversationId"),
                    thread_id,
                    change_key,
                    post.get("createdDateTime"),
                    post.get("lastModifiedDateTime"),
                    post.get("receivedDateTime"),
                    _bool(post.get("hasAttachments")),
                    _json(post.get("categories")),
                    body.get("contentType"),
                    body.get("content"),
                    from_name,
                    from_address,
                    sender_name,
                    sender_address,
                    _json(post.get("newParticipants")),
                    in_reply_to.get("id") if isinstance(in_reply_to, dict) else None,
                    (notes or {}).get(post_id),
                    now,
                    now,
                    body_text,
                    self._next_change_seq(),
                )
            )
            version_rows.append(
                (post_id, change_key, post.get("lastModifiedDateTime"), text, digest, run_id, now)
            )
            attachments = post.get("attachments")
            if attachments or (attachments is not None and stored is not None):
                attachment_lists.append((post_id, attachments))
        self._insert_many(_POSTS_INSERT, post_rows, _POSTS_CONFLICT)
        self._insert_many(_VERSIONS_INSERT, version_rows)
        for post_id, attachments in attachment_lists:
            self._save_attachments(post_id, attachments, now, run_id)
        return outcomes

    def _post_states_by_id(self, post_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        states: dict[str, tuple[str | None, str | None]] = {}
        per = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        for start in range(0, len(post_ids), per):
            chunk = post_ids[start : start + per]
            for post_id, change_key, deleted_at in self.conn.execute(
                "SELECT id, changeKey, deleted_at FROM posts "
                f"WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                states[post_id] = (change_key, deleted_at)
        return states

    def _insert_many(self, head: str, rows: list[tuple[Any, ...]], tail: str = "") -> None:
        """``head VALUES (...), (...), ... tail``: as many rows per statement as SQLite
        takes parameters for."""
        if not rows:
            return
        width = len(rows[0])
        per = max(1, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            values = ", ".join([f"({', '.join('?' * width)})"] * len(chunk))
            self.conn.execute(f"{head} VALUES {values} {tail}", [v for row in chunk for v in row])

    def tombstone_posts(
        self,
        thread_id: str,
        keep: set[str],
        now: str,
        *,
        known: dict[str, tuple[str | None, str | None]] | None = None,
    ) -> int:
        """Mark the thread's live posts not in ``keep`` deleted. ``known`` is
        ``post_states(thread_id)`` read earlier in this transaction (posts saved since
        then are in ``keep``)."""
        if known is None:
            live = set(self.post_change_keys(thread_id))
        else:
            live = {post_id for post_id, (_, deleted) in known.items() if deleted is None}
        gone = live - keep
        for post_id in gone:
            self.conn.execute(
                "UPDATE posts SET deleted_at = ?, change_seq = ? WHERE id = ?",
                (now, self._next_change_seq(), post_id),
            )
            self.conn.execute(
                "UPDATE attachments SET deleted_at = ? WHERE post_id = ? AND deleted_at IS NULL",
                (now, post_id),
            )
        return len(gone)

    def _next_change_seq(self) -> int:
        """The next number in the posts' change sequence, which the search index follows.

        Every insert, new version and tombstone of a post takes a higher number in the same
        transaction, so "everything after N" is exactly what an index at N has not seen.
        The maximum is read once per transaction (one writer holds the database then).
        """
        if self._seq is None:
            self._seq = int(self._one("SELECT coalesce(max(change_seq), 0) FROM posts") or 0)
        self._seq += 1
        return self._seq

    def post_states(self, thread_id: str) -> dict[str, tuple[str | None, str | None]]:
        """Every archived post of a thread: ``id -> (changeKey, deleted_at)``."""
        return {
            r[0]: (r[1], r[2])
            for r in self.conn.execute(
                "SELECT id, changeKey, deleted_at FROM posts WHERE thread_id = ?", (thread_id,)
            )
        }

    def change_seq(self) -> int:
        """The archive's latest change; an index that has applied it is up to date."""
        return int(self._one("SELECT coalesce(max(change_seq), 0) FROM posts") or 0)

    # -- attachments and blobs ------------------------------------------------------------

    def _save_attachments(
        self,
        post_id: str,
        attachments: list[dict[str, Any]],
        now: str,
        run_id: int | None = None,
    ) -> None:
        seen = set()
        for attachment in attachments:
            seen.add(attachment["id"])
            sha256 = None
            content = attachment.get("contentBytes")
            if isinstance(content, str):
                sha256 = self.save_blob_base64(content, now, run_id=run_id)
            kind = (attachment.get("@odata.type") or "").rsplit(".", 1)[-1] or "attachment"
            metadata = {k: v for k, v in attachment.items() if k != "contentBytes"}
            self.conn.execute(
                """
                INSERT INTO attachments (post_id, id, type, name, contentType, size, isInline,
                    contentId, lastModifiedDateTime, sha256, json, first_seen_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(post_id, id) DO UPDATE SET type = excluded.type,
                    name = excluded.name, contentType = excluded.contentType,
                    size = excluded.size, isInline = excluded.isInline,
                    contentId = excluded.contentId,
                    lastModifiedDateTime = excluded.lastModifiedDateTime,
                    sha256 = coalesce(excluded.sha256, attachments.sha256),
                    json = excluded.json, deleted_at = NULL
                """,
                (
                    post_id,
                    attachment["id"],
                    kind,
                    attachment.get("name"),
                    attachment.get("contentType"),
                    attachment.get("size"),
                    _bool(attachment.get("isInline")),
                    attachment.get("contentId"),
                    attachment.get("lastModifiedDateTime"),
                    sha256,
                    canonical_json(metadata),
                    now,
                ),
            )
        self.conn.execute(
            f"""
            UPDATE attachments SET deleted_at = ?
            WHERE post_id = ? AND deleted_at IS NULL
              AND id NOT IN ({", ".join("?" * len(seen))})
            """,
            (now, post_id, *seen),
        )

    def save_blob_base64(self, content: str, now: str, *, run_id: int | None = None) -> str:
        """Store base64 content once per SHA-256, decoding 1 MiB at a time.

        Two passes over the text: hash and size first (nothing stored if the blob is
        known), then write into a zero-filled blob through SQLite's incremental I/O, so the
        decoded bytes never exist in memory as a whole.
        """
        digest = hashlib.sha256()
        size = 0
        for chunk in _b64_chunks(content):
            digest.update(chunk)
            size += len(chunk)
        sha256 = digest.hexdigest()
        if self._one("SELECT 1 FROM blobs WHERE sha256 = ?", [sha256]) is None:
            cursor = self.conn.execute(
                "INSERT INTO blobs (sha256, size, content, first_seen_at, sync_run_id) "
                "VALUES (?, ?, zeroblob(?), ?, ?)",
                (sha256, size, size, now, run_id),
            )
            if size:
                rowid = cast(int, cursor.lastrowid)  # an INSERT just ran on this cursor
                with self.conn.blobopen("blobs", "content", rowid) as blob:
                    for chunk in _b64_chunks(content):
                        blob.write(chunk)
        return sha256

    def save_blob_bytes(self, data: bytes, now: str) -> str:
        """Store bytes once per SHA-256 (the outbox's attachments, at most 3 MB each)."""
        sha256 = hashlib.sha256(data).hexdigest()
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (sha256, size, content, first_seen_at) "
            "VALUES (?, ?, ?, ?)",
            (sha256, len(data), data, now),
        )
        return sha256

    def read_blob(self, sha256: str) -> bytes:
        """A whole blob in memory: only for the small ones (outbox attachments)."""
        return b"".join(self.iter_blob(sha256))

    def iter_blob(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """A stored attachment's bytes in chunks (for downloads and ``--save``)."""
        row = self.conn.execute("SELECT rowid, size FROM blobs WHERE sha256 = ?", (sha256,))
        found = row.fetchone()
        if found is None:
            raise ArchiveError(f"no blob {sha256} in the archive")
        rowid, size = found
        if not size:
            return
        with self.conn.blobopen("blobs", "content", rowid, readonly=True) as blob:
            while True:
                chunk = blob.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    # -- events (the "new email arrives" trigger) ------------------------------------------

    def save_event(
        self,
        group_id: str,
        thread: Mapping[str, Any],
        post: Mapping[str, Any],
        conversation: Mapping[str, Any] | None,
        now: str,
        *,
        run_id: int | None = None,
    ) -> bool:
        """Record a new post as an event, in the caller's transaction (with the post itself).

        The event is the connector's ``ConversationTriggerResponse``: the conversation's
        id and lastDeliveredDateTime, with the thread and the post (id, changeKey,
        lastModifiedDateTime). One event per post, ever: ``False`` if it already had one.
        """
        conversation_id = post.get("conversationId") or (conversation or {}).get("id")
        delivered = [
            v
            for v in (
                (conversation or {}).get("lastDeliveredDateTime"),
                thread.get("lastDeliveredDateTime"),
                post.get("receivedDateTime"),
            )
            if v
        ]
        payload = {
            "id": conversation_id,
            "lastDeliveredDateTime": max(delivered) if delivered else None,
            "threads": [
                {
                    "id": thread["id"],
                    "posts": [
                        {
                            "id": post["id"],
                            "changeKey": post.get("changeKey"),
                            "lastModifiedDateTime": post.get("lastModifiedDateTime"),
                        }
                    ],
                }
            ],
        }
        cursor = self.conn.execute(
            """
            INSERT OR IGNORE INTO events (kind, group_id, conversation_id, thread_id, post_id,
                sync_run_id, json, state, created_at)
            VALUES ('new-post', ?, ?, ?, ?, ?, ?, 'pending', ?)
            """,
            (
                group_id,
                conversation_id,
                thread["id"],
                post["id"],
                run_id,
                json.dumps(payload, ensure_ascii=False),
                now,
            ),
        )
        return cursor.rowcount > 0

    # -- people ---------------------------------------------------------------------------

    def _save_person(self, recipient: Any, now: str) -> None:
        name, address = _address(recipient)
        if address is None or self._people_seen.get(address) == (name, now[:10]):
            return
        self._people_seen[address] = (name, now[:10])
        self.conn.execute(
            """
            INSERT INTO people (address, name, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?)
            ON CONFLICT(address) DO UPDATE SET name = coalesce(excluded.name, people.name),
                last_seen_at = excluded.last_seen_at
            """,
            (address, name, now, now),
        )

    # -- sync state and runs --------------------------------------------------------------

    def sync_state(self, group_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT watermark, last_incremental_at, last_full_at, early_stop, missed_changes "
            "FROM _sync_state WHERE group_id = ?",
            (group_id,),
        ).fetchone()
        keys = ("watermark", "last_incremental_at", "last_full_at", "early_stop", "missed_changes")
        if row is None:
            return dict(zip(keys, (None, None, None, 1, 0), strict=True))
        return dict(zip(keys, row, strict=True))

    def save_sync_state(self, group_id: str, **values: Any) -> None:
        allowed = {"watermark", "last_incremental_at", "last_full_at", "early_stop"}
        unknown = set(values) - allowed - {"missed_changes"}
        if unknown:
            raise ArchiveError(f"unknown sync state {sorted(unknown)}")
        self.conn.execute(
            "INSERT INTO _sync_state (group_id) VALUES (?) ON CONFLICT(group_id) DO NOTHING",
            (group_id,),
        )
        for key, value in values.items():
            self.conn.execute(
                f"UPDATE _sync_state SET {key} = ? WHERE group_id = ?", (value, group_id)
            )

    def start_run(self, mode: str, groups: list[str], identity: str | None, now: str) -> int:
        """A new run; runs left ``running`` by a killed process are sealed as interrupted."""
        with self.atomic():
            self.conn.execute(
                "UPDATE sync_runs SET status = 'interrupted' WHERE status = 'running'"
            )
            self.seal_runs(now)
            cursor = self.conn.execute(
                "INSERT INTO sync_runs (started_at, status, mode, groups, identity) "
                "VALUES (?, 'running', ?, ?, ?)",
                (now, mode, _json(groups), identity),
            )
        return int(cursor.lastrowid or 0)

    def update_run(self, run_id: int, **values: Any) -> None:
        """Counters and the outcome of a run; committed at once so a kill keeps them."""
        if not values:
            return
        columns = ", ".join(f"{k} = ?" for k in values)
        with self.atomic():
            self.conn.execute(
                f"UPDATE sync_runs SET {columns} WHERE id = ?", (*values.values(), run_id)
            )

    def finish_run(self, run_id: int, **values: Any) -> str | None:
        """A run's outcome and counters, and its seal (digest), in one transaction."""
        if "status" in values and values["status"] == "running":
            raise ArchiveError("a finished run needs a final status")
        with self.atomic():
            self.update_run(run_id, **values)
            self.seal_runs(values.get("finished_at") or utc_now())
        return self._one("SELECT digest FROM sync_runs WHERE id = ?", [run_id])

    def run_items(self, run_id: int) -> Iterator[str]:
        """The lines a run's digest covers (see ``chain_digest``), unsorted."""
        for sha256, size in self.conn.execute(
            "SELECT sha256, size FROM blobs WHERE sync_run_id = ?", (run_id,)
        ):
            yield f"b {sha256} {size}"
        for sha256, post_id, change_key in self.conn.execute(
            "SELECT sha256, post_id, changeKey FROM post_versions WHERE sync_run_id = ?",
            (run_id,),
        ):
            yield f"v {sha256} {post_id} {change_key}"

    def seal_runs(self, now: str) -> list[int]:
        """Give every finished run without a digest its digest, oldest first.

        A run is sealed when it finishes; one killed before that (left ``running``, then
        marked ``interrupted`` by the next run's start) is sealed over the rows it did commit.
        Call inside a transaction.
        """
        sealed = []
        unsealed = self.conn.execute(
            "SELECT id FROM sync_runs WHERE digest IS NULL AND status != 'running' ORDER BY id"
        ).fetchall()
        for (run_id,) in unsealed:
            prev = self._one(
                "SELECT digest FROM sync_runs WHERE id < ? AND digest IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                [run_id],
            )
            items = list(self.run_items(run_id))
            self.conn.execute(
                "UPDATE sync_runs SET digest = ?, prev_digest = ?, digest_items = ?, "
                "sealed_at = ? WHERE id = ?",
                (chain_digest(prev or GENESIS, run_id, items), prev or GENESIS, len(items),
                 now, run_id),
            )
            sealed.append(run_id)
        return sealed

    def chain_head(self) -> tuple[int, str] | None:
        """The latest sealed run and its digest: what to note down to anchor ``verify``."""
        row = self.conn.execute(
            "SELECT id, digest FROM sync_runs WHERE digest IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def run(self, run_id: int) -> dict[str, Any]:
        cursor = self.conn.execute("SELECT * FROM sync_runs WHERE id = ?", (run_id,))
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        if row is None:
            raise ArchiveError(f"no sync run {run_id}")
        return dict(zip(names, row, strict=True))


def _b64_chunks(content: str) -> Iterator[bytes]:
    """Decode base64 text in bounded pieces (a multiple of 4 characters each)."""
    compact = content if "\n" not in content and " " not in content else "".join(content.split())
    try:
        for start in range(0, len(compact), B64_CHUNK):
            yield base64.b64decode(compact[start : start + B64_CHUNK], validate=True)
    except (binascii.Error, ValueError):
        raise ArchiveError("an attachment's contentBytes is not valid base64") from None
