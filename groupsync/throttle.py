"""A sliding-window rate limit shared by every process that uses the same archive.

The connector allows 100 calls per 60 s per connection, and Graph answers 429 with
``Retry-After`` when a client overdoes it. A cron sync and an outbox replay may run at the
same time, so the window lives in a small SQLite file beside the archive
(``<db>.throttle``), not in process memory.

How a call is counted. Each call takes a row when it is allowed to start and marks the row
done when its answer has arrived. A row stops counting only ``window`` seconds after it was
marked done. The server saw the request arrive before that moment. So any two calls more
than ``limit`` apart in the queue arrived more than ``window`` seconds apart, whatever the
network did, and no window of that length on the server's clock holds more than ``limit``
calls. A row whose process died in flight is taken as done ``lease`` seconds after it
started.

A 429's ``Retry-After`` is shared the same way: ``block(seconds)`` stops every process
sharing the file until then.

Per mailbox. Graph counts Outlook requests per app **and mailbox** (10,000 per 10 minutes),
so a throttle made with ``per_mailbox=True`` keeps one window, and one Retry-After, per
mailbox named in ``acquire(mailbox)`` / ``block(seconds, mailbox)``; calls that name none
(the directory: ``/groups``, ``/me``) share one more. Off (the connector's profile), every
call of the connection shares one window whatever it names.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from .errors import GroupsyncError
from .files import touch_private

__all__ = ["Clock", "SystemClock", "Throttle", "ThrottleStats", "SYSTEM_CLOCK"]

_MARGIN = 0.002  # seconds; keeps float rounding from letting a call in at the exact edge
_POLL = 0.05  # seconds to wait when every counted call is still in flight


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, started REAL NOT NULL, done REAL
);
CREATE INDEX IF NOT EXISTS calls_key ON calls (key);
CREATE TABLE IF NOT EXISTS blocks (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


class Clock(Protocol):
    """Wall-clock time and sleep, injectable so tests never wait."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


@dataclass
class ThrottleStats:
    """What the throttle cost: how many calls had to wait and for how long in total."""

    acquired: int = 0
    waits: int = 0
    waited: float = 0.0
    blocked: float = 0.0


