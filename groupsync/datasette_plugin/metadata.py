"""Datasette metadata for a groupsync archive: descriptions, facets, labels, canned queries.

Built in Python rather than shipped as a JSON file so the plugin can give it to every
database that looks like an archive (through ``get_metadata``) whatever the file is called,
and so ``groupsync serve`` and a plain ``datasette groupsync.db`` show the same thing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ARCHIVE_TABLES",
    "CANNED_QUERIES",
    "TABLES",
    "database_metadata",
    "instance_metadata",
]

# The tables that make a database a groupsync archive.
ARCHIVE_TABLES = frozenset({"groups", "threads", "posts", "post_versions", "attachments"})

SOURCE = "Microsoft Graph v1.0 group conversations, archived by groupsync"
SOURCE_URL = "https://learn.microsoft.com/graph/api/resources/groups-overview"
TITLE = "groupsync archive"
DESCRIPTION = (
    "An offline, read-only copy of Microsoft 365 Group mailboxes: every conversation, thread, "
    "post, edit and attachment that `groupsync sync` has seen, with items deleted upstream "
    "kept as tombstones. Read a thread in the thread view, search mail at /-/groupsync/search."
)

_SEEN = {
    "first_seen_at": "When the archive first saw this item (UTC)",
    "last_seen_at": "When a sync last saw this item (UTC)",
    "updated_at": "When the archive last changed this row (UTC)",
    "deleted_at": "Set when the item disappeared upstream: a tombstone, never erased",
}

TABLES: dict[str, dict[str, Any]] = {
    "groups": {
        "description": "Microsoft 365 groups the archive holds, one row per group.",
        "label_column": "displayName",
        "sort": "displayName",
        "facets": ["visibility"],
        "columns": {
            "id": "Group id (a GUID)",
            "displayName": "The group's name",
            "description": "The group's description in Microsoft 365",
            "mail": "The group's e-mail address",
            "mailNickname": "Alias part of the group's address",
            "visibility": "Public (anyone in the organisation can read) or Private",
            "groupTypes": "Graph group types; Unified means a Microsoft 365 group",
            "createdDateTime": "When the group was created (UTC)",
            "json": "The group exactly as Graph returned it",
            "access_note": "Why the last sync could not read this group, if it could not",
            **_SEEN,
        },
    },
    "conversations": {
        "description": "Conversations of each group; a conversation holds one or more threads.",
        "label_column": "topic",
        "sort_desc": "lastDeliveredDateTime",
        "facets": ["group_id", "hasAttachments"],
        "columns": {
            "id": "Conversation id (Exchange id)",
            "group_id": "The group it belongs to",
            "topic": "Subject of the conversation",
            "hasAttachments": "1 if any post in it has attachments",
            "lastDeliveredDateTime": "When the latest post was delivered (UTC)",
            "uniqueSenders": "Display names of everyone who posted",
            "preview": "The start of the latest post, as Graph shows it",
            **_SEEN,
        },
    },
    "threads": {
        "description": (
            "Threads of each conversation, newest first. The topic opens the thread view, "
            "which shows the posts as a person reads them."
        ),
        "label_column": "topic",
        "sort_desc": "lastDeliveredDateTime",
        "facets": ["group_id", "hasAttachments", {"month": "lastDeliveredDateTime"}],
        "columns": {
            "id": "Thread id (Exchange id)",
            "group_id": "The group it belongs to",
            "conversation_id": "The conversation it belongs to",
            "topic": "Subject; links to the thread view",
            "hasAttachments": "1 if any post in it has attachments",
            "lastDeliveredDateTime": "When the latest post was delivered (UTC)",
            "uniqueSenders": "Display names of everyone who posted",
            "preview": "The start of the latest post, as Graph shows it",
            "isLocked": "1 if nobody can reply any more",
            "toRecipients": "Who the thread was addressed to",
            "ccRecipients": "Who was copied",
            "post_count": "Posts the last sync listed in the thread",
            "possibly_truncated": "1 if Graph may have listed fewer posts than the thread has",
            **_SEEN,
        },
    },
    "posts": {
        "description": (
            "Every post (message) of every thread, its latest version. Bodies are shown "
            "sanitised: no scripts, no remote images. The search box matches their text; "
            "use /-/groupsync/search for ranked results with snippets."
        ),
        "sort_desc": "receivedDateTime",
        "facets": [
            "group_id",
            "sender_address",
            "hasAttachments",
            {"month": "receivedDateTime"},
        ],
        "columns": {
            "id": "Post id (Exchange id)",
            "group_id": "The group it was posted to",
            "conversation_id": "Its conversation",
            "thread_id": "Its thread; links to the thread view at this post",
            "changeKey": "Version stamp from Graph; it changes on every edit",
            "createdDateTime": "When the post was created (UTC)",
            "lastModifiedDateTime": "When the post was last changed (UTC)",
            "receivedDateTime": "When the group received it (UTC)",
            "hasAttachments": "1 if it has attachments",
            "categories": "Outlook categories set on it",
            "body_contentType": "html or text",
            "body_content": "The body, sanitised for display (the stored HTML is unchanged)",
            "body_text": "The body as plain text (what the search box matches)",
            "from_name": "Name of who it is from",
            "from_address": "Address of who it is from",
            "sender_name": "Name of who sent it (differs from From when sent on behalf)",
            "sender_address": "Address of who sent it",
            "newParticipants": "People added to the conversation by this post",
            "in_reply_to_id": "The post this one answers, when Graph says",
            "version_count": "How many versions of this post the archive has seen",
            "attachments_note": "Why its attachments are not in the archive, if they are not",
            "change_seq": "Position in the archive's change sequence (the search index follows)",
            "purged_at": "Set when a retention purge removed its content (UTC); ids and dates stay",
            "purge_id": "The purge that removed it",
            **_SEEN,
        },
    },
    "post_versions": {
        "description": (
            "Every version of every post ever seen, each with the SHA-256 of its canonical "
            "JSON, so an edit never erases what was there before."
        ),
        "sort_desc": "first_seen_at",
        "facets": ["sync_run_id"],
        "columns": {
            "post_id": "The post",
            "changeKey": "Graph's version stamp of this version",
            "lastModifiedDateTime": "When Graph says this version was made (UTC)",
            "json": "This version exactly as stored (canonical JSON, keys sorted)",
            "sha256": "SHA-256 of the json column, to verify the record",
            "sync_run_id": "The sync run that first saw this version",
            "first_seen_at": "When the archive first saw this version (UTC)",
        },
    },
    "attachments": {
        "description": (
            "Attachments of each post. File attachments' bytes are in blobs, once per "
            "SHA-256; the sha256 column links to a download."
        ),
        "label_column": "name",
        "facets": ["type", "contentType", "isInline"],
        "columns": {
            "post_id": "The post it is attached to",
            "id": "Attachment id (Exchange id)",
            "type": "fileAttachment, itemAttachment (an Outlook item) or referenceAttachment "
            "(a link to a file kept elsewhere)",
            "name": "File name",
            "contentType": "MIME type Graph gave",
            "size": "Size in bytes",
            "isInline": "1 for images shown inside the body (cid: references)",
            "contentId": "Content-ID that the body's cid: URLs refer to",
            "lastModifiedDateTime": "When it last changed (UTC)",
            "sha256": "SHA-256 of its bytes; links to the download",
            "json": "The attachment's metadata as Graph returned it (without the bytes)",
            "first_seen_at": _SEEN["first_seen_at"],
            "deleted_at": _SEEN["deleted_at"],
        },
    },
    "blobs": {
        "description": "Attachment bytes, stored once per SHA-256.",
        "columns": {
            "sha256": "SHA-256 of the bytes; links to the download",
            "size": "Size in bytes",
            "content": "The bytes (download them from the sha256 link)",
            "sync_run_id": "The sync run that first stored them",
            "first_seen_at": _SEEN["first_seen_at"],
        },
    },
    "people": {
        "description": "Everyone seen as a sender or recipient, by address.",
        "label_column": "name",
        "sort": "name",
        "columns": {
            "address": "E-mail address (lower case)",
            "name": "Display name last seen",
            "first_seen_at": _SEEN["first_seen_at"],
            "last_seen_at": _SEEN["last_seen_at"],
        },
    },
    "sync_runs": {
        "description": "One row per `groupsync sync`: what it did and how long Graph made it wait.",
        "sort_desc": "id",
        "facets": ["status", "mode"],
        "columns": {
            "id": "Run number",
            "started_at": "When it started (UTC)",
            "finished_at": "When it finished (UTC); empty if it was interrupted",
            "status": "running, complete, partial or failed",
            "mode": "incremental or full",
            "groups": "The groups it synced",
            "identity": "Who it ran as",
            "requests": "Graph requests made",
            "throttled": "Requests Graph answered with 429",
            "retries": "Requests retried after an error",
            "throttle_wait": "Seconds spent waiting for Graph's throttle",
            "retry_wait": "Seconds spent waiting before retries",
            "threads_checked": "Threads compared with the archive",
            "threads_fetched": "Threads whose posts were read",
            "items_new": "New items archived",
            "items_changed": "Items with a new version",
            "items_deleted": "Items tombstoned",
            "attachments_new": "New attachments",
            "notes": "Remarks, such as groups it could not read",
            "error": "The error that stopped it, if any",
            "digest": "SHA-256 sealing this run: the previous run's digest plus the hashes of "
            "the versions and blobs it wrote (`groupsync verify` checks the chain)",
            "prev_digest": "The previous run's digest, which this one chains to",
            "sealed_at": "When the digest was computed (UTC)",
            "digest_items": "How many version and blob hashes the digest covers",
            "events": "New-post events this run recorded for the trigger",
        },
    },
    "events": {
        "description": 'The "new email arrives" trigger: one event per new post, delivered '
        "to hooks by `groupsync watch`.",
        "sort_desc": "id",
        "facets": ["state", "kind", "group_id"],
        "columns": {
            "id": "Event number",
            "kind": "What happened",
            "group_id": "The group",
            "conversation_id": "The conversation",
            "thread_id": "The thread; opens the thread view",
            "post_id": "The new post",
            "sync_run_id": "The sync run that saw it",
            "json": "The event as the connector's trigger shapes it",
            "state": "pending, delivered or failed",
            "attempts": "Deliveries tried",
            "last_error": "The last delivery error",
            "created_at": "When it was recorded (UTC)",
            "last_attempt_at": "When delivery was last tried (UTC)",
            "delivered_at": "When it was delivered (UTC)",
        },
    },
    "exports": {
        "description": "An audit of every export taken from the archive.",
        "sort_desc": "id",
        "columns": {
            "id": "Export number",
            "started_at": "When it started (UTC)",
            "finished_at": "When it finished (UTC)",
            "status": "complete, partial (items left out, see error) or failed",
            "identity": "Who exported, as groupsync knows them",
            "os_user": "The operating-system user who ran it",
            "format": "The export format",
            "out": "Where it was written",
            "filters": "What was selected",
            "groups": "Groups exported",
            "posts": "Posts exported",
            "attachments": "Attachments exported",
            "files": "Files written",
            "bytes": "Bytes written",
            "chain_digest": "The sealed run digest the export was taken at",
            "manifest_sha256": "SHA-256 of the export's manifest",
            "error": "The error that stopped it, or what was left out",
        },
    },
    "_sync_state": {
        "description": "Where each group's incremental sync will resume.",
        "columns": {
            "group_id": "The group",
            "watermark": "Newest delivery time the archive holds for the group",
            "last_incremental_at": "When the last incremental sync finished (UTC)",
            "last_full_at": "When the last full reconcile finished (UTC)",
            "early_stop": "1 if an incremental sync may stop at the first unchanged thread",
            "missed_changes": "Changes a full reconcile found that incremental runs missed",
        },
    },
    "_group_delta": {
        "description": "Where `sync --all` resumes Graph's group delta query (issue 16).",
        "columns": {
            "scope": "Which listing the link continues (`all`: every group of the tenant)",
            "delta_link": "The @odata.deltaLink Graph gave at the end of the last listing",
            "updated_at": "When that listing finished (UTC)",
        },
    },
    "_outbox": {
        "description": "Writes queued offline by `groupsync reply` and friends (read-only here).",
        "sort_desc": "id",
        "facets": ["state", "action"],
        "columns": {
            "id": "Queue number",
            "action": "What it does (reply-to-thread, new-thread, …)",
            "group_id": "Target group",
            "conversation_id": "Target conversation",
            "thread_id": "Target thread",
            "post_id": "Target post",
            "topic": "Subject of a new thread or conversation",
            "body": "The request body that will be sent to Graph",
            "marker": "Idempotency marker written into the message",
            "content_sha256": "SHA-256 of the body",
            "state": "queued, sending, sent, uncertain, failed or cancelled",
            "attempts": "Send attempts so far",
            "next_attempt_at": "When it will be tried again (UTC)",
            "last_error": "The last error",
            "request_id": "Graph's request id of the last attempt",
            "identity": "Who queued it",
            "created_at": "When it was queued (UTC)",
            "sending_at": "When sending started (UTC)",
            "sent_at": "When Graph accepted it (UTC)",
            "result": "What Graph answered",
        },
    },
    "_outbox_log": {
        "description": "The history of every queued write.",
        "sort_desc": "id",
        "columns": {
            "id": "Entry number",
            "outbox_id": "The queued write",
            "at": "When (UTC)",
            "state": "The state it moved to",
            "detail": "Details",
            "identity": "Who did it",
        },
    },
    "retention_policies": {
        "description": (
            "Retention policies: how long posts are kept before `groupsync purge` removes "
            "them. A group's policy overrides the default (no group); a cleared policy stays "
            "as a record. Each change is also a record of governance_log."
        ),
        "sort_desc": "id",
        "columns": {
            "id": "Policy number",
            "group_id": "The group it applies to; empty for the archive-wide default",
            "keep": "How long posts are kept, from their receivedDateTime (90d, 12w, 18m, 7y)",
            "set_by": "Who set it (os:<user> from the CLI, or GROUPSYNC_ACTOR)",
            "set_at": "When it was set (UTC)",
            "cleared_by": "Who cleared it (or replaced it with a new policy)",
            "cleared_at": "When it was cleared (UTC); empty while it is in force",
        },
    },
    "legal_holds": {
        "description": (
            "Legal holds: the posts a hold covers are never purged. Criteria combine with "
            "AND; the posts are found when asked (`groupsync hold show`), so later mail is "
            "covered too. Each change is also a record of governance_log."
        ),
        "sort_desc": "id",
        "columns": {
            "id": "Hold number",
            "name": "Its name (unique, kept after release)",
            "groups": "Group ids it covers (any of them); empty for every group",
            "query": "A search in groupsync's syntax the posts must match",
            "from_date": "Posts delivered on or after this day",
            "to_date": "Posts delivered on or before this day",
            "custodians": "Addresses (any of them) that sent or received the posts",
            "note": "Why, as its creator wrote it",
            "created_by": "Who created it",
            "created_at": "When it was created (UTC)",
            "released_by": "Who released it",
            "released_at": "When it was released (UTC); empty while it holds",
        },
    },
    "purges": {
        "description": (
            "Every retention purge: what it removed, under which policies, with which holds "
            "in force, and the SHA-256 of its tombstones (purged_items)."
        ),
        "sort_desc": "id",
        "columns": {
            "id": "Purge number",
            "started_at": "When it started (UTC)",
            "finished_at": "When it was sealed (UTC)",
            "status": "complete, stopped, interrupted (sealed by the next purge) or running",
            "actor": "Who ran it",
            "policies": "The policies in force (id, group, keep)",
            "holds": "The legal holds in force (id, name)",
            "posts": "Posts whose content it removed",
            "versions": "Stored post versions it removed",
            "blobs": "Attachment blobs it removed (used by no remaining post)",
            "bytes": "Bytes of those blobs",
            "items_sha256": "SHA-256 of its sorted tombstones, which verify recomputes",
        },
    },
    "purged_items": {
        "description": (
            "A tombstone per item a purge removed: its ids, SHA-256 and size, so verify "
            "still recomputes the digest of the sync run that stored it."
        ),
        "sort_desc": "id",
        "facets": ["kind", "purge_id"],
        "columns": {
            "id": "Tombstone number",
            "purge_id": "The purge that removed it",
            "kind": "post (its content), version (a stored version) or blob (attachment bytes)",
            "post_id": "The post (post and version)",
            "changeKey": "The version's changeKey (post and version)",
            "sha256": "SHA-256 of the version's JSON, or of the blob's bytes",
            "size": "Bytes of the version's JSON or of the blob",
            "sync_run_id": "The sync run that stored it (its digest covers this line)",
            "policy_id": "The policy the post was past",
            "purged_at": "When it was removed (UTC)",
        },
    },
    "governance_log": {
        "description": (
            "Every policy set or cleared, hold created or released, and purge, chained: "
            "each record's digest covers the one before, and verify replays them."
        ),
        "sort_desc": "id",
        "facets": ["action"],
        "columns": {
            "id": "Record number",
            "at": "When (UTC)",
            "actor": "Who",
            "action": "retention-set, retention-clear, hold-create, hold-release or purge",
            "record": "What, as canonical JSON (the policy, hold or purge and its values)",
            "prev_digest": "The previous record's digest (64 zeros for the first)",
            "digest": "SHA-256 over this record and prev_digest",
        },
    },
    "access_log_seals": {
        "description": "The access log's newest row (in <db>.access) as each sync run found "
        "it: `groupsync verify` checks that the log still holds it.",
        "sort_desc": "sync_run_id",
        "columns": {
            "sync_run_id": "The sync run that sealed it",
            "sealed_at": "When (UTC)",
            "rows": "The access log's newest row id then (its rows are numbered from 1)",
            "head": "That row's digest",
        },
    },
    "_sqlite_migrations": {
        "description": "Schema migrations applied to this archive.",
        "columns": {
            "id": "Order applied",
            "migration_set": "Migration set",
            "name": "Migration",
            "applied_at": "When (UTC)",
        },
    },
}

CANNED_QUERIES: dict[str, dict[str, Any]] = {
    "busiest_threads": {
        "title": "Busiest threads",
        "description": "Threads with the most posts, with how many people took part.",
        "sql": """
