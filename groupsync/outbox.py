"""The outbox: the connector's 7 write actions, queued offline and replayed exactly once.

Graph makes "exactly once" hard: a reply answers 202 with no body, a reply to a post and a
forward 200 with no body, a new conversation comes back without its post id, and a 429 or
504 may come back although the write was applied. So:

* an item is marked ``sending`` in a committed transaction before its request, and
  ``sent`` after the answer;
* every post the outbox creates carries an open extension
  (``com.groupsync.outbox`` with the item's marker), which Graph keeps with the post and
  returns with ``$expand=extensions``;
* an item whose outcome is unknown (the process died while ``sending``, or Graph answered
  429, 5xx or nothing once the request was out) becomes ``uncertain`` and is *reconciled*
  before anything is resent: the target thread's posts are listed with their extensions and
  the marker looked for (falling back to the body's text hash, sender and time when a post
  carries no extensions). Found: ``sent``. Not found: sent again.
* a forward leaves nothing in the group to look for, so an uncertain forward is never
  resent on its own: ``outbox retry`` resends it, ``outbox cancel`` drops it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .archive import Archive, utc_now
from .archive.queries import outbox as queries
from .errors import (
    GraphError,
    NotFoundError,
    OutboxError,
    TransportError,
    ValidationError,
)
from .graph import GraphClient
from .html import to_text
from .ids import check_id
from .models import parse_datetime
from .throttle import Throttle

__all__ = [
    "ACTIONS",
    "EXTENSION_NAME",
    "MAX_ATTACHMENT_BYTES",
    "Draft",
    "Outbox",
    "SendReport",
]

EXTENSION_NAME = "com.groupsync.outbox"
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024  # Graph: attachments on posts must be under 3 MB
ACTIONS = (
    "new-conversation",
    "new-thread",
    "reply-to-thread",
    "reply-to-post",
    "forward",
    "delete-thread",
)
# Graph documents these as not supported with application permissions.
DELEGATED_ONLY = frozenset({"new-conversation", "new-thread", "reply-to-thread"})
CREATES_POST = frozenset({"new-conversation", "new-thread", "reply-to-thread", "reply-to-post"})
_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass
class Draft:
    """What a person wants to write, before it is checked and turned into Graph's body."""

    content: str | None = None
    content_type: str = "html"
    topic: str | None = None
    to: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    attachments: list[Path] = field(default_factory=list)
    comment: str | None = None


