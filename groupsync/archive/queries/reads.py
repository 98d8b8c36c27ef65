"""The rows the connector's read actions are answered from (see ``groupsync.reads``).

``include_deleted`` keeps tombstoned rows; each function returns rows as tuples, columns in
the order its docstring gives."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..connection import Connection
from ..store import MAILBOX_GROUPS
from . import in_list

_LIVE = "deleted_at IS NULL"
CONVERSATION_COLUMNS = (
    "id, topic, hasAttachments, lastDeliveredDateTime, uniqueSenders, preview, deleted_at"
)
THREAD_COLUMNS = (
    "id, topic, hasAttachments, lastDeliveredDateTime, uniqueSenders, preview, isLocked, "
    "toRecipients, ccRecipients, deleted_at"
)


def group_rows(archive: Connection, include_deleted: bool) -> list[tuple[str, str | None]]:
    """Groups with a mailbox by display name: ``(json, deleted_at)``."""
    where = f"WHERE {MAILBOX_GROUPS}" + ("" if include_deleted else f" AND {_LIVE}")
    return archive.conn.execute(
        f"SELECT json, deleted_at FROM groups {where} ORDER BY displayName COLLATE NOCASE, id"
    ).fetchall()


def group_row(archive: Connection, group_id: str) -> tuple[str, str | None] | None:
    """``(json, deleted_at)`` of one group, or None."""
    return archive.conn.execute(
        "SELECT json, deleted_at FROM groups WHERE id = :id", {"id": group_id}
    ).fetchone()


def conversation_rows(
    archive: Connection, group_id: str, include_deleted: bool
) -> list[tuple[Any, ...]]:
    """A group's conversations (``CONVERSATION_COLUMNS``), newest delivery first."""
    live = "" if include_deleted else f"AND {_LIVE}"
    return archive.conn.execute(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE group_id = :group_id {live} "
        "ORDER BY lastDeliveredDateTime DESC, id",
        {"group_id": group_id},
    ).fetchall()


def conversation_row(
    archive: Connection, group_id: str, conversation_id: str
) -> tuple[Any, ...] | None:
    """One conversation of a group (``CONVERSATION_COLUMNS``), or None."""
    return archive.conn.execute(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = :id AND group_id = :group_id",
        {"id": conversation_id, "group_id": group_id},
    ).fetchone()


def thread_row(archive: Connection, group_id: str, thread_id: str) -> tuple[Any, ...] | None:
    """One thread of a group (``THREAD_COLUMNS``), or None."""
    return archive.conn.execute(
        f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = :id AND group_id = :group_id",
        {"id": thread_id, "group_id": group_id},
    ).fetchone()


def thread_rows(
    archive: Connection,
    group_id: str,
    conversation_id: str | None,
    include_deleted: bool,
) -> list[tuple[Any, ...]]:
    """A group's threads, or one conversation's (``THREAD_COLUMNS``), newest delivery first."""
    # A conversation is in one group, so are its threads; this keeps the index.
    where = "group_id = :group_id" if conversation_id is None else "conversation_id = :id"
    if not include_deleted:
        where += f" AND {_LIVE}"
    return archive.conn.execute(
        f"SELECT {THREAD_COLUMNS} FROM threads WHERE {where} "
        "ORDER BY lastDeliveredDateTime DESC, id",
        {"group_id": group_id, "id": conversation_id},
    ).fetchall()


def post_rows(
    archive: Connection, thread_id: str, include_deleted: bool
) -> list[tuple[str, str | None, str | None]]:
    """A thread's posts, oldest first, with the JSON of their latest version:
    ``(id, deleted_at, json)``."""
    live = "" if include_deleted else "AND p.deleted_at IS NULL"
    return archive.conn.execute(
        f"""
        SELECT p.id, p.deleted_at, v.json FROM posts p
        LEFT JOIN post_versions v ON v.post_id = p.id AND v.changeKey = p.changeKey
        WHERE p.thread_id = :thread_id {live} ORDER BY p.receivedDateTime, p.id
        """,
        {"thread_id": thread_id},
    ).fetchall()


