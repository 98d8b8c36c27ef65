"""The ``save_*`` store: groups, conversations, threads, posts, attachments, people and
events, each written as Graph last described it, every post version kept.

Most statements are hand-written ``INSERT ... ON CONFLICT`` rather than sqlite-utils'
``upsert``: they say which columns a later sighting may change (``coalesce`` keeps what a
listing does not carry) and leave unchanged rows, and their FTS entries, unwritten. Posts
and their versions go in as one multi-row INSERT per table and thread, not one statement per
post: each statement lets go of Python's GIL while SQLite works, and the sync's fetch
threads need it back every time, so fewer, longer statements let both sides run at once
(measured: 3.0 -> 2.0 s of writer CPU per 10,000 posts). Those two take positional
parameters, row tuples laid end to end; every other statement names its parameters.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..html import to_text
from .blobs import Blobs
from .queries import in_list
from .values import canonical_json, int_or_none, json_or_none, name_and_address

# Rows of ``groups`` that have a group mailbox. New archives hold no others, but an archive
# written before groupsync learnt that memberOf lists security groups and distribution lists
# may; they are kept (a record) and never synced or listed. NULL: a group saved from a bare id.
MAILBOX_GROUPS = "(groupTypes IS NULL OR groupTypes LIKE '%\"Unified\"%')"

# Graph fields of a thread that move when a post is delivered to it. When they are what
# the archive holds, the thread's posts are not listed again (except by a full reconcile,
# which also catches edits: an edit changes a post's changeKey but no delivery time).
SIGNAL_FIELDS = ("topic", "lastDeliveredDateTime", "preview", "hasAttachments", "uniqueSenders")


def prepare_post(post: Mapping[str, Any]) -> tuple[str, str, str]:
    """The CPU work of storing a post, with no database: its version JSON, that JSON's
    SHA-256 and the body as text. Pure, so the sync runs it in its fetch workers.

    One shape whatever call fetched the post: no ``@odata.context`` (a single GET has it, a
    list does not), and always the attachments' metadata (their bytes live in blobs).
    """
    version = {k: v for k, v in post.items() if k not in {"attachments", "@odata.context"}}
    version["attachments"] = [
        {k: v for k, v in a.items() if k != "contentBytes"} for a in post.get("attachments") or []
    ]
    text = canonical_json(version)
    body = post.get("body") or {}
    return (
        text,
        hashlib.sha256(text.encode("utf-8")).hexdigest(),
        to_text(body.get("content"), body.get("contentType") or "html"),
    )


@dataclass(frozen=True)
class ThreadSignals:
    """What the archive last saw of a thread, to compare with a fresh thread listing."""

    values: tuple[Any, ...]
    deleted: bool

    @property
    def delivered(self) -> str | None:
        return self.values[SIGNAL_FIELDS.index("lastDeliveredDateTime")]

    @classmethod
    def of(cls, thread: Mapping[str, Any], deleted: bool = False) -> ThreadSignals:
        return cls(
            tuple(
                json_or_none(thread.get(f)) if f == "uniqueSenders" else thread.get(f)
                for f in SIGNAL_FIELDS
            ),
            deleted,
        )


_POSTS_INSERT = """
    INSERT INTO posts (id, group_id, conversation_id, thread_id, changeKey, createdDateTime,
        lastModifiedDateTime, receivedDateTime, hasAttachments, categories, body_contentType,
        body_content, from_name, from_address, sender_name, sender_address, newParticipants,
        in_reply_to_id, attachments_note, first_seen_at, updated_at, body_text, change_seq)
