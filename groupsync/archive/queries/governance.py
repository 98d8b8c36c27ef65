"""What retention, legal holds, purge and the governance log read and write
(``groupsync.governance``, ``retention``, ``holds``, ``purge``, and ``verify`` for them).

Policies and holds are rows that are never deleted: clearing a policy or releasing a hold
fills in who and when. Every such change, and every purge, is also a record of
``governance_log``, whose digests chain like the sync runs'."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..connection import Connection
from . import in_list

_CHUNK = 500  # values per IN (...): well under SQLite's limit on parameters


def has_governance(archive: Connection) -> bool:
    """Whether the archive has the governance tables (migration 006)."""
    return bool(archive._one("SELECT 1 FROM sqlite_master WHERE name = 'governance_log'"))


# -- the governance log -------------------------------------------------------------------


def last_record(archive: Connection) -> tuple[int, str] | None:
    """The latest governance record's ``(id, digest)``."""
    row = archive.conn.execute(
        "SELECT id, digest FROM governance_log ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def insert_record(
    archive: Connection, record_id: int, at: str, actor: str, action: str, record: str,
    prev: str, digest: str,
) -> None:  # fmt: skip
    archive.conn.execute(
        "INSERT INTO governance_log (id, at, actor, action, record, prev_digest, digest) "
        "VALUES (:id, :at, :actor, :action, :record, :prev, :digest)",
        {"id": record_id, "at": at, "actor": actor, "action": action, "record": record,
         "prev": prev, "digest": digest},
    )  # fmt: skip


def records(archive: Connection) -> list[tuple[int, str, str, str, str, str, str]]:
    """Every governance record in order: ``(id, at, actor, action, record, prev, digest)``."""
    return archive.conn.execute(
        "SELECT id, at, actor, action, record, prev_digest, digest FROM governance_log ORDER BY id"
    ).fetchall()


# -- retention policies -------------------------------------------------------------------

POLICY_COLUMNS = ("id", "group_id", "keep", "set_by", "set_at", "cleared_by", "cleared_at")


def policy_rows(archive: Connection, *, active_only: bool = False) -> list[dict[str, Any]]:
    """Retention policies, oldest first, with the group's name (``group_name``)."""
    where = "WHERE r.cleared_at IS NULL" if active_only else ""
    cursor = archive.conn.execute(
        "SELECT r.id, r.group_id, r.keep, r.set_by, r.set_at, r.cleared_by, r.cleared_at, "
        f"g.displayName FROM retention_policies r LEFT JOIN groups g ON g.id = r.group_id "
        f"{where} ORDER BY r.id"
    )
    return [
        {**dict(zip(POLICY_COLUMNS, row[:-1], strict=True)), "group_name": row[-1]}
        for row in cursor
    ]


def insert_policy(archive: Connection, group_id: str | None, keep: str, actor: str, at: str) -> int:
    cursor = archive.conn.execute(
        "INSERT INTO retention_policies (group_id, keep, set_by, set_at) "
        "VALUES (:group_id, :keep, :actor, :at)",
        {"group_id": group_id, "keep": keep, "actor": actor, "at": at},
    )
    return int(cursor.lastrowid or 0)


def active_policy_id(archive: Connection, group_id: str | None) -> int | None:
    return archive._one(
        "SELECT id FROM retention_policies WHERE cleared_at IS NULL "
        "AND coalesce(group_id, '') = coalesce(:group_id, '')",
        {"group_id": group_id},
    )


def clear_policy(archive: Connection, policy_id: int, actor: str, at: str) -> None:
    archive.conn.execute(
        "UPDATE retention_policies SET cleared_by = :actor, cleared_at = :at "
        "WHERE id = :id AND cleared_at IS NULL",
        {"actor": actor, "at": at, "id": policy_id},
    )


# -- legal holds --------------------------------------------------------------------------

HOLD_COLUMNS = (
    "id", "name", "groups", "query", "from_date", "to_date", "custodians", "note",
    "created_by", "created_at", "released_by", "released_at",
)  # fmt: skip


def hold_rows(archive: Connection, *, active_only: bool = False) -> list[dict[str, Any]]:
    """Legal holds, oldest first (list columns still JSON text)."""
    where = "WHERE released_at IS NULL" if active_only else ""
    cursor = archive.conn.execute(
        f"SELECT {', '.join(HOLD_COLUMNS)} FROM legal_holds {where} ORDER BY id"
    )
    return [dict(zip(HOLD_COLUMNS, row, strict=True)) for row in cursor]