select g.displayName as "group", t.topic, count(p.id) as posts,
  count(distinct p.sender_address) as senders,
  min(p.receivedDateTime) as first_post, max(p.receivedDateTime) as last_post,
  t.group_id, t.id as thread_id
from threads t
join groups g on g.id = t.group_id
join posts p on p.thread_id = t.id and p.deleted_at is null
where t.deleted_at is null
group by t.id
order by posts desc, last_post desc
limit 100
""".strip(),
    },
    "top_senders_per_group": {
        "title": "Top senders per group",
        "description": "The five people who posted most in each group.",
        "sql": """
select "group", sender_name, sender_address, posts, rank, group_id from (
  select g.displayName as "group", p.group_id, max(p.sender_name) as sender_name,
    p.sender_address, count(*) as posts,
    rank() over (partition by p.group_id order by count(*) desc) as rank
  from posts p
  join groups g on g.id = p.group_id
  where p.deleted_at is null
  group by p.group_id, p.sender_address
)
where rank <= 5
order by "group", rank, sender_name
""".strip(),
    },
    "posts_per_month_per_group": {
        "title": "Posts per month per group",
        "description": "How busy each group was, month by month (UTC).",
        "sql": """
select g.displayName as "group", substr(p.receivedDateTime, 1, 7) as month,
  count(*) as posts, count(distinct p.thread_id) as threads,
  count(distinct p.sender_address) as senders, p.group_id
