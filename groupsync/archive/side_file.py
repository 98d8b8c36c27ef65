"""A SQLite file of the archive's own beside it (the access log, what hooks printed): kept
apart from the archive for the reasons each module gives, closed the same way."""

from __future__ import annotations

import sqlite3
from typing import Self


class SideFile:
    """One open side file: ``close()`` it, or use it in a ``with`` block."""

    conn: sqlite3.Connection

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