def hold_row(archive: Connection, name: str) -> dict[str, Any] | None:
    row = archive.conn.execute(
        f"SELECT {', '.join(HOLD_COLUMNS)} FROM legal_holds WHERE name = :name", {"name": name}
    ).fetchone()
    return None if row is None else dict(zip(HOLD_COLUMNS, row, strict=True))


def insert_hold(archive: Connection, values: dict[str, Any]) -> int:
    names = [c for c in HOLD_COLUMNS if c in values]
    cursor = archive.conn.execute(
        f"INSERT INTO legal_holds ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + n for n in names)})",
        {n: values[n] for n in names},
    )
    return int(cursor.lastrowid or 0)


def release_hold(archive: Connection, hold_id: int, actor: str, at: str) -> None:
    archive.conn.execute(
        "UPDATE legal_holds SET released_by = :actor, released_at = :at "
        "WHERE id = :id AND released_at IS NULL",
        {"actor": actor, "at": at, "id": hold_id},
    )


def _custodian_clause(params: dict[str, Any], custodians: list[str]) -> str:
    """Sender, author or recipient (the post's new participants, the thread's To and Cc)
    is one of the custodians (addresses, lower case)."""
    values, more = in_list("custodian", custodians)
    params.update(more)
    recipients = " OR ".join(
        f"EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) THEN {col} END) j "
        f"WHERE lower(json_extract(j.value, '$.emailAddress.address')) IN {values})"
        for col in ("p.newParticipants", "t.toRecipients", "t.ccRecipients")
    )
    return f"(p.from_address IN {values} OR p.sender_address IN {values} OR {recipients})"


def matching_post_rows(
    archive: Connection,
    *,
    groups: list[str] | None,
    since: str | None,
    until: str | None,
    custodians: list[str] | None,
    among: Iterable[str] | None = None,
) -> list[tuple[str, str, str, str | None, str | None]]:
    """Posts matching a hold's criteria other than its query, not purged: ``(id, group_id,
    thread_id, receivedDateTime, deleted_at)`` by date. ``since``/``until`` bound the
    delivery time (``until`` exclusive); ``among`` narrows to those post ids."""
    clauses = ["p.purged_at IS NULL"]
    params: dict[str, Any] = {}
    if groups:
        values, more = in_list("group", groups)
        params.update(more)
        clauses.append(f"p.group_id IN {values}")
    when = "coalesce(p.receivedDateTime, p.createdDateTime)"
    if since:
        clauses.append(f"{when} >= :since")
        params["since"] = since
    if until:
        clauses.append(f"{when} < :until")
        params["until"] = until
    if custodians:
        clauses.append(_custodian_clause(params, custodians))
    sql = (
        f"SELECT p.id, p.group_id, p.thread_id, {when}, p.deleted_at FROM posts p "
        "LEFT JOIN threads t ON t.id = p.thread_id WHERE " + " AND ".join(clauses)
    )
    if among is None:
        return archive.conn.execute(f"{sql} ORDER BY {when}, p.id", params).fetchall()
    wanted = list(among)
    out: list[tuple[str, str, str, str | None, str | None]] = []
    for start in range(0, len(wanted), _CHUNK):
        values, more = in_list("among", wanted[start : start + _CHUNK])
        out.extend(archive.conn.execute(f"{sql} AND p.id IN {values}", {**params, **more}))
    out.sort(key=lambda r: (r[3] or "", r[0]))
    return out


# -- purges -------------------------------------------------------------------------------

PURGE_COLUMNS = (
    "id", "started_at", "finished_at", "status", "actor", "policies", "holds", "posts",
    "versions", "blobs", "bytes", "items_sha256",
)  # fmt: skip


def purge_rows(archive: Connection) -> list[dict[str, Any]]:
    cursor = archive.conn.execute(f"SELECT {', '.join(PURGE_COLUMNS)} FROM purges ORDER BY id")
    return [dict(zip(PURGE_COLUMNS, row, strict=True)) for row in cursor]


def start_purge(archive: Connection, at: str, actor: str, policies: str, holds: str) -> int:
    cursor = archive.conn.execute(
        "INSERT INTO purges (started_at, status, actor, policies, holds) "
        "VALUES (:at, 'running', :actor, :policies, :holds)",
        {"at": at, "actor": actor, "policies": policies, "holds": holds},
    )
    return int(cursor.lastrowid or 0)