def post_row(
    archive: Connection, thread_id: str, post_id: str
) -> tuple[str, str | None, str | None, str | None] | None:
    """``(id, deleted_at, json, attachments_note)`` of one post of a thread, or None."""
    return archive.conn.execute(
        """
        SELECT p.id, p.deleted_at, v.json, p.attachments_note FROM posts p
        LEFT JOIN post_versions v ON v.post_id = p.id AND v.changeKey = p.changeKey
        WHERE p.id = :id AND p.thread_id = :thread_id
        """,
        {"id": post_id, "thread_id": thread_id},
    ).fetchone()


def post_version_rows(archive: Connection, post_id: str) -> list[tuple[str, str, str, str]]:
    """Every stored version of a post, oldest first: ``(changeKey, json, sha256,
    first_seen_at)``."""
    return archive.conn.execute(
        "SELECT changeKey, json, sha256, first_seen_at FROM post_versions "
        "WHERE post_id = :post_id ORDER BY rowid",
        {"post_id": post_id},
    ).fetchall()


# An item shows until the archive holds what it made: a reply until its thread has been
# fetched again after it was sent, a new thread until that thread is archived.
_PENDING_SQL = """
SELECT o.id, o.action, o.state, o.group_id, o.conversation_id, o.thread_id, o.post_id,
       o.topic, o.body, o.created_at, o.sent_at, o.result
FROM _outbox o
WHERE o.group_id = :group_id AND o.action IN {actions}
  AND (o.state IN ('queued', 'sending', 'uncertain') OR (o.state = 'sent' AND {not_synced}))
  {extra}
ORDER BY o.id
"""
_REPLY_NOT_SYNCED = """NOT EXISTS (SELECT 1 FROM threads t WHERE t.id = o.thread_id
    AND t.updated_at > o.sent_at)"""
_THREAD_NOT_SYNCED = """NOT EXISTS (SELECT 1 FROM threads t WHERE t.group_id = o.group_id
    AND (t.id = json_extract(o.result, '$.thread') OR t.id = json_extract(o.result, '$.id')
         OR t.id = json_extract(o.result, '$.threads[0]')))"""


def _outbox_rows(
    archive: Connection,
    group_id: str,
    actions: tuple[str, ...],
    not_synced: str,
    extra: str,
    params: dict[str, Any],
) -> list[tuple[Any, ...]]:
    values, action_params = in_list("action", actions)
    sql = _PENDING_SQL.format(actions=values, not_synced=not_synced, extra=extra)
    try:
        return archive.conn.execute(
            sql, {"group_id": group_id, **action_params, **params}
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # an archive from before the outbox, opened read-only: nothing queued


def pending_reply_rows(archive: Connection, group_id: str, thread_id: str) -> list[tuple[Any, ...]]:
    """Replies to a thread queued in the outbox that the archive does not hold yet:
    ``(id, action, state, group_id, conversation_id, thread_id, post_id, topic, body,
    created_at, sent_at, result)``."""
    return _outbox_rows(
        archive,
        group_id,
        ("reply-to-thread", "reply-to-post"),
        _REPLY_NOT_SYNCED,
        "AND o.thread_id = :thread_id",
        {"thread_id": thread_id},
    )


def pending_thread_rows(
    archive: Connection, group_id: str, conversation_id: str | None
) -> list[tuple[Any, ...]]:
    """New threads (and, for a whole group, conversations) queued in the outbox that the
    archive does not hold yet, with the columns of ``pending_reply_rows``."""
    actions = ("new-thread",) if conversation_id else ("new-thread", "new-conversation")
    extra = "AND o.conversation_id = :conversation_id" if conversation_id else ""
    return _outbox_rows(
        archive, group_id, actions, _THREAD_NOT_SYNCED, extra, {"conversation_id": conversation_id}
    )


def attachment_rows(
    archive: Connection, post_id: str, include_deleted: bool
) -> list[tuple[str, str | None, str, str | None, int | None, str | None]]:
    """A post's attachments in the order stored: ``(id, name, json, sha256, size,
    deleted_at)``, size from the blob when its bytes are archived."""
    live = "" if include_deleted else "AND a.deleted_at IS NULL"
    return archive.conn.execute(
        f"""
        SELECT a.id, a.name, a.json, a.sha256, b.size, a.deleted_at FROM attachments a
        LEFT JOIN blobs b ON b.sha256 = a.sha256
        WHERE a.post_id = :post_id {live} ORDER BY a.rowid
        """,
        {"post_id": post_id},
    ).fetchall()
