"""The outbox's tables (``_outbox``, ``_outbox_log``) and what it checks before queueing."""

from __future__ import annotations

from typing import Any

from ..connection import Connection

# States an item still waits in; an uncertain forward waits for a person, not for replay.
_REPLAYABLE = (
    "state IN ('queued', 'uncertain') AND NOT (state = 'uncertain' AND action = 'forward')"
)


def insert_item(archive: Connection, values: dict[str, Any]) -> int:
    """Queue an item; its id. ``values`` holds ``action``, ``group_id``,
    ``conversation_id``, ``thread_id``, ``post_id``, ``topic``, ``body``, ``marker``,
    ``content_sha256``, ``identity`` and ``now`` (its creation and first attempt time)."""
    cursor = archive.conn.execute(
        """
        INSERT INTO _outbox (action, group_id, conversation_id, thread_id, post_id,
            topic, body, marker, content_sha256, state, identity, created_at,
            next_attempt_at)
        VALUES (:action, :group_id, :conversation_id, :thread_id, :post_id, :topic, :body,
            :marker, :content_sha256, 'queued', :identity, :now, :now)
        """,
        values,
    )
    return int(cursor.lastrowid or 0)


def group_deleted_at(archive: Connection, group_id: str) -> tuple[str | None] | None:
    """``(deleted_at,)`` of an archived group, or None when it is not archived."""
    return archive.conn.execute(
        "SELECT deleted_at FROM groups WHERE id = :id", {"id": group_id}
    ).fetchone()


def conversation_deleted_at(
    archive: Connection, group_id: str, conversation_id: str
) -> tuple[str | None] | None:
    """``(deleted_at,)`` of a conversation of the group, or None."""
    return archive.conn.execute(
        "SELECT deleted_at FROM conversations WHERE id = :id AND group_id = :group_id",
        {"id": conversation_id, "group_id": group_id},
    ).fetchone()


def thread_deleted_and_locked(
    archive: Connection, group_id: str, thread_id: str
) -> tuple[str | None, int | None] | None:
    """``(deleted_at, isLocked)`` of a thread of the group, or None."""
    return archive.conn.execute(
        "SELECT deleted_at, isLocked FROM threads WHERE id = :id AND group_id = :group_id",
        {"id": thread_id, "group_id": group_id},
    ).fetchone()


def post_deleted_at(archive: Connection, thread_id: str, post_id: str) -> tuple[str | None] | None:
    """``(deleted_at,)`` of a post of the thread, or None."""
    return archive.conn.execute(
        "SELECT deleted_at FROM posts WHERE id = :id AND thread_id = :thread_id",
        {"id": post_id, "thread_id": thread_id},
    ).fetchone()


def item_row(archive: Connection, item_id: int) -> dict[str, Any] | None:
    """An ``_outbox`` row as stored, or None."""
    cursor = archive.conn.execute("SELECT * FROM _outbox WHERE id = :id", {"id": item_id})
    row = cursor.fetchone()
    return None if row is None else dict(zip([d[0] for d in cursor.description], row, strict=True))


def item_ids(archive: Connection, state: str | None = None) -> list[int]:
    """Items oldest first, of one state or all."""
    where = "WHERE state = :state" if state else ""
    return [
        r[0]
        for r in archive.conn.execute(
            f"SELECT id FROM _outbox {where} ORDER BY id", {"state": state}
        )
    ]


def item_history(archive: Connection, item_id: int) -> list[dict[str, Any]]:
    """An item's transitions, oldest first."""
    cursor = archive.conn.execute(
        "SELECT at, state, detail, identity FROM _outbox_log WHERE outbox_id = :id ORDER BY id",
        {"id": item_id},
    )
    return [dict(zip(("at", "state", "detail", "identity"), r, strict=True)) for r in cursor]


def log_transition(
    archive: Connection,
    item_id: int,
    state: str,
    detail: str | None,
    now: str,
    identity: str | None,
) -> None:
    """A line in an item's history."""
    archive.conn.execute(
        "INSERT INTO _outbox_log (outbox_id, at, state, detail, identity) "
        "VALUES (:id, :at, :state, :detail, :identity)",
        {"id": item_id, "at": now, "state": state, "detail": detail, "identity": identity},
    )


def update_item(archive: Connection, item_id: int, values: dict[str, Any]) -> None:
    """Set columns of an item (names from the outbox's code, never from input)."""
    columns = ", ".join(f"{name} = :{name}" for name in values)
    archive.conn.execute(
        f"UPDATE _outbox SET {columns} WHERE id = :item_id", {**values, "item_id": item_id}
    )


def sending_item_ids(archive: Connection) -> list[int]:
    """Items left ``sending`` (by a process that died, when no send runs)."""
    return [r[0] for r in archive.conn.execute("SELECT id FROM _outbox WHERE state = 'sending'")]


def next_item_id(archive: Connection, now: str) -> int | None:
    """The oldest item due at ``now`` whose thread has nothing older still open."""
    row = archive.conn.execute(
        """
        SELECT id FROM _outbox AS o
        WHERE state IN ('queued', 'uncertain')
          AND coalesce(next_attempt_at, '') <= :now
          AND NOT (state = 'uncertain' AND action = 'forward')
          AND NOT EXISTS (
            SELECT 1 FROM _outbox AS earlier
            WHERE earlier.id < o.id
              AND earlier.state IN ('queued', 'sending', 'uncertain')
              AND NOT (earlier.state = 'uncertain' AND earlier.action = 'forward')
              AND coalesce(earlier.thread_id, earlier.conversation_id, '#' || earlier.id)
                = coalesce(o.thread_id, o.conversation_id, '#' || o.id)
          )
        ORDER BY id LIMIT 1
        """,
        {"now": now},
    ).fetchone()
    return int(row[0]) if row else None


def next_attempt_at(archive: Connection) -> str | None:
    """When the next waiting item is due, or None when none waits."""
    row = archive.conn.execute(f"SELECT min(next_attempt_at) FROM _outbox WHERE {_REPLAYABLE}")
    found = row.fetchone()
    return None if not found else found[0]


def count_waiting(archive: Connection) -> int:
    """Items not yet settled: queued, uncertain or sending."""
    row = archive.conn.execute(
        "SELECT count(*) FROM _outbox WHERE state IN ('queued', 'uncertain', 'sending')"
    ).fetchone()
    return int(row[0])
