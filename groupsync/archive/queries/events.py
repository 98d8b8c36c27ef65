"""The ``events`` table as the hook runner reads and updates it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..connection import Connection

_COLUMNS = (
    "id, kind, group_id, conversation_id, thread_id, post_id, sync_run_id, json, state, "
    "attempts, last_error, created_at, last_attempt_at, delivered_at"
)


def _rows(archive: Connection, sql: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    cursor = archive.conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def iter_event_rows(
    archive: Connection,
    *,
    since: str | None = None,
    state: str | None = None,
    group_id: str | None = None,
    after_id: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Event rows oldest first, each filter applied only when given: recorded at or after
    ``since`` (a Graph-style UTC time), in ``state``, of ``group_id``, after ``after_id``."""
    params = {"since": since, "state": state, "group_id": group_id, "after_id": after_id}
    where = [
        condition
        for condition, name in (
            ("created_at >= :since", "since"),
            ("state = :state", "state"),
            ("group_id = :group_id", "group_id"),
            ("id > :after_id", "after_id"),
        )
        if params[name] is not None
    ]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    yield from _rows(archive, f"SELECT {_COLUMNS} FROM events {clause} ORDER BY id", params)


def event_row(archive: Connection, event_id: int) -> dict[str, Any] | None:
    """One event's row, or None."""
    return next(
        _rows(archive, f"SELECT {_COLUMNS} FROM events WHERE id = :id", {"id": event_id}), None
    )


def undelivered_event_ids(archive: Connection) -> list[int]:
    """Pending and failed events, oldest first."""
    return [
        r[0]
        for r in archive.conn.execute(
            "SELECT id FROM events WHERE state IN ('pending', 'failed') ORDER BY id"
        )
    ]


def latest_event_id(archive: Connection) -> int:
    """The newest event's id; 0 when there is none."""
    row = archive.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(row[0])


def mark_delivered(archive: Connection, event_id: int, at: str) -> None:
    """Count an attempt that the hook took."""
    archive.conn.execute(
        "UPDATE events SET state = 'delivered', attempts = attempts + 1, "
        "last_attempt_at = :at, delivered_at = :at, last_error = NULL WHERE id = :id",
        {"at": at, "id": event_id},
    )


def mark_failed(archive: Connection, event_id: int, at: str, error: str) -> None:
    """Count an attempt that failed, with groupsync's own account of why."""
    archive.conn.execute(
        "UPDATE events SET state = 'failed', attempts = attempts + 1, "
        "last_attempt_at = :at, last_error = :error WHERE id = :id",
        {"at": at, "error": error, "id": event_id},
    )
