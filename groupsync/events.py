"""The "new email arrives" trigger: events recorded by the sync, delivered to a hook.

The sync records one event per new post, in the transaction that stores the post
(``Archive.save_event``), so a crash cannot lose one. Each event is the connector's
``ConversationTriggerResponse``::

    {"id": <conversation id>, "lastDeliveredDateTime": ...,
     "threads": [{"id": <thread id>,
                  "posts": [{"id": ..., "changeKey": ..., "lastModifiedDateTime": ...}]}],
     "@groupsync.event": {"id": 7, "groupId": ..., "createdDateTime": ...}}

Delivery is at least once: an event is ``pending`` until a hook took it (``delivered``);
a failed attempt leaves it ``failed`` with the error, and it is tried again later.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .archive import Archive, utc_now
from .errors import GroupsyncError

__all__ = [
    "EVENT_STATES",
    "DeliveryReport",
    "HookError",
    "ShellHook",
    "deliver_pending",
    "event_payload",
    "iter_events",
    "latest_event_id",
]

EVENT_STATES = ("pending", "delivered", "failed")
Hook = Callable[[dict[str, Any]], None]
_COLUMNS = (
    "id, kind, group_id, conversation_id, thread_id, post_id, sync_run_id, json, state, "
    "attempts, last_error, created_at, last_attempt_at, delivered_at"
)


class HookError(GroupsyncError):
    """A hook did not take an event: it failed, timed out or could not be started."""


def event_payload(row: dict[str, Any]) -> dict[str, Any]:
    """An ``events`` row as the hook and ``--jsonl`` see it: the connector shape plus ours."""
    payload = json.loads(row["json"])
    payload["@groupsync.event"] = {
        "id": row["id"],
        "groupId": row["group_id"],
        "createdDateTime": row["created_at"],
    }
    return payload


def _rows(archive: Archive, sql: str, params: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    cursor = archive.conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def iter_events(
    archive: Archive,
    *,
    since: str | None = None,
    state: str | None = None,
    group_id: str | None = None,
    after_id: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Events oldest first: recorded at or after ``since`` (a Graph-style UTC time)."""
    where, params = [], []
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if group_id is not None:
        where.append("group_id = ?")
        params.append(group_id)
    if after_id is not None:
        where.append("id > ?")
        params.append(after_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    yield from _rows(archive, f"SELECT {_COLUMNS} FROM events {clause} ORDER BY id", tuple(params))


def latest_event_id(archive: Archive) -> int:
    row = archive.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(row[0])


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    left: int = 0


def deliver_pending(
    archive: Archive,
    hook: Hook,
    *,
    now: Callable[[], str] = utc_now,
    log: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_consecutive_failures: int = 3,
) -> DeliveryReport:
    """Give every pending or failed event to ``hook``, oldest first, one at a time.

    Each outcome is committed before the next event. After ``max_consecutive_failures``
    failures in a row the hook looks down: the rest wait for the next call.
    """
    report = DeliveryReport()
    todo = [
        r["id"]
        for r in _rows(
            archive, "SELECT id FROM events WHERE state IN ('pending', 'failed') ORDER BY id", ()
        )
    ]
    streak = 0
    for index, event_id in enumerate(todo):
        if should_stop() or streak >= max_consecutive_failures:
            report.left = len(todo) - index
            break
        (row,) = _rows(archive, f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,))
        if row["state"] == "delivered":
            continue
        error: str | None = None
        try:
            hook(event_payload(row))
        except HookError as ex:
            error = str(ex)
        at = now()
        with archive.atomic():
            if error is None:
                archive.conn.execute(
                    "UPDATE events SET state = 'delivered', attempts = attempts + 1, "
                    "last_attempt_at = ?, delivered_at = ?, last_error = NULL WHERE id = ?",
                    (at, at, event_id),
                )
            else:
                archive.conn.execute(
                    "UPDATE events SET state = 'failed', attempts = attempts + 1, "
                    "last_attempt_at = ?, last_error = ? WHERE id = ?",
                    (at, error, event_id),
                )
        if error is None:
            report.delivered += 1
            streak = 0
        else:
            report.failed += 1
            streak += 1
        if log is not None:
            log(
                {
                    "event": "hook",
                    "level": "info" if error is None else "warning",
                    "event_id": event_id,
                    "post_id": row["post_id"],
                    "outcome": "delivered" if error is None else "failed",
                    "attempts": row["attempts"] + 1,
                    "error": error,
                }
            )
    return report


class ShellHook:
    """Runs a shell command once per event with the event's JSON on stdin.

    Exit 0 within ``timeout`` seconds means delivered. The command also gets
    ``GROUPSYNC_EVENT_ID``, ``GROUPSYNC_GROUP_ID``, ``GROUPSYNC_THREAD_ID`` and
    ``GROUPSYNC_POST_ID`` in its environment. On a timeout its whole process group is
    killed, so a hook's own children cannot keep it alive.
    """

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.command = command
        self.timeout = timeout

    def __call__(self, event: dict[str, Any]) -> None:
        meta = event.get("@groupsync.event") or {}
        thread = (event.get("threads") or [{}])[0]
        post = (thread.get("posts") or [{}])[0]
        env = {
            **os.environ,
            "GROUPSYNC_EVENT_ID": str(meta.get("id", "")),
            "GROUPSYNC_GROUP_ID": str(meta.get("groupId", "")),
            "GROUPSYNC_THREAD_ID": str(thread.get("id", "")),
            "GROUPSYNC_POST_ID": str(post.get("id", "")),
        }
        data = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            proc = subprocess.Popen(
                self.command,
                shell=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as ex:
            raise HookError(f"cannot start the hook: {ex}") from None
        try:
            _, err = proc.communicate(data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise HookError(f"the hook did not finish within {self.timeout:g} s") from None
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip()[-500:]
            detail = f": {tail}" if tail else ""
            raise HookError(f"the hook exited with status {proc.returncode}{detail}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