def unsealed_purges(archive: Connection) -> list[int]:
    """Purges a killed process left ``running``: the next purge seals them."""
    return [
        r[0]
        for r in archive.conn.execute("SELECT id FROM purges WHERE status = 'running' ORDER BY id")
    ]


def finish_purge(archive: Connection, purge_id: int, values: dict[str, Any]) -> None:
    columns = ", ".join(f"{k} = :{k}" for k in values)
    archive.conn.execute(
        f"UPDATE purges SET {columns} WHERE id = :purge_id", {**values, "purge_id": purge_id}
    )


def purge_totals(archive: Connection, purge_id: int) -> dict[str, int]:
    """What a purge's tombstones count: posts, versions, blobs and the blobs' bytes."""
    totals = {"posts": 0, "versions": 0, "blobs": 0, "bytes": 0}
    for kind, count, size in archive.conn.execute(
        "SELECT kind, count(*), coalesce(sum(size), 0) FROM purged_items "
        "WHERE purge_id = :id GROUP BY kind",
        {"id": purge_id},
    ):
        key = {"post": "posts", "version": "versions", "blob": "blobs"}.get(kind)
        if key:
            totals[key] = int(count)
        if kind == "blob":
            totals["bytes"] = int(size)
    return totals


ITEM_COLUMNS = ("kind", "post_id", "changeKey", "sha256", "size", "sync_run_id", "policy_id")


def purged_item_rows(archive: Connection, purge_id: int | None = None) -> list[tuple[Any, ...]]:
    """Tombstones (``purge_id`` first, then ``ITEM_COLUMNS``), of one purge or all."""
    where = "" if purge_id is None else "WHERE purge_id = :id"
    return archive.conn.execute(
        f"SELECT purge_id, {', '.join(ITEM_COLUMNS)} FROM purged_items {where} ORDER BY id",
        {"id": purge_id},
    ).fetchall()


def retention_candidates(
    archive: Connection, rules: list[tuple[int, str | None, str]], excluded_groups: list[str]
) -> list[tuple[str, int]]:
    """Posts past retention and not purged: ``(post id, policy id)``, oldest first.

    ``rules`` are ``(policy id, group id or None for the default, cutoff)``; the default
    applies to the groups not in ``excluded_groups`` (those with a policy of their own).
    A post with no delivery or creation time has no age and is never a candidate.
    """
    when = "coalesce(receivedDateTime, createdDateTime)"
    out: list[tuple[str, int]] = []
    for policy_id, group_id, cutoff in rules:
        params: dict[str, Any] = {"cutoff": cutoff}
        where = f"purged_at IS NULL AND {when} IS NOT NULL AND {when} < :cutoff"
        if group_id is not None:
            where += " AND group_id = :group_id"
            params["group_id"] = group_id
        elif excluded_groups:
            values, more = in_list("own", excluded_groups)
            params.update(more)
            where += f" AND group_id NOT IN {values}"
        out.extend(
            (r[0], policy_id)
            for r in archive.conn.execute(
                f"SELECT id FROM posts WHERE {where} ORDER BY {when}, id", params
            )
        )
    return out


def version_rows(archive: Connection, post_ids: list[str]) -> list[tuple[str, str, str, int, Any]]:
    """The stored versions of some posts: ``(post_id, changeKey, sha256, bytes, run)``."""
    out: list[tuple[str, str, str, int, Any]] = []
    for start in range(0, len(post_ids), _CHUNK):
        values, params = in_list("post", post_ids[start : start + _CHUNK])
        out.extend(
            archive.conn.execute(
                "SELECT post_id, changeKey, sha256, length(CAST(json AS BLOB)), sync_run_id "
                f"FROM post_versions WHERE post_id IN {values}",
                params,
            )
        )
    return out


