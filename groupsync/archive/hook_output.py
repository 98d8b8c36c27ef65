"""What hooks printed, kept beside the archive in a SQLite file of its own (``<db>.hooks``):
the archive package owns every SQL statement, this file's too."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from .side_file import SideFile


class Printed(Protocol):
    """What a hook printed and how it ended (``events.HookOutput`` is one): the archive
    package names the shape it stores rather than importing the use case above it."""

    @property
    def status(self) -> int | None: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...


class HookOutputLog(SideFile):
    """What hooks printed, the latest attempt per event, in a SQLite file of its own (0600).

    Not in the archive: Datasette, exports and anyone the archive is shared with would see
    it there, and a hook may well print a credential of its own. Keeps the ``keep`` most
    recent events' output. ``readonly`` opens an existing file and never writes.
    """

    def __init__(self, path: str, *, keep: int = 1000, readonly: bool = False) -> None:
        self.path = path
        self.keep = keep
        if readonly:
            self.conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS hook_output (event_id INTEGER PRIMARY KEY, at TEXT, "
            "status INTEGER, stdout TEXT, stderr TEXT)"
        )

    def save(self, event_id: int, at: str, output: Printed) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT OR REPLACE INTO hook_output VALUES "
                "(:event_id, :at, :status, :stdout, :stderr)",
                {
                    "event_id": event_id,
                    "at": at,
                    "status": output.status,
                    "stdout": output.stdout,
                    "stderr": output.stderr,
                },
            )
            self.conn.execute(
                "DELETE FROM hook_output WHERE event_id NOT IN "
                "(SELECT event_id FROM hook_output ORDER BY event_id DESC LIMIT :keep)",
                {"keep": self.keep},
            )

    def get(self, event_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT at, status, stdout, stderr FROM hook_output WHERE event_id = :event_id",
            {"event_id": event_id},
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("at", "status", "stdout", "stderr"), row, strict=True))
