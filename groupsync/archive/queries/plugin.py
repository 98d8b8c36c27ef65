"""The Datasette plugin's queries: SQL that Datasette runs for it (under Datasette's time
limit, on Datasette's connections), and functions ``execute_fn`` runs on such a connection.

The canned queries stay in ``datasette_plugin/metadata.py``: they are metadata that
Datasette shows and runs, beside the tables they describe."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..connection import Connection
from ..store import MAILBOX_GROUPS

THREAD = """
select t.id, t.group_id, t.conversation_id, t.topic, t.lastDeliveredDateTime,
  t.uniqueSenders, t.isLocked, t.toRecipients, t.ccRecipients, t.post_count,
  t.possibly_truncated, t.deleted_at, g.displayName, g.mail
from threads t join groups g on g.id = t.group_id
where t.id = :thread_id and t.group_id = :group_id
"""
THREAD_POSTS = """
select id, changeKey, createdDateTime, lastModifiedDateTime, receivedDateTime, categories,
  body_contentType, body_content, from_name, from_address, sender_name, sender_address,
  newParticipants, in_reply_to_id, version_count, attachments_note, deleted_at
from posts where thread_id = :thread_id order by receivedDateTime, id
"""
# Posts of the thread a retention purge emptied (archives from migration 006 on).
THREAD_PURGED = """
select id, purged_at, purge_id from posts
where thread_id = :thread_id and purged_at is not null
"""
THREAD_ATTACHMENTS = """
select a.post_id, a.id, a.type, a.name, a.contentType, a.size, a.isInline, a.contentId,
  a.sha256, a.json, a.deleted_at, b.size
from attachments a left join blobs b on b.sha256 = a.sha256
where a.post_id in (select id from posts where thread_id = :thread_id)
order by a.rowid
"""
THREAD_VERSIONS = """
select post_id, changeKey, lastModifiedDateTime, json, sha256, sync_run_id, first_seen_at
from post_versions
where post_id in (select id from posts where thread_id = :thread_id and version_count > 1)
order by rowid
"""
# The search page's group filter.
MAILBOX_GROUP_NAMES = f"""
select id, displayName from groups where {MAILBOX_GROUPS}
order by displayName collate nocase, id
"""
# A download: the blob and the name it had (in this post, when one is named), live first.
BLOB = """
select b.rowid, b.size, a.name, a.contentType from blobs b
left join attachments a on a.sha256 = b.sha256 and (:post_id is null or a.post_id = :post_id)
where b.sha256 = :sha256
order by a.deleted_at is not null, a.rowid
limit 1
"""
# The plugin's front page: each group with a mailbox and its counts.
GROUP_SUMMARIES = f"""
select g.id, g.displayName, g.visibility, g.deleted_at,
  (select count(*) from threads t where t.group_id = g.id and t.deleted_at is null),
  (select count(*) from posts p where p.group_id = g.id and p.deleted_at is null),
  (select max(t.lastDeliveredDateTime) from threads t
   where t.group_id = g.id and t.deleted_at is null)
from groups g where {MAILBOX_GROUPS} order by g.displayName collate nocase, g.id
"""
# Where a post is shown: ``(group_id, thread_id)``.
POST_LOCATION = "select group_id, thread_id from posts where id = :post_id"
# A post's inline images: ``(contentId, sha256)``.
POST_CONTENT_IDS = """
select contentId, sha256 from attachments
where post_id = :post_id and contentId is not null and sha256 is not null
"""


def load_thread(conn: sqlite3.Connection, group_id: str, thread_id: str) -> dict[str, Any] | None:
    """A thread with its posts, attachments and earlier versions, or None."""
    params = {"thread_id": thread_id, "group_id": group_id}
    thread = conn.execute(THREAD, params).fetchone()
    if thread is None:
        return None
    purged: dict[str, tuple[str, int | None]] = {}
    if any(r[1] == "purged_at" for r in conn.execute("PRAGMA table_info(posts)")):
        purged = {
            r[0]: (r[1], r[2])
            for r in conn.execute(THREAD_PURGED, {"thread_id": thread_id})
        }
    return {
        "thread": thread,
        "posts": conn.execute(THREAD_POSTS, params).fetchall(),
        "attachments": conn.execute(THREAD_ATTACHMENTS, params).fetchall(),
        "versions": conn.execute(THREAD_VERSIONS, params).fetchall(),
        "purged": purged,
    }


def read_blob_chunk(conn: sqlite3.Connection, rowid: int, offset: int, size: int) -> bytes:
    """``size`` bytes of a blob from ``offset`` (a download, one chunk per call)."""
    with conn.blobopen("blobs", "content", rowid, readonly=True) as blob:
        blob.seek(offset)
        return blob.read(size)


def month_facet(table_sql: str, column: str, limit: int) -> str:
    """Datasette's facet query by month (``YYYY-MM``) of an ISO time column, over the
    table's own query ``table_sql`` (run with that query's parameters)."""
    quoted = f"[{column}]"  # as Datasette's escape_sqlite quotes a name
    return (
        f"select substr({quoted}, 1, 7) as value, count(*) as count from ({table_sql}) "
        f"where {quoted} glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]*' "
        f"group by value order by value desc limit {int(limit)}"
    )


def table_names(archive: Connection) -> set[str]:
    """The tables of an open database (to tell a groupsync archive from other files)."""
    rows = archive.conn.execute("select name from sqlite_master where type = 'table'")
    return {row[0] for row in rows}