class Slot:
    """One call's place in the window; ``release()`` once its answer has arrived."""

    def __init__(self, throttle: Throttle | None, row_id: int | None) -> None:
        self._throttle = throttle
        self._row_id = row_id

    def release(self) -> None:
        if self._throttle is not None and self._row_id is not None:
            self._throttle._release(self._row_id)
            self._row_id = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Throttle:
    """Allow at most ``rate[0]`` calls in any ``rate[1]`` seconds.

    Parameters: ``rate`` (``None`` turns counting off; ``block`` still works), ``path`` of
    the shared state file (``None``: this process only), ``key`` separating connections
    that share a file (the Graph URL plus the identity), ``clock``, ``lease``, the
    longest a call can be in flight before a dead process's row is let go, and
    ``per_mailbox`` (one window and one Retry-After per mailbox, Graph's own accounting).
    """

    def __init__(
        self,
        rate: tuple[int, float] | None,
        path: str | None = None,
        *,
        key: str = "default",
        clock: Clock = SYSTEM_CLOCK,
        lease: float = 300.0,
        per_mailbox: bool = False,
    ) -> None:
        self.rate = rate
        self.key = key
        self.per_mailbox = per_mailbox
        self.clock = clock
        self.lease = lease
        self.stats = ThrottleStats()
        self._lock = threading.Lock()
        try:
            if path and path != ":memory:":
                touch_private(path)  # SQLite gives its -wal and -shm the same mode
            self._db = sqlite3.connect(
                path or ":memory:", timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as ex:
            raise self._unusable(path, ex) from None
        try:
            self._prepare(path)
        except sqlite3.Error as ex:
            self._db.close()
            raise self._unusable(path, ex) from None

    @staticmethod
    def _unusable(path: str | None, error: Exception) -> GroupsyncError:
        reason = getattr(error, "strerror", None) or error
        return GroupsyncError(f"cannot use the throttle file {path}: {reason}")

    def _prepare(self, path: str | None) -> None:
        self._db.execute("PRAGMA synchronous=OFF")
        # Switching to WAL and creating the tables need the write lock, and SQLite may
        # refuse those at once (no busy wait) while another process holds it: retry.
        for attempt in range(200):
            try:
                if path and self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as ex:
                if "locked" not in str(ex) or attempt == 199:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Throttle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def key_for(self, mailbox: str | None = None) -> str:
        """The window a call to ``mailbox`` counts in (the connection's, unless per mailbox)."""
        if not self.per_mailbox:
            return self.key
        return f"{self.key}|mailbox:{mailbox or '-'}"

    def acquire(self, mailbox: str | None = None) -> Slot:
        """Wait until a call to ``mailbox`` may start, then take its place in the window."""
        key = self.key_for(mailbox)
        waited = False
        while True:
            row_id, wait, blocked = self._try_acquire(key)
            if row_id is not None or (wait <= 0 and self.rate is None):
                if waited:
                    self.stats.waits += 1
                self.stats.acquired += 1
                return Slot(self, row_id)
            waited = True
            self.stats.waited += wait
            if blocked:
                self.stats.blocked += wait
            self.clock.sleep(wait)

    def block(self, seconds: float, mailbox: str | None = None) -> None:
        """Nobody sharing this window starts a call for ``seconds`` (a 429's Retry-After);
        per mailbox, only calls to the mailbox the 429 answered."""
        until = self.clock.time() + seconds
        with self._lock:
            self._db.execute(
                "INSERT INTO blocks (key, until) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET until = max(until, excluded.until)",
                (self.key_for(mailbox), until),
            )

    def in_window(self, mailbox: str | None = None) -> int:
        """Calls currently counted in the window (for progress displays and tests)."""
        if self.rate is None:
            return 0
        now = self.clock.time()
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM calls WHERE key = ? AND coalesce(done, started + ?) >= ?",
                (self.key_for(mailbox), self.lease, now - self.rate[1] - _MARGIN),
            ).fetchone()
        return int(count)

    def _try_acquire(self, key: str) -> tuple[int | None, float, bool]:
        """One attempt: ``(row id, 0, False)`` when allowed, else ``(None, seconds, blocked)``."""
        now = self.clock.time()
        with self._lock:
            db = self._db
            if self.rate is None:  # nothing to count: only a shared Retry-After to read
                row = db.execute("SELECT until FROM blocks WHERE key = ?", (key,)).fetchone()
                if row and row[0] > now:
                    return None, row[0] - now, True
                return None, 0.0, False
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT until FROM blocks WHERE key = ?", (key,)).fetchone()
                if row and row[0] > now:
                    db.execute("COMMIT")
                    return None, row[0] - now, True
                limit, window = self.rate
                horizon = now - window - _MARGIN
                db.execute(
                    "DELETE FROM calls WHERE key = ? AND coalesce(done, started + ?) < ?",
                    (key, self.lease, horizon),
                )
                (count,) = db.execute(
                    "SELECT count(*) FROM calls WHERE key = ?", (key,)
                ).fetchone()
                if count < limit:
                    cursor = db.execute(
                        "INSERT INTO calls (key, started) VALUES (?, ?)", (key, now)
                    )
                    db.execute("COMMIT")
                    return cursor.lastrowid, 0.0, False
                (oldest_done,) = db.execute(
                    "SELECT min(coalesce(done, started + ?)) FROM calls WHERE key = ?",
                    (self.lease, key),
                ).fetchone()
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        wait = oldest_done + window + 2 * _MARGIN - now
        in_flight_only = oldest_done > now
        return None, (_POLL if in_flight_only else max(wait, 0.001)), False

    def _release(self, row_id: int) -> None:
        now = self.clock.time()
        with self._lock:
            self._db.execute("UPDATE calls SET done = ? WHERE id = ?", (now, row_id))
