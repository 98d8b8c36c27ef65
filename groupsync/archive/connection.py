"""Opening an archive and its transactions: read-only opens, errors that name the file,
``atomic`` (savepoints by depth) and ``batch``; creating, tuning and migrating only on request."""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlite_utils import Database

from ..errors import ArchiveError
from ..files import can_write, touch_private
from ..migrations import applied_migrations, apply_migrations, unknown_migrations

PAGE_SIZE = 8192  # bytes per database page, for archives created from now on
CACHE_SIZE = -65536  # the page cache, in KiB (negative): 64 MiB

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


class Connection:
    """An open archive file and its transactions; ``Archive`` (which adds the tables'
    functions) documents the parameters."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        self.immutable = False
        if self.path != ":memory:" and not Path(self.path).exists():
            raise ArchiveError(f"no archive at {self.path}; run `groupsync sync` first")
        if readonly:
            conn, self.immutable = connect_readonly(self.path)
            self.db = Database(conn)
        else:
            if self.path != ":memory:" and not writable(self.path):
                raise ArchiveError(
                    f"{self.path} is read-only here (it or its folder cannot be written); "
                    "the reading commands work on it as it is"
                )
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
        self._guard(self._connect)

    @classmethod
    def open_for_writing(cls, path: str | Path) -> Self:
        """The archive the writing commands use: created (private to its owner) if it is
        missing, set up and migrated to this version's schema."""
        path = str(path)
        if path != ":memory:" and not Path(path).exists():
            try:
                touch_private(path)  # SQLite gives -wal and -shm the same mode
            except OSError as ex:
                raise ArchiveError(f"cannot create {path}: {ex.strerror}") from None
        archive = cls(path)
        archive._guard(archive.migrate)
        return archive

    def _guard(self, step: Callable[[], None]) -> None:
        """Run a step of opening; on failure close, and name the file in the error."""
        try:
            step()
        except BaseException as ex:
            self.db.close()
            if isinstance(ex, sqlite3.DatabaseError):
                raise archive_error(self.path, ex) from None
            raise

    def _connect(self) -> None:
        """Check the schema and set this connection's options (none is stored in the file)."""
        self._check_schema()
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache: the sync's lookups by long Exchange ids stay in memory.
        self.db.execute(f"PRAGMA cache_size={CACHE_SIZE}")

    def migrate(self) -> None:
        """Set the file up for writing and bring its schema to this version: idempotent,
        called once by each writing command."""
        if self.readonly:
            raise ArchiveError(f"{self.path} is open read-only; it cannot be migrated")
        # Only a new, empty file takes it. A post's row (HTML and text of its body)
        # or version (its JSON) is 2-4 kB: 8 kB pages hold them with less slack,
        # so the file is smaller and writes faster (docs/performance.md, "Storage").
        self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self.db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives a killed process; only a power cut can lose
        # the last commits, which the next sync fetches again.
        self.db.execute("PRAGMA synchronous=NORMAL")
        apply_migrations(self.db)
        self._tune_fts()
        # Again, now that a new file has its page size: set before it, the cache of a
        # first sync held more memory than asked for (a larger peak RSS, measured).
        self.db.execute(f"PRAGMA cache_size={CACHE_SIZE}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
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
                if self._one("SELECT 1 FROM sqlite_master WHERE name = :name", {"name": table}):
                    self.conn.execute(
                        f"INSERT INTO {table} ({table}, rank) VALUES ('automerge', 16)"
                    )

    def _one(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        row = self.conn.execute(sql, params or {}).fetchone()
        return row[0] if row else None