"""
_POSTS_CONFLICT = """
    ON CONFLICT(id) DO UPDATE SET conversation_id = excluded.conversation_id,
        thread_id = excluded.thread_id, changeKey = excluded.changeKey,
        createdDateTime = excluded.createdDateTime,
        lastModifiedDateTime = excluded.lastModifiedDateTime,
        receivedDateTime = excluded.receivedDateTime,
        hasAttachments = excluded.hasAttachments, categories = excluded.categories,
        body_contentType = excluded.body_contentType,
        body_content = excluded.body_content, from_name = excluded.from_name,
        from_address = excluded.from_address, sender_name = excluded.sender_name,
        sender_address = excluded.sender_address,
        newParticipants = excluded.newParticipants,
        in_reply_to_id = coalesce(excluded.in_reply_to_id, posts.in_reply_to_id),
        attachments_note = excluded.attachments_note,
        body_text = excluded.body_text, change_seq = excluded.change_seq,
        version_count = posts.version_count + 1,
        updated_at = excluded.updated_at, deleted_at = NULL, purged_at = NULL, purge_id = NULL
"""
_VERSIONS_INSERT = """
    INSERT OR IGNORE INTO post_versions (post_id, changeKey, lastModifiedDateTime, json,
        sha256, sync_run_id, first_seen_at)
