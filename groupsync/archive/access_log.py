"""The access log: who searched, read, downloaded or exported what, in a SQLite file of its
own beside the archive (``<db>.access``). Its rows are chained like the sync runs: each
row's digest covers the previous row's digest and the row's own canonical content, so an
edited or deleted row breaks the chain from there (``groupsync verify`` checks it).

Not in the archive: every reader (a ``groupsync search``, a Datasette page) must write a
row, and the archive is opened read-only by readers, served ``--immutable`` and copied to
read-only evidence mounts; a file of its own keeps those working and lets Datasette show
it to auditors as a database of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..files import touch_private
from .side_file import SideFile

__all__ = [
    "ACCESS_CHAIN_VERSION",
    "ACCESS_COLUMNS",
    "GENESIS",
    "AccessLogFile",
    "access_digest",
    "default_access_log_path",
]

ACCESS_CHAIN_VERSION = "groupsync-access/1"
GENESIS = "0" * 64
# The columns a row's digest covers, in this order.
ACCESS_COLUMNS = ("id", "at", "actor", "action", "target", "count", "origin")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    count INTEGER,
    origin TEXT NOT NULL,
    prev_digest TEXT NOT NULL,
    digest TEXT NOT NULL
)
"""


def default_access_log_path(db: str | os.PathLike[str]) -> str:
    """Where an archive's access log lives unless told otherwise: beside it."""
    return f"{os.fspath(db)}.access"


def access_digest(prev: str, row: dict[str, Any]) -> str:
    """A row's digest: SHA-256 of ``groupsync-access/1\\n<previous digest>\\n`` and the
    row's canonical JSON (a list of the ``ACCESS_COLUMNS`` values, compact, UTF-8)."""
    content = json.dumps([row[c] for c in ACCESS_COLUMNS], ensure_ascii=False,
                         separators=(",", ":"))  # fmt: skip
    text = f"{ACCESS_CHAIN_VERSION}\n{prev}\n{content}\n"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AccessLogFile(SideFile):
    """One access-log file. ``readonly`` opens an existing file and never writes;
    otherwise the file is created 0600 if missing, and ``append`` adds chained rows
    (one ``BEGIN IMMEDIATE`` each, so two processes appending never fork the chain)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        if readonly:
            name = urllib.parse.quote(str(Path(self.path).resolve()))
            self.conn = sqlite3.connect(f"file:{name}?mode=ro", uri=True,
                                        check_same_thread=False)  # fmt: skip
            return
        touch_private(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self.conn.execute("PRAGMA busy_timeout=30000")
            if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.conn.execute("PRAGMA journal_mode=WAL")
            # A killed process keeps its rows; a power cut may lose the last ones.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(_SCHEMA)
        except BaseException:
            self.conn.close()
            raise

    def append(self, at: str, actor: str, action: str, target: str | None, count: int | None,
               origin: str) -> dict[str, Any]:  # fmt: skip
        """Add one row after the newest; the row as stored, digest included."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                last = self.conn.execute(
                    "SELECT id, digest FROM access_log ORDER BY id DESC LIMIT 1"
                ).fetchone()
                prev = last[1] if last else GENESIS
                row: dict[str, Any] = {
                    "id": (last[0] if last else 0) + 1,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "count": count,
                    "origin": origin,
                }
                row["prev_digest"] = prev
                row["digest"] = access_digest(prev, row)
                self.conn.execute(
                    "INSERT INTO access_log (id, at, actor, action, target, count, origin, "
                    "prev_digest, digest) VALUES (:id, :at, :actor, :action, :target, :count, "
                    ":origin, :prev_digest, :digest)",
                    row,
                )
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        return row

    def has_table(self) -> bool:
        return bool(self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'access_log'"
        ).fetchone())  # fmt: skip

    def rows(
        self,
        *,
        since: str | None = None,
        actor: str | None = None,
        action: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows oldest first, filtered: ``at`` on or after ``since``, exact actor and action."""
        if not self.has_table():
            return
        cursor = self.conn.execute(
            "SELECT id, at, actor, action, target, count, origin, prev_digest, digest "
            "FROM access_log WHERE (:since IS NULL OR at >= :since) "
            "AND (:actor IS NULL OR actor = :actor) AND (:action IS NULL OR action = :action) "
            "ORDER BY id",
            {"since": since, "actor": actor, "action": action},
        )
        names = [d[0] for d in cursor.description]
        for values in cursor:
            yield dict(zip(names, values, strict=True))

    def head(self) -> tuple[int, str] | None:
        """The newest row's id and digest (what a sync run seals into the archive)."""
        if not self.has_table():
            return None
        row = self.conn.execute(
            "SELECT id, digest FROM access_log ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def digest_of(self, row_id: int) -> str | None:
        if not self.has_table():
            return None
        row = self.conn.execute(
            "SELECT digest FROM access_log WHERE id = :id", {"id": row_id}
        ).fetchone()
        return str(row[0]) if row else None