from posts p
join groups g on g.id = p.group_id
where p.deleted_at is null
group by p.group_id, month
order by "group", month
""".strip(),
    },
    "threads_with_attachments": {
        "title": "Threads with attachments",
        "description": "Threads whose posts carry attachments, with their names and size.",
        "sql": """
select g.displayName as "group", t.topic, count(a.id) as attachments,
  sum(a.isInline) as inline, sum(a.size) as total_bytes,
  group_concat(a.name, ', ') as names, t.lastDeliveredDateTime,
  t.group_id, t.id as thread_id
from threads t
join groups g on g.id = t.group_id
join posts p on p.thread_id = t.id and p.deleted_at is null
join attachments a on a.post_id = p.id and a.deleted_at is null
where t.deleted_at is null
group by t.id
order by t.lastDeliveredDateTime desc
""".strip(),
    },
    "last_sync_changes": {
        "title": "What changed in the last sync run",
        "description": (
            "Posts the latest sync run saw for the first time (new), saw a new version of "
            "(edited), or found gone upstream (deleted), and threads it found deleted."
        ),
        "sql": """
with run as (
  select id, started_at, coalesce(finished_at, '9999') as finished_at
  from sync_runs order by id desc limit 1
)
select run.id as run,
  case when exists (
    select 1 from post_versions e where e.post_id = v.post_id and e.rowid < v.rowid
  ) then 'edited post' else 'new post' end as change,
  g.displayName as "group", t.topic, p.sender_name as sender, v.first_seen_at as at,
  p.group_id, p.thread_id, p.id as post_id