@dataclass
class SendReport:
    """What a replay did."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    uncertain: int = 0
    reconciled: int = 0
    waiting: int = 0
    stopped: bool = False
    items: list[dict[str, Any]] = field(default_factory=list)


def _recipient(address: str) -> dict[str, Any]:
    return {"emailAddress": {"address": address}}


def text_sha256(content: str, content_type: str = "html") -> str:
    """The fallback fingerprint of a body: its text, which survives Exchange's rewriting
    of the HTML (wrappers, styles) better than the markup does."""
    normal = " ".join(to_text(content, content_type).split())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


class Outbox:
    """The queue in the archive database, and its replay through a ``GraphClient``.

    Parameters: ``archive`` (read-write), ``identity`` (who queues and sends, for the
    audit), ``app_only`` (an application identity: Graph refuses some writes to it),
    ``now`` (a clock of Graph-style UTC strings), ``backoff`` (first retry delay, doubled
    per attempt up to ``backoff_cap``) and ``reconcile_delay`` (how long an uncertain
    item waits before its reconcile, so that a write Graph applied has time to show).
    """

    def __init__(
        self,
        archive: Archive,
        *,
        identity: str | None = None,
        app_only: bool = False,
        now: Callable[[], str] = utc_now,
        backoff: float = 5.0,
        backoff_cap: float = 900.0,
        reconcile_delay: float = 10.0,
    ) -> None:
        self.archive = archive
        self.identity = identity
        self.app_only = app_only
        self.now = now
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.reconcile_delay = reconcile_delay

    # -- queueing -------------------------------------------------------------------------

    def queue(
        self,
        action: str,
        group_id: str,
        draft: Draft,
        *,
        conversation_id: str | None = None,
        thread_id: str | None = None,
        post_id: str | None = None,
    ) -> dict[str, Any]:
        """Check everything Graph would refuse, then queue; nothing is queued on error."""
        if action not in ACTIONS:
            raise ValidationError(f"unknown action {action!r}")
        given = {"group": group_id, "conversation": conversation_id, "thread": thread_id,
                 "post": post_id}  # fmt: skip
        for what, value in given.items():
            if value is not None:
                check_id(value, f"{what} id")
        if self.app_only and action in DELEGATED_ONLY:
            raise ValidationError(
                f"{action} needs a signed-in user: Graph does not allow it with application "
                "permissions (run `groupsync login` without --app)"
            )
        self._check_targets(action, group_id, conversation_id, thread_id, post_id)
        marker = str(uuid.uuid4())
        now = self.now()
        content_hash = None
        with self.archive.atomic():
            if action == "delete-thread":
                body: dict[str, Any] = {}
            elif action == "forward":
                body = self._forward_body(draft)
            else:
                post = self._post_body(draft, marker, now)
                content_hash = text_sha256(draft.content or "", draft.content_type)
                if action == "new-conversation":
                    body = {"topic": self._topic(draft), "threads": [{"posts": [post]}]}
                elif action == "new-thread":
                    body = {"topic": self._topic(draft), "posts": [post]}
                else:
                    body = {"post": post}
            item_id = queries.insert_item(
                self.archive,
                {
                    "action": action,
                    "group_id": group_id,
                    "conversation_id": conversation_id,
                    "thread_id": thread_id,
                    "post_id": post_id,
                    "topic": draft.topic,
                    "body": json.dumps(body, ensure_ascii=False),
                    "marker": marker,
                    "content_sha256": content_hash,
                    "identity": self.identity,
                    "now": now,
                },
            )
            self._log(item_id, "queued", None, now)
        return self.get(item_id)

    def _check_targets(
        self,
        action: str,
        group_id: str,
        conversation_id: str | None,
        thread_id: str | None,
        post_id: str | None,
    ) -> None:
        group = queries.group_deleted_at(self.archive, group_id)
        if group is None:
            raise ValidationError(f"group {group_id} is not in the archive; sync it first")
        if group[0] is not None:
            raise ValidationError(f"group {group_id} can no longer be read by this identity")
        if conversation_id is not None:
            found = queries.conversation_deleted_at(self.archive, group_id, conversation_id)
            if found is None or found[0] is not None:
                raise ValidationError(f"conversation {conversation_id} is not in group {group_id}")
        if action in {"new-conversation", "new-thread"}:
            return
        if thread_id is None:
            raise ValidationError(f"{action} needs a thread id")
        row = queries.thread_deleted_and_locked(self.archive, group_id, thread_id)
        if row is None:
            raise ValidationError(f"thread {thread_id} is not in group {group_id}'s archive")
        if row[0] is not None:
            raise ValidationError(f"thread {thread_id} was deleted upstream")
        if row[1] and action in CREATES_POST:
            raise ValidationError(f"thread {thread_id} is locked: Graph refuses replies to it")
        if action in {"reply-to-post", "forward"}:
            if post_id is None:
                raise ValidationError(f"{action} needs a post id")
            post = queries.post_deleted_at(self.archive, thread_id, post_id)
            if post is None or post[0] is not None:
                raise ValidationError(f"post {post_id} is not in thread {thread_id}")

    @staticmethod
    def _topic(draft: Draft) -> str:
        topic = (draft.topic or "").strip()
        if not topic:
            raise ValidationError("a new conversation or thread needs a --topic")
        return topic

    @staticmethod
    def _recipients(addresses: list[str]) -> list[dict[str, Any]]:
        for address in addresses:
            if not _EMAIL.match(address):
                raise ValidationError(f"{address!r} is not an e-mail address")
        return [_recipient(a) for a in addresses]

    def _post_body(self, draft: Draft, marker: str, now: str) -> dict[str, Any]:
        content = draft.content or ""
        if draft.content_type not in {"html", "text"}:
            raise ValidationError("content type must be html or text")
        if not to_text(content, draft.content_type).strip() and "<img" not in content.lower():
            raise ValidationError("the message is empty")
        post: dict[str, Any] = {"body": {"contentType": draft.content_type, "content": content}}
        if draft.to:
            post["newParticipants"] = self._recipients(draft.to)
        if draft.categories:
            post["categories"] = [c for c in draft.categories if c.strip()]
        if draft.attachments:
            post["attachments"] = [self._attachment(path, now) for path in draft.attachments]
        post["extensions"] = [
            {
                "@odata.type": "microsoft.graph.openTypeExtension",
                "extensionName": EXTENSION_NAME,
                "marker": marker,
            }
        ]
        return post

    def _attachment(self, path: Path, now: str) -> dict[str, Any]:
        try:
            size = path.stat().st_size
            if size >= MAX_ATTACHMENT_BYTES:
                raise ValidationError(
                    f"{path.name} is {size:,} bytes: Graph takes attachments on posts "
                    f"under {MAX_ATTACHMENT_BYTES:,} bytes"
                )
            data = path.read_bytes()
        except OSError as ex:
            raise ValidationError(f"cannot read attachment {path}: {ex.strerror}") from None
        sha256 = self.archive.save_blob_bytes(data, now)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": path.name,
            "contentType": content_type,
            "contentBytes": {"@groupsync.blob": sha256},
        }

    def _forward_body(self, draft: Draft) -> dict[str, Any]:
        if not draft.to:
            raise ValidationError("forward needs at least one --to address")
        body: dict[str, Any] = {"toRecipients": self._recipients(draft.to)}
        if draft.comment:
            body["comment"] = draft.comment
        return body

    # -- reading and managing the queue ---------------------------------------------------

    def get(self, item_id: int) -> dict[str, Any]:
        item = queries.item_row(self.archive, item_id)
        if item is None:
            raise OutboxError(f"no outbox item {item_id}")
        item["body"] = json.loads(item["body"])
        item["result"] = json.loads(item["result"]) if item["result"] else None
        return item

    def iter_items(self, state: str | None = None) -> Iterator[dict[str, Any]]:
        for item_id in queries.item_ids(self.archive, state):
            yield self.get(item_id)

    def history(self, item_id: int) -> list[dict[str, Any]]:
        return queries.item_history(self.archive, item_id)

    def cancel(self, item_id: int) -> dict[str, Any]:
        """Drop an item that has not been sent (an uncertain one only if it is a forward)."""
        item = self.get(item_id)
        if item["state"] not in {"queued", "failed", "uncertain"}:
            raise OutboxError(f"outbox item {item_id} is {item['state']}; it cannot be cancelled")
        if item["state"] == "uncertain" and item["action"] != "forward":
            raise OutboxError(
                f"outbox item {item_id} may have reached Graph; `groupsync send` reconciles it"
            )
        self._set(item_id, "cancelled", detail="cancelled by a person")
        return self.get(item_id)

    def retry(self, item_id: int) -> dict[str, Any]:
        """Queue a failed item again, or resend an uncertain forward (a person's decision)."""
        item = self.get(item_id)
        if item["state"] == "uncertain" and item["action"] == "forward":
            self._set(item_id, "queued", detail="resend decided by a person", next_attempt=0)
        elif item["state"] == "failed":
            self._set(item_id, "queued", detail="retry asked by a person", next_attempt=0)
        else:
            raise OutboxError(
                f"outbox item {item_id} is {item['state']}; only failed items "
                "and uncertain forwards can be retried"
            )
        return self.get(item_id)

    def _log(self, item_id: int, state: str, detail: str | None, now: str) -> None:
        queries.log_transition(self.archive, item_id, state, detail, now, self.identity)

    def _set(
        self,
        item_id: int,
        state: str,
        *,
        detail: str | None = None,
        next_attempt: float | None = None,
        deleted_thread: str | None = None,
        **columns: Any,
    ) -> None:
        """One committed transition, with its line in the item's history.

        ``deleted_thread``: a delete-thread Graph applied; the archive marks the thread, its
        posts (and a conversation left with no thread) deleted in the same transaction, so a
        read after ``send`` does not show what is gone upstream.
        """
        now = self.now()
        values = {"state": state, **columns}
        if next_attempt is not None:
            values["next_attempt_at"] = _after(now, next_attempt)
        if detail is not None and state in {"failed", "queued", "uncertain"}:
            values["last_error"] = detail
        elif state == "sent":
            values["last_error"] = None
        with self.archive.atomic():
            queries.update_item(self.archive, item_id, values)
            self._log(item_id, state, detail, now)
            if deleted_thread is not None:
                gone_at = columns.get("sent_at") or now
                self.archive.tombstone_thread(deleted_thread, gone_at)
                self.archive.tombstone_empty_conversation(deleted_thread, gone_at)

    # -- replay ---------------------------------------------------------------------------

    def send(
        self,
        graph: GraphClient,
        *,
        sending_cap: Throttle | None = None,
        stop: threading.Event | None = None,
        wait: bool = False,
        sleep: Callable[[float], None] | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> SendReport:
        """Replay the queue, oldest first, FIFO per thread, one request at a time.

        ``sending_cap`` limits messages (Exchange caps sending at about 30 a minute);
        ``stop`` ends the run between items (Ctrl-C); ``wait`` keeps going while items wait
        for a retry time, otherwise the run ends and leaves them queued.
        """
        report = SendReport()
        stop = stop or threading.Event()
        self._recover_interrupted()
        while not stop.is_set():
            item = self._next_item()
            if item is None:
                delay = self._next_wait()
                if delay is None or not wait:
                    report.waiting = self._count_waiting()
                    break
                (sleep or graph.clock.sleep)(min(delay, 5.0))
                continue
            self._process(graph, item, report, sending_cap)
            if progress is not None:
                progress({"sent": report.sent, "failed": report.failed, "id": item["id"]})
        report.stopped = stop.is_set()
        if report.stopped:
            report.waiting = self._count_waiting()
        return report

    def _recover_interrupted(self) -> None:
        """Items left ``sending`` by a process that died: their outcome is unknown."""
        for item_id in queries.sending_item_ids(self.archive):
            self._set(item_id, "uncertain", detail="interrupted while sending", next_attempt=0)

    def _next_item(self) -> dict[str, Any] | None:
        """The oldest item due now whose thread has nothing older still open."""
        item_id = queries.next_item_id(self.archive, self.now())
        return None if item_id is None else self.get(item_id)

    def _next_wait(self) -> float | None:
        due = queries.next_attempt_at(self.archive)
        if due is None:
            return None
        delta = (parse_datetime(due) - parse_datetime(self.now())).total_seconds()
        return max(0.05, delta)

    def _count_waiting(self) -> int:
        return queries.count_waiting(self.archive)

    def _process(
        self,
        graph: GraphClient,
        item: dict[str, Any],
        report: SendReport,
        sending_cap: Throttle | None,
    ) -> None:
        if item["state"] == "uncertain":
            try:
                found = self._reconcile(graph, item)
            except NotFoundError:
                found = None  # the thread is gone: resending will say so as a failure
            except GraphError as ex:
                self._set(
                    item["id"],
                    "uncertain",
                    detail=f"reconcile failed: {ex}",
                    next_attempt=self._delay(item["attempts"]),
                )
                report.retried += 1
                return
            if found is not None:
                self._set(
                    item["id"],
                    "sent",
                    detail="found upstream by reconcile",
                    sent_at=self.now(),
                    result=json.dumps(found, ensure_ascii=False),
                    deleted_thread=_deleted_thread(item),
                )
                report.reconciled += 1
                report.sent += 1
                report.items.append({"id": item["id"], "state": "sent", "reconciled": True})
                return
        if sending_cap is not None and item["action"] in CREATES_POST | {"forward"}:
            sending_cap.acquire().release()
        body = self._wire_body(item["body"])
        self._set(item["id"], "sending", sending_at=self.now(), attempts=item["attempts"] + 1)
        try:
            result = self._call(graph, item, body)
        except TransportError as ex:
            if getattr(ex, "sent", True):
                self._uncertain(item, f"no answer: {ex}", report)
            else:
                self._set(
                    item["id"],
                    "queued",
                    detail=f"not sent: {ex}",
                    next_attempt=self._delay(item["attempts"] + 1),
                )
                report.retried += 1
            return
        except GraphError as ex:
            status = ex.status or 0
            if item["action"] == "delete-thread" and status == 404:
                self._set(
                    item["id"],
                    "sent",
                    detail="thread already gone",
                    sent_at=self.now(),
                    request_id=ex.request_id,
                    deleted_thread=_deleted_thread(item),
                )
                report.sent += 1
                return
            if status == 429 or status >= 500:
                self._uncertain(item, f"Graph answered {status}", report, ex.request_id)
                return
            if status == 401:
                self._set(item["id"], "queued", detail=str(ex), next_attempt=0)
                raise
            self._set(
                item["id"], "failed", detail=ex.graph_message or str(ex), request_id=ex.request_id
            )
            report.failed += 1
            report.items.append({"id": item["id"], "state": "failed", "error": str(ex)})
            return
        self._set(
            item["id"],
            "sent",
            detail=f"Graph answered {result.status}",
            sent_at=self.now(),
            request_id=result.request_id,
            result=json.dumps(_ids(result.body), ensure_ascii=False) if result.body else None,
            deleted_thread=_deleted_thread(item),
        )
        report.sent += 1
        report.items.append({"id": item["id"], "state": "sent"})

    def _uncertain(
        self, item: dict[str, Any], detail: str, report: SendReport, request_id: str | None = None
    ) -> None:
        self._set(
            item["id"],
            "uncertain",
            detail=detail,
            request_id=request_id,
            next_attempt=self.reconcile_delay,
        )
        report.uncertain += 1

    def _delay(self, attempts: int) -> float:
        return min(self.backoff_cap, self.backoff * 2 ** max(0, attempts - 1))

    def _wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The stored body with each attachment's bytes put back as base64."""

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                if set(value) == {"@groupsync.blob"}:
                    data = self.archive.read_blob(value["@groupsync.blob"])
                    return base64.b64encode(data).decode("ascii")
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        return walk(body)

    @staticmethod
    def _call(graph: GraphClient, item: dict[str, Any], body: dict[str, Any]) -> Any:
        group, thread, post = item["group_id"], item["thread_id"], item["post_id"]
        action = item["action"]
        if action == "new-conversation":
            return graph.create_conversation(group, body)
        if action == "new-thread":
            return graph.create_thread(group, body, conversation_id=item["conversation_id"])
        if action == "reply-to-thread":
            return graph.reply_to_thread(group, thread, body["post"])
        if action == "reply-to-post":
            return graph.reply_to_post(group, thread, post, body["post"])
        if action == "forward":
            return graph.forward_post(
                group, thread, post, body["toRecipients"], body.get("comment")
            )
        return graph.delete_thread(group, thread)

    # -- reconcile ------------------------------------------------------------------------

    def _reconcile(self, graph: GraphClient, item: dict[str, Any]) -> dict[str, Any] | None:
        """Did Graph apply this item? The post with its marker, or ``None``."""
        action, group = item["action"], item["group_id"]
        if action == "delete-thread":
            try:
                graph.get_thread(group, item["thread_id"])
            except NotFoundError:
                return {"thread": item["thread_id"], "deleted": True}
            return None
        if action in {"reply-to-thread", "reply-to-post"}:
            return self._find_in_thread(graph, group, item["thread_id"], item)
        since = parse_datetime(item["created_at"]) - timedelta(minutes=5)
        for thread in graph.list_threads(
            group,
            conversation_id=item["conversation_id"],
            select=["id", "topic", "lastDeliveredDateTime"],
            top=50,
        ):
            delivered = thread.get("lastDeliveredDateTime")
            if delivered and parse_datetime(delivered) < since:
                break
            if (thread.get("topic") or "").strip() != (item["topic"] or "").strip():
                continue
            found = self._find_in_thread(graph, group, thread["id"], item)
            if found is not None:
                return found
        return None

    def _find_in_thread(
        self, graph: GraphClient, group: str, thread_id: str, item: dict[str, Any]
    ) -> dict[str, Any] | None:
        since = parse_datetime(item["sending_at"] or item["created_at"]) - timedelta(minutes=5)
        fallback = None
        for post in graph.list_posts(group, thread_id, expand="extensions", top=50):
            for extension in post.get("extensions") or []:
                name = extension.get("extensionName") or extension.get("id", "")
                if EXTENSION_NAME in str(name) and extension.get("marker") == item["marker"]:
                    return {"thread": thread_id, "post": post["id"], "matched": "marker"}
            if "extensions" in post or item["content_sha256"] is None:
                continue
            received = post.get("receivedDateTime")
            body: Mapping[str, Any] = post.get("body") or {}
            if (
                received
                and parse_datetime(received) >= since
                and text_sha256(body.get("content") or "", body.get("contentType") or "html")
                == item["content_sha256"]
            ):
                fallback = {"thread": thread_id, "post": post["id"], "matched": "content"}
        return fallback


def _deleted_thread(item: dict[str, Any]) -> str | None:
    """The thread a delete-thread item removes, for the archive to mark at once."""
    return item["thread_id"] if item["action"] == "delete-thread" else None


def _ids(body: dict[str, Any]) -> dict[str, Any]:
    """What Graph told us about what it created: ids only."""
    out: dict[str, Any] = {}
    if "id" in body:
        out["id"] = body["id"]
    threads = body.get("threads")
    if isinstance(threads, list):
        out["threads"] = [t.get("id") for t in threads if isinstance(t, dict)]
    return out


def _after(now: str, seconds: float) -> str:
    when = parse_datetime(now) + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