"""


class Store(Blobs):
    """The ``save_*`` functions and the lookups the sync makes while writing."""

    # -- groups ---------------------------------------------------------------------------

    def save_group(self, group: Mapping[str, Any], now: str) -> str:
        data = {k: v for k, v in group.items() if not k.startswith("@odata.context")}
        self.conn.execute(
            """
            INSERT INTO groups (id, displayName, description, mail, mailNickname, visibility,
                groupTypes, createdDateTime, json, first_seen_at, last_seen_at)
            VALUES (:id, :displayName, :description, :mail, :mailNickname, :visibility,
                :groupTypes, :createdDateTime, :json, :now, :now)
            ON CONFLICT(id) DO UPDATE SET displayName = excluded.displayName,
                description = excluded.description, mail = excluded.mail,
                mailNickname = excluded.mailNickname, visibility = excluded.visibility,
                groupTypes = excluded.groupTypes, createdDateTime = excluded.createdDateTime,
                json = excluded.json, last_seen_at = excluded.last_seen_at,
                deleted_at = NULL, access_note = NULL
            """,
            {
                "id": group["id"],
                "displayName": group.get("displayName"),
                "description": group.get("description"),
                "mail": group.get("mail"),
                "mailNickname": group.get("mailNickname"),
                "visibility": group.get("visibility"),
                "groupTypes": json_or_none(group.get("groupTypes")),
                "createdDateTime": group.get("createdDateTime"),
                "json": canonical_json(data),
                "now": now,
            },
        )
        return group["id"]

    def group_ids(self, include_deleted: bool = False) -> list[str]:
        """The archived groups that have a mailbox, in the order they were first archived."""
        where = f"WHERE {MAILBOX_GROUPS}" + ("" if include_deleted else " AND deleted_at IS NULL")
        return [r[0] for r in self.conn.execute(f"SELECT id FROM groups {where} ORDER BY rowid")]

    def group(self, group_id: str) -> dict[str, Any] | None:
        """The archived group as Graph last described it, or None."""
        text = self._one("SELECT json FROM groups WHERE id = :id", {"id": group_id})
        return None if text is None else json.loads(text)

    def note_group_access(self, group_id: str, note: str | None, deleted_at: str | None) -> None:
        """The identity can no longer read the group: say why; tombstone it on a full pass."""
        self.conn.execute(
            "UPDATE groups SET access_note = :note, deleted_at = coalesce(deleted_at, :deleted_at) "
            "WHERE id = :id",
            {"note": note, "deleted_at": deleted_at, "id": group_id},
        )

    # -- conversations --------------------------------------------------------------------

    def save_conversation(
        self, group_id: str, conversation: Mapping[str, Any], now: str
    ) -> None:
        self.conn.execute(
            """
            INSERT INTO conversations (id, group_id, topic, hasAttachments,
                lastDeliveredDateTime, uniqueSenders, preview, first_seen_at, updated_at)
            VALUES (:id, :group_id, :topic, :hasAttachments, :lastDeliveredDateTime,
                :uniqueSenders, :preview, :now, :now)
            ON CONFLICT(id) DO UPDATE SET topic = excluded.topic,
                hasAttachments = excluded.hasAttachments,
                lastDeliveredDateTime = excluded.lastDeliveredDateTime,
                uniqueSenders = excluded.uniqueSenders, preview = excluded.preview,
                updated_at = CASE WHEN conversations.topic IS excluded.topic
                    AND conversations.hasAttachments IS excluded.hasAttachments
                    AND conversations.lastDeliveredDateTime IS excluded.lastDeliveredDateTime
                    AND conversations.uniqueSenders IS excluded.uniqueSenders
                    AND conversations.preview IS excluded.preview
                    AND conversations.deleted_at IS NULL
                    THEN conversations.updated_at ELSE excluded.updated_at END,
                deleted_at = NULL
            """,
            {
                "id": conversation["id"],
                "group_id": group_id,
                **_summary(conversation),
                "now": now,
            },
        )

    def has_conversation(self, conversation_id: str) -> bool:
        found = self._one("SELECT 1 FROM conversations WHERE id = :id", {"id": conversation_id})
        return found is not None

    def conversation_ids(self, group_id: str) -> set[str]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM conversations WHERE group_id = :group_id AND deleted_at IS NULL",
                {"group_id": group_id},
            )
        }

    def tombstone_conversations(self, group_id: str, keep: set[str], now: str) -> int:
        gone = self.conversation_ids(group_id) - keep
        for conversation_id in gone:
            self.conn.execute(
                "UPDATE conversations SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL",
                {"now": now, "id": conversation_id},
            )
        return len(gone)

    # -- threads --------------------------------------------------------------------------

    def thread_signals(self, group_id: str) -> dict[str, ThreadSignals]:
        """Every archived thread of a group (deleted ones too) and what was last seen of it."""
        columns = ", ".join(SIGNAL_FIELDS)
        rows = self.conn.execute(
            f"SELECT id, {columns}, deleted_at FROM threads WHERE group_id = :group_id",
            {"group_id": group_id},
        )
        out = {}
        flag = SIGNAL_FIELDS.index("hasAttachments")
        for row in rows:
            values = list(row[1:-1])
            values[flag] = (
                None if values[flag] is None else bool(values[flag])
            )
            out[row[0]] = ThreadSignals(tuple(values), row[-1] is not None)
        return out

    def save_thread(
        self,
        group_id: str,
        thread: Mapping[str, Any],
        conversation_id: str | None,
        now: str,
        *,
        post_count: int | None = None,
        possibly_truncated: bool | None = None,
    ) -> None:
        """Store a thread's listing; posts, if listed, were saved in the same transaction.

        A row that would not change is not rewritten (nor is its FTS entry): a full
        reconcile of an unchanged group writes nothing.
        """
        self.conn.execute(
            """
            INSERT INTO threads (id, group_id, conversation_id, topic, hasAttachments,
                lastDeliveredDateTime, uniqueSenders, preview, isLocked, toRecipients,
                ccRecipients, post_count, possibly_truncated, first_seen_at, updated_at)
            VALUES (:id, :group_id, :conversation_id, :topic, :hasAttachments,
                :lastDeliveredDateTime, :uniqueSenders, :preview, :isLocked, :toRecipients,
                :ccRecipients, coalesce(:post_count, 0), coalesce(:possibly_truncated, 0),
                :now, :now)
            ON CONFLICT(id) DO UPDATE SET
                conversation_id = coalesce(excluded.conversation_id, threads.conversation_id),
                topic = excluded.topic, hasAttachments = excluded.hasAttachments,
                lastDeliveredDateTime = excluded.lastDeliveredDateTime,
                uniqueSenders = excluded.uniqueSenders, preview = excluded.preview,
                isLocked = coalesce(excluded.isLocked, threads.isLocked),
                toRecipients = coalesce(excluded.toRecipients, threads.toRecipients),
                ccRecipients = coalesce(excluded.ccRecipients, threads.ccRecipients),
                post_count = coalesce(:post_count, threads.post_count),
                possibly_truncated = coalesce(:possibly_truncated, threads.possibly_truncated),
                updated_at = excluded.updated_at, deleted_at = NULL
            WHERE threads.deleted_at IS NOT NULL
                OR threads.conversation_id IS NOT coalesce(excluded.conversation_id,
                                                         threads.conversation_id)
                OR threads.topic IS NOT excluded.topic
                OR threads.hasAttachments IS NOT excluded.hasAttachments
                OR threads.lastDeliveredDateTime IS NOT excluded.lastDeliveredDateTime
                OR threads.uniqueSenders IS NOT excluded.uniqueSenders
                OR threads.preview IS NOT excluded.preview
                OR threads.isLocked IS NOT coalesce(excluded.isLocked, threads.isLocked)
                OR threads.toRecipients IS NOT coalesce(excluded.toRecipients,
                                                      threads.toRecipients)
                OR threads.ccRecipients IS NOT coalesce(excluded.ccRecipients,
                                                      threads.ccRecipients)
                OR threads.post_count IS NOT coalesce(:post_count, threads.post_count)
                OR threads.possibly_truncated IS NOT coalesce(:possibly_truncated,
                                                            threads.possibly_truncated)
            """,
            {
                "id": thread["id"],
                "group_id": group_id,
                "conversation_id": conversation_id,
                **_summary(thread),
                "isLocked": int_or_none(thread.get("isLocked")),
                "toRecipients": json_or_none(thread.get("toRecipients")),
                "ccRecipients": json_or_none(thread.get("ccRecipients")),
                "post_count": post_count,
                "possibly_truncated": int_or_none(possibly_truncated),
                "now": now,
            },
        )
        for field in ("toRecipients", "ccRecipients"):
            for recipient in thread.get(field) or []:
                self._save_person(recipient, now)

    def thread_conversations(self, group_id: str) -> dict[str, str]:
        """``thread id -> conversation id`` for the group's archived threads."""
        return dict(
            self.conn.execute(
                "SELECT id, conversation_id FROM threads "
                "WHERE group_id = :group_id AND conversation_id IS NOT NULL",
                {"group_id": group_id},
            ).fetchall()
        )

    def tombstone_threads(self, group_id: str, keep: set[str], now: str) -> int:
        """Threads of the group that the listing no longer shows, with their posts."""
        live = {
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM threads WHERE group_id = :group_id AND deleted_at IS NULL",
                {"group_id": group_id},
            )
        }
        gone = live - keep
        for thread_id in gone:
            self.tombstone_thread(thread_id, now)
        return len(gone)

    def tombstone_thread(self, thread_id: str, now: str) -> bool:
        """Mark one thread and its posts deleted; False if it was not live in the archive."""
        changed = self.conn.execute(
            "UPDATE threads SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL",
            {"now": now, "id": thread_id},
        ).rowcount
        if changed:
            self.tombstone_posts(thread_id, set(), now)
        return bool(changed)

    def tombstone_empty_conversation(self, thread_id: str, now: str) -> bool:
        """Graph deletes a conversation with its last thread; mark it so once none is live."""
        return bool(
            self.conn.execute(
                """
                UPDATE conversations SET deleted_at = :now
                WHERE id = (SELECT conversation_id FROM threads WHERE id = :thread)
                  AND deleted_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.conversation_id = conversations.id
                                  AND t.deleted_at IS NULL)
                """,
                {"now": now, "thread": thread_id},
            ).rowcount
        )

    # -- posts ----------------------------------------------------------------------------

    def post_change_keys(self, thread_id: str) -> dict[str, str | None]:
        """Live posts of a thread and their changeKeys."""
        return dict(
            self.conn.execute(
                "SELECT id, changeKey FROM posts "
                "WHERE thread_id = :thread_id AND deleted_at IS NULL",
                {"thread_id": thread_id},
            ).fetchall()
        )

    def save_posts(
        self,
        group_id: str,
        thread_id: str,
        posts: Sequence[Mapping[str, Any]],
        now: str,
        *,
        run_id: int | None = None,
        notes: dict[str, str] | None = None,
        prepared: dict[str, tuple[str, str, str]] | None = None,
        known: dict[str, tuple[str | None, str | None]] | None = None,
        repair: set[str] | frozenset[str] = frozenset(),
    ) -> list[str]:
        """Store the posts of one thread whose changeKey is new; for each post, in order,
        ``"new"``, ``"changed"``, ``"same"`` or ``"repaired"``.

        ``repair`` names archived posts whose attachments are missing (the audit's
        ``incomplete_posts``):
        with the same changeKey their version is not stored again, but the attachments (and
        the note on why some could not be had) are.

        Every (id, changeKey) ever seen stays in ``post_versions`` with the SHA-256 of its
        canonical JSON; ``posts`` holds the latest. Attachments' bytes go to ``blobs`` once
        per SHA-256, decoded in chunks from the base64 Graph sent. ``notes`` maps post ids
        to an ``attachments_note``; ``prepared`` maps them to ``prepare_post(post)`` done
        earlier, off the writing thread; ``known`` is ``post_states(thread_id)``. The rows
        go in as one multi-row INSERT per table (see the module docstring).
        """
        if known is None:
            known = self.post_states(thread_id)
        # A post archived under another thread is not in ``known``: its state, by id.
        elsewhere = self._post_states_by_id([p["id"] for p in posts if p["id"] not in known])
        outcomes: list[str] = []
        post_rows: list[tuple[Any, ...]] = []
        version_rows: list[tuple[Any, ...]] = []
        attachment_lists: list[tuple[str, list[dict[str, Any]]]] = []
        written: set[tuple[str, str]] = set()
        for post in posts:
            post_id = post["id"]
            change_key = post.get("changeKey") or ""
            stored = known.get(post_id) or elsewhere.get(post_id)
            unchanged = stored is not None and stored[0] == change_key and stored[1] is None
            if unchanged and post_id in repair:
                outcomes.append("repaired")
                self.conn.execute(
                    "UPDATE posts SET attachments_note = :note WHERE id = :id",
                    {"note": (notes or {}).get(post_id), "id": post_id},
                )
                attachment_lists.append((post_id, post.get("attachments") or []))
                continue
            if unchanged or (post_id, change_key) in written:
                outcomes.append("same")
                continue
            written.add((post_id, change_key))
            outcomes.append("new" if stored is None else "changed")
            text, digest, body_text = (prepared or {}).get(post_id) or prepare_post(post)
            for recipient in [
                post.get("from"),
                post.get("sender"),
                *(post.get("newParticipants") or []),
            ]:
                self._save_person(recipient, now)
            from_name, from_address = name_and_address(post.get("from"))
            sender_name, sender_address = name_and_address(post.get("sender"))
            body = post.get("body") or {}
            in_reply_to = post.get("inReplyTo")
            post_rows.append(
                (
                    post_id,
                    group_id,
                    post.get("conversationId"),
                    thread_id,
                    change_key,
                    post.get("createdDateTime"),
                    post.get("lastModifiedDateTime"),
                    post.get("receivedDateTime"),
                    int_or_none(post.get("hasAttachments")),
                    json_or_none(post.get("categories")),
                    body.get("contentType"),
                    body.get("content"),
                    from_name,
                    from_address,
                    sender_name,
                    sender_address,
                    json_or_none(post.get("newParticipants")),
                    in_reply_to.get("id") if isinstance(in_reply_to, dict) else None,
                    (notes or {}).get(post_id),
                    now,
                    now,
                    body_text,
                    self._next_change_seq(),
                )
            )
            version_rows.append(
                (post_id, change_key, post.get("lastModifiedDateTime"), text, digest, run_id, now)
            )
            attachments = post.get("attachments")
            if attachments or (attachments is not None and stored is not None):
                attachment_lists.append((post_id, attachments))
        self._insert_many(_POSTS_INSERT, post_rows, _POSTS_CONFLICT)
        self._insert_many(_VERSIONS_INSERT, version_rows)
        for post_id, attachments in attachment_lists:
            self._save_attachments(post_id, attachments, now, run_id)
        return outcomes

    def _post_states_by_id(self, post_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        states: dict[str, tuple[str | None, str | None]] = {}
        per = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        for start in range(0, len(post_ids), per):
            values, params = in_list("id", post_ids[start : start + per])
            for post_id, change_key, deleted_at in self.conn.execute(
                f"SELECT id, changeKey, deleted_at FROM posts WHERE id IN {values}", params
            ):
                states[post_id] = (change_key, deleted_at)
        return states

    def _insert_many(self, head: str, rows: list[tuple[Any, ...]], tail: str = "") -> None:
        """``head VALUES (...), (...), ... tail``: as many rows per statement as SQLite
        takes parameters for. Positional (``?``), the one exception to named parameters:
        this is the sync's hottest statement, and rows are tuples already."""
        if not rows:
            return
        width = len(rows[0])
        per = max(1, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            values = ", ".join([f"({', '.join('?' * width)})"] * len(chunk))
            self.conn.execute(f"{head} VALUES {values} {tail}", [v for row in chunk for v in row])

    def tombstone_posts(
        self,
        thread_id: str,
        keep: set[str],
        now: str,
        *,
        known: dict[str, tuple[str | None, str | None]] | None = None,
    ) -> int:
        """Mark the thread's live posts not in ``keep`` deleted. ``known`` is
        ``post_states(thread_id)`` read earlier in this transaction (posts saved since
        then are in ``keep``)."""
        if known is None:
            live = set(self.post_change_keys(thread_id))
        else:
            live = {post_id for post_id, (_, deleted) in known.items() if deleted is None}
        gone = live - keep
        for post_id in gone:
            self.conn.execute(
                "UPDATE posts SET deleted_at = :now, change_seq = :seq WHERE id = :id",
                {"now": now, "seq": self._next_change_seq(), "id": post_id},
            )
            self.conn.execute(
                "UPDATE attachments SET deleted_at = :now "
                "WHERE post_id = :post_id AND deleted_at IS NULL",
                {"now": now, "post_id": post_id},
            )
        return len(gone)

    def _next_change_seq(self) -> int:
        """The next number in the posts' change sequence, which the search index follows.

        Every insert, new version and tombstone of a post takes a higher number in the same
        transaction, so "everything after N" is exactly what an index at N has not seen.
        The maximum is read once per transaction (one writer holds the database then).
        """
        if self._seq is None:
            self._seq = int(self._one("SELECT coalesce(max(change_seq), 0) FROM posts") or 0)
        self._seq += 1
        return self._seq

    def post_states(self, thread_id: str) -> dict[str, tuple[str | None, str | None]]:
        """Every archived post of a thread: ``id -> (changeKey, deleted_at)``."""
        return {
            r[0]: (r[1], r[2])
            for r in self.conn.execute(
                "SELECT id, changeKey, deleted_at FROM posts WHERE thread_id = :thread_id",
                {"thread_id": thread_id},
            )
        }

    def change_seq(self) -> int:
        """The archive's latest change; an index that has applied it is up to date."""
        return int(self._one("SELECT coalesce(max(change_seq), 0) FROM posts") or 0)

    # -- attachments and blobs ------------------------------------------------------------

    def _save_attachments(
        self,
        post_id: str,
        attachments: list[dict[str, Any]],
        now: str,
        run_id: int | None = None,
    ) -> None:
        seen = set()
        for attachment in attachments:
            seen.add(attachment["id"])
            sha256 = None
            content = attachment.get("contentBytes")
            if isinstance(content, str):
                sha256 = self.save_blob_base64(content, now, run_id=run_id)
            kind = (attachment.get("@odata.type") or "").rsplit(".", 1)[-1] or "attachment"
            metadata = {k: v for k, v in attachment.items() if k != "contentBytes"}
            self.conn.execute(
                """
                INSERT INTO attachments (post_id, id, type, name, contentType, size, isInline,
                    contentId, lastModifiedDateTime, sha256, json, first_seen_at)
                VALUES (:post_id, :id, :type, :name, :contentType, :size, :isInline,
                    :contentId, :lastModifiedDateTime, :sha256, :json, :now)
                ON CONFLICT(post_id, id) DO UPDATE SET type = excluded.type,
                    name = excluded.name, contentType = excluded.contentType,
                    size = excluded.size, isInline = excluded.isInline,
                    contentId = excluded.contentId,
                    lastModifiedDateTime = excluded.lastModifiedDateTime,
                    sha256 = coalesce(excluded.sha256, attachments.sha256),
                    json = excluded.json, deleted_at = NULL
                """,
                {
                    "post_id": post_id,
                    "id": attachment["id"],
                    "type": kind,
                    "name": attachment.get("name"),
                    "contentType": attachment.get("contentType"),
                    "size": attachment.get("size"),
                    "isInline": int_or_none(attachment.get("isInline")),
                    "contentId": attachment.get("contentId"),
                    "lastModifiedDateTime": attachment.get("lastModifiedDateTime"),
                    "sha256": sha256,
                    "json": canonical_json(metadata),
                    "now": now,
                },
            )
        listed, params = in_list("listed", sorted(seen))
        self.conn.execute(
            f"""
            UPDATE attachments SET deleted_at = :now
            WHERE post_id = :post_id AND deleted_at IS NULL AND id NOT IN {listed}
            """,
            {"now": now, "post_id": post_id, **params},
        )

    # -- events (the "new email arrives" trigger) ------------------------------------------

    def save_event(
        self,
        group_id: str,
        thread: Mapping[str, Any],
        post: Mapping[str, Any],
        conversation: Mapping[str, Any] | None,
        now: str,
        *,
        run_id: int | None = None,
    ) -> bool:
        """Record a new post as an event, in the caller's transaction (with the post itself).

        The event is the connector's ``ConversationTriggerResponse``: the conversation's
        id and lastDeliveredDateTime, with the thread and the post (id, changeKey,
        lastModifiedDateTime). One event per post, ever: ``False`` if it already had one.
        """
        conversation_id = post.get("conversationId") or (conversation or {}).get("id")
        delivered = [
            v
            for v in (
                (conversation or {}).get("lastDeliveredDateTime"),
                thread.get("lastDeliveredDateTime"),
                post.get("receivedDateTime"),
            )
            if v
        ]
        payload = {
            "id": conversation_id,
            "lastDeliveredDateTime": max(delivered) if delivered else None,
            "threads": [
                {
                    "id": thread["id"],
                    "posts": [
                        {
                            "id": post["id"],
                            "changeKey": post.get("changeKey"),
                            "lastModifiedDateTime": post.get("lastModifiedDateTime"),
                        }
                    ],
                }
            ],
        }
        cursor = self.conn.execute(
            """
            INSERT OR IGNORE INTO events (kind, group_id, conversation_id, thread_id, post_id,
                sync_run_id, json, state, created_at)
            VALUES ('new-post', :group_id, :conversation_id, :thread_id, :post_id, :run_id,
                :json, 'pending', :now)
            """,
            {
                "group_id": group_id,
                "conversation_id": conversation_id,
                "thread_id": thread["id"],
                "post_id": post["id"],
                "run_id": run_id,
                "json": json.dumps(payload, ensure_ascii=False),
                "now": now,
            },
        )
        return cursor.rowcount > 0

    # -- people ---------------------------------------------------------------------------

    def _save_person(self, recipient: Any, now: str) -> None:
        name, address = name_and_address(recipient)
        if address is None or self._people_seen.get(address) == (name, now[:10]):
            return
        self._people_seen[address] = (name, now[:10])
        self.conn.execute(
            """
            INSERT INTO people (address, name, first_seen_at, last_seen_at)
            VALUES (:address, :name, :now, :now)
            ON CONFLICT(address) DO UPDATE SET name = coalesce(excluded.name, people.name),
                last_seen_at = excluded.last_seen_at
            """,
            {"address": address, "name": name, "now": now},
        )


def _summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a conversation and a thread share: Graph summarises both alike."""
    return {
        "topic": item.get("topic"),
        "hasAttachments": int_or_none(item.get("hasAttachments")),
        "lastDeliveredDateTime": item.get("lastDeliveredDateTime"),
        "uniqueSenders": json_or_none(item.get("uniqueSenders")),
        "preview": item.get("preview"),
    }