def post_change_keys(archive: Connection, post_ids: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for start in range(0, len(post_ids), _CHUNK):
        values, params = in_list("post", post_ids[start : start + _CHUNK])
        out.update(
            archive.conn.execute(f"SELECT id, changeKey FROM posts WHERE id IN {values}", params)
        )
    return out


def insert_items(archive: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Tombstones: ``(purge_id, kind, post_id, changeKey, sha256, size, sync_run_id,
    policy_id, purged_at)`` each."""
    archive.conn.executemany(
        "INSERT INTO purged_items (purge_id, kind, post_id, changeKey, sha256, size, "
        "sync_run_id, policy_id, purged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def attachment_blobs(archive: Connection, post_ids: list[str]) -> set[str]:
    out: set[str] = set()
    for start in range(0, len(post_ids), _CHUNK):
        values, params = in_list("post", post_ids[start : start + _CHUNK])
        out.update(
            r[0]
            for r in archive.conn.execute(
                f"SELECT DISTINCT sha256 FROM attachments WHERE post_id IN {values} "
                "AND sha256 IS NOT NULL",
                params,
            )
        )
    return out


def strip_posts(archive: Connection, rows: list[tuple[str, int, str, int]]) -> None:
    """Remove what purge removes from posts ``(id, change_seq, purged_at, purge_id)``:
    their versions, attachments and content; the row keeps its ids, changeKey and dates
    (so a sync knows the post and does not fetch it again) and the purge's mark."""
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), _CHUNK):
        values, params = in_list("post", ids[start : start + _CHUNK])
        archive.conn.execute(f"DELETE FROM post_versions WHERE post_id IN {values}", params)
        archive.conn.execute(f"DELETE FROM attachments WHERE post_id IN {values}", params)
    archive.conn.executemany(
        "UPDATE posts SET hasAttachments = NULL, categories = NULL, body_contentType = NULL, "
        "body_content = NULL, body_text = NULL, from_name = NULL, from_address = NULL, "
        "sender_name = NULL, sender_address = NULL, newParticipants = NULL, "
        "attachments_note = NULL, change_seq = ?, purged_at = ?, purge_id = ? WHERE id = ?",
        [(seq, at, purge_id, post_id) for post_id, seq, at, purge_id in rows],
    )


def unused_blobs(archive: Connection, shas: Iterable[str]) -> list[tuple[str, int, Any]]:
    """Of these blobs, those no attachment row and no queued outbox item uses:
    ``(sha256, size, sync_run_id)``."""
    out = []
    for sha256 in sorted(shas):
        row = archive.conn.execute(
            "SELECT sha256, size, sync_run_id FROM blobs b WHERE sha256 = :sha "
            "AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.sha256 = b.sha256) "
            "AND NOT EXISTS (SELECT 1 FROM _outbox o WHERE instr(o.body, :sha) > 0)",
            {"sha": sha256},
        ).fetchone()
        if row is not None:
            out.append(row)
    return out


def blobs_only_used_by(
    archive: Connection, shas: Iterable[str], post_ids: set[str]
) -> tuple[int, int]:
    """How many of these blobs (and their bytes) only the posts ``post_ids`` use (no other
    attachment, no queued outbox item): what purging those posts would remove."""
    count = total = 0
    for sha256 in sorted(shas):
        users = {
            r[0]
            for r in archive.conn.execute(
                "SELECT post_id FROM attachments WHERE sha256 = :sha", {"sha": sha256}
            )
        }
        queued = archive._one(
            "SELECT 1 FROM _outbox WHERE instr(body, :sha) > 0 LIMIT 1", {"sha": sha256}
        )
        size = archive._one("SELECT size FROM blobs WHERE sha256 = :sha", {"sha": sha256})
        if users <= post_ids and not queued and size is not None:
            count += 1
            total += int(size)
    return count, total


def delete_blobs(archive: Connection, shas: list[str]) -> None:
    archive.conn.executemany("DELETE FROM blobs WHERE sha256 = ?", [(s,) for s in shas])


def purged_posts(archive: Connection) -> list[tuple[str, str | None, int | None]]:
    """Every purged post: ``(id, changeKey, purge_id)``."""
    return archive.conn.execute(
        "SELECT id, changeKey, purge_id FROM posts WHERE purged_at IS NOT NULL"
    ).fetchall()


def purged_post(archive: Connection, post_id: str) -> dict[str, Any] | None:
    """A purged post's row (what is left of it), or None if it is not purged."""
    cursor = archive.conn.execute(
        "SELECT id, changeKey, createdDateTime, lastModifiedDateTime, receivedDateTime, "
        "conversation_id, thread_id, purged_at, purge_id FROM posts "
        "WHERE id = :id AND purged_at IS NOT NULL",
        {"id": post_id},
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def table_exists(archive: Connection, name: str) -> bool:
    try:
        return bool(
            archive._one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n",
                         {"n": name})
        )  # fmt: skip
    except sqlite3.Error:
        return False
