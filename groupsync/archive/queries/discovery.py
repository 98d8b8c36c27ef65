"""What group discovery (``groupsync.discovery``) reads and writes: the stored deltaLink of
``/groups/delta`` and the tombstones of groups Graph reports removed."""

from __future__ import annotations

from ..connection import Connection

SCOPE_ALL = "all"


def delta_link(archive: Connection, scope: str = SCOPE_ALL) -> str | None:
    """The deltaLink the last complete listing of ``scope`` ended with, or None."""
    return archive._one(
        "SELECT delta_link FROM _group_delta WHERE scope = :scope", {"scope": scope}
    )


def save_delta_link(archive: Connection, link: str, now: str, scope: str = SCOPE_ALL) -> None:
    archive.conn.execute(
        """
        INSERT INTO _group_delta (scope, delta_link, updated_at) VALUES (:scope, :link, :now)
        ON CONFLICT(scope) DO UPDATE SET delta_link = excluded.delta_link,
            updated_at = excluded.updated_at
        """,
        {"scope": scope, "link": link, "now": now},
    )


def forget_delta_link(archive: Connection, scope: str = SCOPE_ALL) -> None:
    archive.conn.execute("DELETE FROM _group_delta WHERE scope = :scope", {"scope": scope})


def tombstone_group(archive: Connection, group_id: str, now: str, note: str) -> bool:
    """Mark an archived group deleted upstream (its mail stays); False if not archived or
    already tombstoned."""
    cursor = archive.conn.execute(
        "UPDATE groups SET deleted_at = :now, access_note = :note "
        "WHERE id = :id AND deleted_at IS NULL",
        {"now": now, "note": note, "id": group_id},
    )
    return cursor.rowcount > 0


def live_group_ids(archive: Connection) -> list[str]:
    """Archived groups not tombstoned (mailbox or not: a full listing decides for all)."""
    return [r[0] for r in archive.conn.execute("SELECT id FROM groups WHERE deleted_at IS NULL")]