from run
join post_versions v on v.sync_run_id = run.id
join posts p on p.id = v.post_id
join threads t on t.id = p.thread_id
join groups g on g.id = p.group_id
union all
select run.id, 'deleted post', g.displayName, t.topic, p.sender_name, p.deleted_at,
  p.group_id, p.thread_id, p.id
from run
join posts p on p.deleted_at between run.started_at and run.finished_at
join threads t on t.id = p.thread_id
join groups g on g.id = p.group_id
union all
select run.id, 'deleted thread', g.displayName, t.topic, null, t.deleted_at,
  t.group_id, t.id, null
from run
join threads t on t.deleted_at between run.started_at and run.finished_at
join groups g on g.id = t.group_id
order by change, "group", at
""".strip(),
    },
    "edited_posts": {
        "title": "Edited posts",
        "description": "Posts the archive holds more than one version of, latest change first.",
        "sql": """
with edited as (
  select post_id, count(*) as versions from post_versions
  group by post_id having count(*) > 1
)
select g.displayName as "group", t.topic, p.sender_name as sender, p.receivedDateTime,
  e.versions,
  (select min(v.first_seen_at) from post_versions v where v.post_id = e.post_id) as first_seen,
  (select max(v.first_seen_at) from post_versions v where v.post_id = e.post_id)
    as last_changed,
  p.group_id, p.thread_id, p.id as post_id
