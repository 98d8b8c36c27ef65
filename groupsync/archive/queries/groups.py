"""What naming a group on the command line reads."""

from __future__ import annotations

import sqlite3

from ...errors import ArchiveError
from ..connection import Connection

GroupNames = tuple[str, str | None, str | None, str | None, str | None]


def group_names(archive: Connection) -> list[GroupNames]:
    """Every archived group's ``(id, displayName, mail, mailNickname, deleted_at)``."""
    try:
        return archive.conn.execute(
            "SELECT id, displayName, mail, mailNickname, deleted_at FROM groups"
        ).fetchall()
    except sqlite3.Error as ex:
        raise ArchiveError(f"cannot read the archive's groups: {ex}") from None