from edited e
join posts p on p.id = e.post_id
join threads t on t.id = p.thread_id
join groups g on g.id = p.group_id
order by last_changed desc
""".strip(),
    },
    "deleted_items": {
        "title": "Deleted items (tombstones)",
        "description": (
            "Everything that disappeared upstream. The archive keeps it all; the thread view "
            "shows deleted posts with a badge."
        ),
        "sql": """
select 'group' as kind, g.displayName as "group", g.displayName as item, g.deleted_at,
  g.id as group_id, null as thread_id, null as post_id
from groups g where g.deleted_at is not null
union all
select 'conversation', g.displayName, c.topic, c.deleted_at, c.group_id, null, null
from conversations c join groups g on g.id = c.group_id
where c.deleted_at is not null
union all
select 'thread', g.displayName, t.topic, t.deleted_at, t.group_id, t.id, null
from threads t join groups g on g.id = t.group_id
where t.deleted_at is not null
union all
select 'post', g.displayName, t.topic || ' — ' || coalesce(p.sender_name, '?'), p.deleted_at,
  p.group_id, p.thread_id, p.id
from posts p join threads t on t.id = p.thread_id join groups g on g.id = p.group_id
where p.deleted_at is not null
union all
select 'attachment', g.displayName, a.name, a.deleted_at, p.group_id, p.thread_id, p.id
from attachments a join posts p on p.id = a.post_id join groups g on g.id = p.group_id
where a.deleted_at is not null
order by deleted_at desc, kind
""".strip(),
    },
}


def database_metadata() -> dict[str, Any]:
    """The metadata block for one archive database."""
    tables = {}
    for name, table in TABLES.items():
        tables[name] = {k: copy.deepcopy(v) for k, v in table.items()}
    for name in ("posts_fts", "threads_fts"):
        tables[name] = {"hidden": True}
    return {
        "title": TITLE,
        "description": DESCRIPTION,
        "source": SOURCE,
        "source_url": SOURCE_URL,
        "tables": tables,
        "queries": copy.deepcopy(CANNED_QUERIES),
    }


def instance_metadata(databases: Iterable[str]) -> dict[str, Any]:
    """Metadata for a Datasette serving the named archive databases."""
    names = list(databases)
    if not names:
        return {}
    return {
        "title": TITLE,
        "description": DESCRIPTION,
        "source": SOURCE,
        "source_url": SOURCE_URL,
        "databases": {name: database_metadata() for name in names},
    }
