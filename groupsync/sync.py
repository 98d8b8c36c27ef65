"""Mirror groups into the archive: incremental by thread signals, full by changeKey.

Graph has no delta query for group conversations, threads or posts and documents no order
or ``$filter`` for the thread list, so change detection is ours:

* **incremental**: page the thread list with ``$select`` of the fields that move when mail
  is delivered; list the posts only of threads whose fields differ from the archive's; store
  posts whose changeKey is new. Stop paging at the stored watermark only while every thread
  seen so far came newest-first.
* **full reconcile**: list every conversation, thread, and every post's id and changeKey;
  fetch bodies only where the changeKey is new; tombstone what is gone. It also checks the
  early-stop assumption and turns early stopping off for a group where it failed.

Network calls run in worker threads, for several groups at once (``_sync_groups``: the
client keeps the in-flight caps, 4 for the app by default); every archive write happens on
the calling thread, one transaction per thread of mail together with its signals, so a
killed sync resumes without refetching what was committed.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .archive import Archive, ThreadSignals, prepare_post, utc_now
from .audit import incomplete_posts
from .discovery import discover_groups
from .errors import (
    ForbiddenError,
    GroupsyncError,
    NoMailboxError,
    NotFoundError,
    ValidationError,
)
from .graph import GraphClient
from .ids import check_id
from .models import (
    ConversationThread,
    ModelError,
    Post,
    group_kind,
    has_mailbox,
    parse_datetime,
)
from .shards import Shard

__all__ = ["SyncOptions", "SyncReport", "SyncStopped", "Syncer", "THREAD_SELECT"]

THREAD_SELECT = [
    "id",
    "topic",
    "lastDeliveredDateTime",
    "preview",
    "hasAttachments",
    "uniqueSenders",
    "isLocked",
    "toRecipients",
    "ccRecipients",
]
POST_KEYS_SELECT = ["id", "changeKey"]
# Graph's default post properties leave out the back-references and newParticipants, which
# the archive stores; naming every field also keeps the answer to what is stored.
POST_SELECT = [
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "receivedDateTime",
    "hasAttachments",
    "categories",
    "body",
    "from",
    "sender",
    "newParticipants",
    "conversationId",
    "conversationThreadId",
]
TRUNCATION_SUSPECT = 100  # Graph reportedly lists at most 100 posts, without a nextLink
NOT_READABLE = "attachments not readable with this identity"
_CID = re.compile("cid:", re.IGNORECASE)
NOT_LISTED = "Graph lists no attachments for this post, though it flags or shows some"


@dataclass
class SyncOptions:
    """How a sync runs.

    ``full`` forces a full reconcile; otherwise a group gets one when it never had one or
    its last is older than ``full_max_age``. ``page_size`` is the ``$top`` asked for (Graph
    clamps it); ``workers`` the requests in flight at once. Every new post is recorded as an
    event, except the history found by a group's first sync unless ``fire_on_backfill``.
    ``spread`` is how many listed groups hand out fetches in turn: 1 keeps one group after
    another (threads stored in listing order, so a resumed run numbers its changes as an
    uninterrupted one would); more is what a per-mailbox in-flight cap needs to keep the
    app's slots busy (the order of storing then depends on timing).
    """

    full: bool = False
    full_max_age: timedelta = timedelta(days=7)
    page_size: int = 50
    workers: int = 4
    fire_on_backfill: bool = False
    spread: int = 1


@dataclass
class SyncReport:
    """What a run did; also stored in ``sync_runs``."""

    run_id: int = 0
    mode: str = "incremental"
    status: str = "running"
    groups: list[str] = field(default_factory=list)
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    throttle_wait: float = 0.0
    retry_wait: float = 0.0
    threads_checked: int = 0
    threads_fetched: int = 0
    items_new: int = 0
    items_changed: int = 0
    items_deleted: int = 0
    attachments_new: int = 0
    events: int = 0
    per_group: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    digest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyncStopped(Exception):
    """Raised between two threads of mail when the caller asked the run to stop."""


@dataclass
class _Fetched:
    """One thread's posts as Graph listed them, fetched off the writing thread."""

    thread: ConversationThread
    posts: list[Post]
    listed_ids: set[str] | None
    conversation: dict[str, Any] | None
    conversation_id: str | None
    notes: dict[str, str]
    prepared: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    repair: set[str] = field(default_factory=set)


@dataclass
class _GroupPlan:
    """A group as the scheduler holds it: how it is synced and what the archive knew."""

    group_id: str
    index: int
    full: bool
    state: dict[str, Any]
    stored: dict[str, ThreadSignals]
    started: str
    failed: bool = False


@dataclass
class _Listing:
    """A group's listing: the threads to fetch (every one in a full reconcile, the changed
    ones otherwise), how many were checked, the new watermark, the conversations (full)."""

    threads: list[ConversationThread]
    checked: int
    newest: str | None
    conversations: list[Any] | None
    unordered: bool = False


@dataclass
class _Item:
    """One entry of the writer's queue: a thread's fetch, or (with ``listing``) the end of
    a group."""

    plan: _GroupPlan
    thread: ConversationThread | None
    future: Future[_Fetched | None] | None
    listing: _Listing | None = None
    missed: int = 0


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if parse_datetime(a) >= parse_datetime(b) else b


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ModelError:
        return None


class Syncer:
    """Runs syncs of an archive from a Graph client.

    Parameters: ``archive``, ``graph``, ``options``, ``progress`` (called with a dict
    after each step, for a progress bar; never with mail content), ``identity`` (who runs
    it, for the audit), ``now`` (a clock returning Graph-style UTC times) and ``stop`` (an
    event: when set, the run ends after the thread being written, with status ``stopped``).
    """

    def __init__(
        self,
        archive: Archive,
        graph: GraphClient,
        *,
        options: SyncOptions | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        identity: str | None = None,
        now: Callable[[], str] = utc_now,
        stop: threading.Event | None = None,
    ) -> None:
        self.archive = archive
        self.stop = stop
        self.graph = graph
        self.options = options or SyncOptions()
        self.progress = progress
        self.identity = identity
        self.now = now
        self.report = SyncReport()
        self._group_modes: dict[str, str] = {}
        self._shard: Shard | None = None
        self._backfill: set[str] = set()
        self._conversations_seen: set[str] = set()
        self._repaired = 0
        self._groups_done = 0
        self._lock = threading.Lock()

    # -- entry point ----------------------------------------------------------------------

    def run(
        self,
        group_ids: Iterable[str] = (),
        *,
        joined: bool = False,
        all_groups: bool = False,
        shard: Shard | None = None,
    ) -> SyncReport:
        """Sync the named groups, the joined ones, or all; with none, the archived groups
        (or the joined ones when the archive is empty). ``shard`` (with ``all_groups``
        only) keeps the groups whose hash falls in it."""
        group_ids = [check_id(g, "group id") for g in group_ids]  # before the run is recorded
        if shard is not None and not all_groups:
            raise ValidationError("--shard goes with --all (a shard is a share of the tenant)")
        self._shard = shard
        start = self._counters()
        report = self.report
        report.mode = "full" if self.options.full else "incremental"
        run_id = self.archive.start_run(report.mode, group_ids, self.identity, self.now())
        report.run_id = run_id
        try:
            groups = self._resolve_groups(list(group_ids), joined, all_groups)
            report.groups = groups
            self.archive.update_run(run_id, groups=_dumps(groups))
            self._sync_groups(groups)
            if self._repaired:
                self._note(
                    f"{self._repaired} archived post(s) lacked their attachments (inline "
                    "images a sync before groupsync took them all left out): fetched again"
                )
            modes = set(self._group_modes.values())
            report.mode = modes.pop() if len(modes) == 1 else ("mixed" if modes else report.mode)
            report.status = "complete" if not report.error else "failed"
        except SyncStopped:
            report.status = "stopped"
        except KeyboardInterrupt:
            report.status = "interrupted"
            report.error = "interrupted"
            raise
        except GroupsyncError as ex:
            report.status = "failed"
            report.error = str(ex)
            raise
        finally:
            self._finish(run_id, start)
        return report

    def _finish(self, run_id: int, start: dict[str, float]) -> None:
        report = self.report
        now = self._counters()
        report.requests = int(now["requests"] - start["requests"])
        report.throttled = int(now["throttled"] - start["throttled"])
        report.retries = int(now["retries"] - start["retries"])
        report.throttle_wait = round(now["throttle_wait"] - start["throttle_wait"], 3)
        report.retry_wait = round(now["retry_wait"] - start["retry_wait"], 3)
        if report.status == "running":
            report.status = "failed"
        report.digest = self.archive.finish_run(
            run_id,
            finished_at=self.now(),
            status=report.status,
            mode=report.mode,
            requests=report.requests,
            throttled=report.throttled,
            retries=report.retries,
            throttle_wait=report.throttle_wait,
            retry_wait=report.retry_wait,
            threads_checked=report.threads_checked,
            threads_fetched=report.threads_fetched,
            items_new=report.items_new,
            items_changed=report.items_changed,
            items_deleted=report.items_deleted,
            attachments_new=report.attachments_new,
            events=report.events,
            notes=_dumps(report.notes) if report.notes else None,
            error=report.error,
        )

    def _counters(self) -> dict[str, float]:
        stats, throttle = self.graph.stats, self.graph.throttle.stats
        return {
            "requests": stats.requests,
            "throttled": stats.throttled,
            "retries": stats.retries,
            "throttle_wait": throttle.waited,
            "retry_wait": stats.retry_wait,
        }

    def _emit(self, **event: Any) -> None:
        if self.progress is not None:
            event.update(
                requests=self.graph.stats.requests,
                throttle_waits=self.graph.throttle.stats.waits,
                throttle_wait=round(self.graph.throttle.stats.waited, 1),
                threads_checked=self.report.threads_checked,
                threads_fetched=self.report.threads_fetched,
                posts=self.report.items_new + self.report.items_changed,
                groups_done=self._groups_done,
                groups_total=len(self.report.groups),
                in_flight=self.graph.in_flight,
            )
            self.progress(event)

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise SyncStopped

    def _note(self, text: str) -> None:
        with self._lock:
            self.report.notes.append(text)

    # -- groups ---------------------------------------------------------------------------

    def _resolve_groups(self, group_ids: list[str], joined: bool, all_groups: bool) -> list[str]:
        now = self.now()
        found: list[Mapping[str, Any]] = []
        discovered: list[str] = []
        if all_groups:
            discovered = self._discover_groups(now)
        elif joined or (not group_ids and not self.archive.group_ids()):
            found.extend(self.graph.list_member_of())
        for group_id in group_ids:
            group: Mapping[str, Any] | None = self.archive.group(group_id)
            if group is None or self.options.full or "groupTypes" not in group:
                group = self.graph.get_group(group_id)
                found.append(group)
            if not has_mailbox(group):
                name = group.get("displayName") or group_id
                raise NoMailboxError(
                    f"{name} ({group_id}) is a {group_kind(group)}: it has no group mailbox"
                )
        with self.archive.atomic():
            for group in found:
                self.archive.save_group(group, now)
        ordered = list(dict.fromkeys([*group_ids, *discovered, *(g["id"] for g in found)]))
        if not group_ids and not joined and not all_groups:
            ordered = list(dict.fromkeys([*ordered, *self.archive.group_ids()]))
        return ordered

    def _discover_groups(self, now: str) -> list[str]:
        """Every live mailbox group of the tenant (of this shard), found with the stored
        group delta link: only new, changed and removed groups are read from Graph."""
        shard = self._shard
        found = discover_groups(
            self.archive, self.graph, now, keep=shard.holds if shard is not None else _any
        )
        for note in found.notes:
            self._note(note)
        if found.removed:
            self._note(
                f"{len(found.removed)} group(s) removed upstream, kept in the archive: "
                + ", ".join(found.removed[:20])
            )
        return [g for g in self.archive.group_ids() if shard is None or shard.holds(g)]

    def _full_due(self, last_full_at: str | None) -> bool:
        if last_full_at is None:
            return True
        last = _when(last_full_at)
        now = _when(self.now())
        return last is None or now is None or now - last > self.options.full_max_age

    # -- the scheduler: many groups at once, one writer ---------------------------------

    def _sync_groups(self, groups: list[str]) -> None:
        """Sync ``groups`` with their requests interleaved, so that no in-flight slot idles
        while any group has work, and every write on this thread, in queue order.

        Groups are listed a few ahead in worker threads; the listed groups' threads of mail
        join one queue of fetches (group after group, or in turn from ``spread`` groups;
        bounded, so memory stays flat); the writer stores them in queue order, one
        transaction per thread of mail, and closes a group (its tombstones, its cursor)
        once all its threads are stored. A kill loses at most the threads not yet
        committed: the cursor moves only with the group's last thread.
        """
        workers = max(1, self.options.workers)
        window = workers * 8
        lookahead = workers * 2
        total = len(groups)
        todo = iter(enumerate(groups, 1))
        listings: deque[tuple[_GroupPlan, Future[_Listing]]] = deque()
        feed: deque[Iterator[_Item]] = deque()
        pending: deque[_Item] = deque()
        # More worker threads than slots: one waiting on a throttled or busy mailbox leaves
        # its slot to another mailbox (the client's semaphores keep the in-flight caps).
        with (
            ThreadPoolExecutor(workers * 3, thread_name_prefix="groupsync-fetch") as pool,
            self.archive.batch() as tick,
        ):
            try:
                while True:
                    while len(listings) < lookahead:
                        nxt = next(todo, None)
                        if nxt is None:
                            break
                        self._check_stop()
                        plan = self._plan_group(nxt[1], nxt[0], total)
                        listings.append((plan, pool.submit(self._list_group, plan)))
                    while len(pending) < window:
                        item = self._next_item(feed, listings, pool, idle=not pending)
                        if item is None:
                            break
                        pending.append(item)
                    if pending:
                        self._store_item(pending.popleft())
                        tick()
                    elif not listings and not feed:
                        break
            except BaseException:
                for item in pending:
                    if item.future is not None:
                        item.future.cancel()
                for _, future in listings:
                    future.cancel()
                raise

    def _plan_group(self, group_id: str, index: int, total: int) -> _GroupPlan:
        state = self.archive.sync_state(group_id)
        if state.get("last_full_at") is None and state.get("last_incremental_at") is None:
            self._backfill.add(group_id)  # its first sync: history, not news
        full = self.options.full or self._full_due(state.get("last_full_at"))
        self._group_modes[group_id] = "full" if full else "incremental"
        plan = _GroupPlan(
            group_id, index, full, state, self.archive.thread_signals(group_id), self.now()
        )
        self.report.per_group[group_id] = {"threads_listed": 0, "threads_fetched": 0, "posts": 0}
        self._emit(stage="group", group=group_id, index=index, total=total)
        return plan

    def _next_item(
        self,
        feed: deque[Iterator[_Item]],
        listings: deque[tuple[_GroupPlan, Future[_Listing]]],
        pool: ThreadPoolExecutor,
        *,
        idle: bool,
    ) -> _Item | None:
        """The next fetch to queue, taken in turn from up to ``spread`` listed groups (so a
        per-mailbox cap never leaves the app's slots idle); a group joins them once its
        list has arrived (waited for only when nothing else is queued)."""
        spread = max(1, self.options.spread)
        while True:
            while listings and len(feed) < spread and (listings[0][1].done() or not feed):
                if not listings[0][1].done() and not idle:
                    return None
                plan, future = listings.popleft()
                try:
                    listing = future.result()
                except (ForbiddenError, NotFoundError) as ex:
                    self._group_unreadable(plan, ex)
                    continue
                feed.append(self._take_listing(plan, listing, pool))
            while feed:
                item = next(feed[0], None)
                if item is None:
                    feed.popleft()
                    continue
                feed.rotate(-1)
                return item
            if not listings:
                return None

    def _list_group(self, plan: _GroupPlan) -> _Listing:
        """A group's conversations (full) and threads: network only, in a worker thread."""
        graph, top = self.graph, self.options.page_size
        group_id, state = plan.group_id, plan.state
        if plan.full:
            conversations = list(graph.list_conversations(group_id, top=top))
            threads: list[ConversationThread] = []
            for page in graph.thread_pages(group_id, select=THREAD_SELECT, top=top):
                threads.extend(page)
                self._check_stop()
            newest = state.get("watermark")
            for thread in threads:
                newest = _later(newest, thread.get("lastDeliveredDateTime"))
            return _Listing(threads, len(threads), newest, conversations)
        watermark = state.get("watermark")
        early_ok = bool(state.get("early_stop")) and watermark is not None
        newest = watermark
        previous: datetime | None = None
        ordered = True
        stop = False
        checked = 0
        changed: list[ConversationThread] = []
        limit = _when(watermark)
        for page in graph.thread_pages(group_id, select=THREAD_SELECT, top=top):
            # A whole page is always read (it is paid for): its changed threads are all
            # taken, and its order is checked before any decision to stop.
            for thread in page:
                checked += 1
                delivered = _when(thread.get("lastDeliveredDateTime"))
                if delivered is None or (previous is not None and delivered > previous):
                    ordered = False
                previous = delivered if delivered is not None else previous
                newest = _later(newest, thread.get("lastDeliveredDateTime"))
                old = plan.stored.get(thread["id"])
                if old is None or old.deleted or old != ThreadSignals.of(thread):
                    changed.append(thread)
                elif limit is not None and delivered is not None and delivered <= limit:
                    stop = True
            self._check_stop()
            if stop and early_ok and ordered:
                break
        return _Listing(changed, checked, newest, None, unordered=not ordered and early_ok)

    def _take_listing(
        self, plan: _GroupPlan, listing: _Listing, pool: ThreadPoolExecutor
    ) -> Iterator[_Item]:
        """Store what the listing itself holds, then yield the group's fetches, submitted
        one by one as the queue has room, and last the item that closes the group."""
        group_id = plan.group_id
        self.report.threads_checked += listing.checked
        self.report.per_group[group_id]["threads_listed"] = listing.checked
        self._emit(stage="threads", group=group_id)
        missed = 0
        if listing.conversations is not None:
            now = self.now()
            with self.archive.atomic():
                for conversation in listing.conversations:
                    self.archive.save_conversation(group_id, conversation, now)
                keep = {c["id"] for c in listing.conversations}
                self.report.items_deleted += self.archive.tombstone_conversations(
                    group_id, keep, now
                )
            with self._lock:
                self._conversations_seen.update(keep)
            missed = self._missed_by_early_stop(group_id, listing.threads, plan.stored, plan.state)
        elif listing.unordered:
            self._note(f"group {group_id}: thread list not newest-first; scanned every page")
        return self._group_items(plan, listing, pool, missed)

    def _group_items(
        self, plan: _GroupPlan, listing: _Listing, pool: ThreadPoolExecutor, missed: int
    ) -> Iterator[_Item]:
        group_id, full = plan.group_id, plan.full
        conversations = self.archive.thread_conversations(group_id)
        incomplete = incomplete_posts(self.archive, group_id) if full else {}
        for thread in listing.threads:
            if plan.failed:
                return
            known = None
            if full and thread["id"] in plan.stored:
                known = self.archive.post_change_keys(thread["id"])
            future = pool.submit(
                self._fetch_thread,
                group_id,
                thread,
                known,
                conversations.get(thread["id"]),
                incomplete.get(thread["id"], set()),
            )
            yield _Item(plan, thread, future)
        if not plan.failed:
            yield _Item(plan, None, None, listing=listing, missed=missed)

    def _store_item(self, item: _Item) -> None:
        self._check_stop()  # between two threads' transactions, never inside one
        plan = item.plan
        if plan.failed:
            return
        if item.listing is not None:
            self._close_group(plan, item.listing, item.missed)
            return
        if item.future is None or item.thread is None:
            return
        try:
            fetched = item.future.result()
        except (ForbiddenError, NotFoundError) as ex:
            self._group_unreadable(plan, ex)
            return
        if fetched is None:
            return
        self._store_thread(plan.group_id, fetched, plan.stored.get(item.thread["id"]))
        counts = self.report.per_group[plan.group_id]
        counts["threads_fetched"] += 1
        counts["posts"] += len(fetched.posts)
        self._emit(stage="posts", group=plan.group_id)

    def _close_group(self, plan: _GroupPlan, listing: _Listing, missed: int) -> None:
        """All the group's threads are stored: its tombstones and its cursor, together."""
        group_id = plan.group_id
        with self.archive.atomic():
            if plan.full:
                listed = {t["id"] for t in listing.threads}
                self.report.items_deleted += self.archive.tombstone_threads(
                    group_id, listed, self.now()
                )
                values: dict[str, Any] = {"watermark": listing.newest, "last_full_at": plan.started}
                if missed:
                    values["early_stop"] = 0
                self.archive.save_sync_state(group_id, **values)
                if missed:
                    self.archive.add_missed_changes(group_id, missed)
            else:
                self.archive.save_sync_state(
                    group_id, watermark=listing.newest, last_incremental_at=plan.started
                )
        self._groups_done += 1
        counts = self.report.per_group[group_id]
        counts["requests"] = self.graph.stats.by_mailbox.get(group_id, 0)
        self._emit(stage="group-done", group=group_id, group_counts=dict(counts))

    def _group_unreadable(self, plan: _GroupPlan, ex: ForbiddenError | NotFoundError) -> None:
        group_id = plan.group_id
        plan.failed = True
        note = f"group {group_id} cannot be read: {ex.graph_message or ex}"
        self._note(note)
        # Only a group the archive already holds mail of can have been deleted; one that
        # answers so on its first sync was never readable.
        gone = plan.full and group_id not in self._backfill
        with self.archive.atomic():
            self.archive.note_group_access(group_id, note, plan.started if gone else None)
            if gone:
                self.report.items_deleted += 1
        self._groups_done += 1
        self._emit(
            stage="group-done", group=group_id, group_counts=dict(self.report.per_group[group_id])
        )

    def _missed_by_early_stop(
        self,
        group_id: str,
        threads: list[ConversationThread],
        stored: dict[str, ThreadSignals],
        state: dict[str, Any],
    ) -> int:
        """Deliveries an earlier incremental should have seen but did not.

        A thread whose delivery time moved to a moment before the last incremental began,
        yet which the archive does not hold, was skipped by an early stop: the thread list
        is not newest-first for this group after all.
        """
        last = _when(state.get("last_incremental_at"))
        if last is None or not state.get("early_stop"):
            return 0
        missed = 0
        for thread in threads:
            old = stored.get(thread["id"])
            delivered = _when(thread.get("lastDeliveredDateTime"))
            if delivered is None or delivered >= last:
                continue
            stored_delivered = _when(old.delivered) if old is not None else None
            if old is None or stored_delivered != delivered:
                missed += 1
        if missed:
            self._note(
                f"group {group_id}: {missed} thread(s) changed before the last incremental "
                "sync but were not picked up by it; early stopping is now off for this group"
            )
        return missed

    # -- fetching and storing threads -----------------------------------------------------

    def _fetch_thread(
        self,
        group_id: str,
        thread: ConversationThread,
        known: dict[str, str | None] | None,
        archived_conversation: str | None,
        repair: set[str],
    ) -> _Fetched | None:
        """List a thread's posts (runs in a worker thread; touches no database).

        ``known`` (full reconcile of an archived thread) holds the archived changeKeys:
        then only ids and changeKeys are listed, and bodies fetched where they differ or
        where ``repair`` says the archive lacks the post's attachments.
        """
        thread_id = thread["id"]
        # Attachments are always expanded: hasAttachments leaves inline ones out, so a post
        # whose only attachments are pasted images says false, and so does its thread. The
        # expand costs a post without attachments 17 bytes ("attachments":[]), where asking
        # for the attachments of each post whose body has a cid: reference costs a request.
        graph, top, expand = self.graph, self.options.page_size, "attachments"
        posts: list[Post]
        if known is not None:
            keys = list(graph.list_posts(group_id, thread_id, select=POST_KEYS_SELECT, top=top))
            listed = {p["id"] for p in keys}
            fresh = [
                p["id"]
                for p in keys
                if known.get(p["id"]) != p.get("changeKey") or p["id"] in repair
            ]
            if not fresh:
                posts = []
            elif len(fresh) == 1:
                posts = [
                    graph.get_post(group_id, thread_id, fresh[0], select=POST_SELECT, expand=expand)
                ]
            else:
                all_posts = graph.list_posts(
                    group_id, thread_id, select=POST_SELECT, expand=expand, top=top
                )
                wanted = set(fresh)
                posts = [p for p in all_posts if p["id"] in wanted]
        else:
            posts = list(
                graph.list_posts(group_id, thread_id, select=POST_SELECT, expand=expand, top=top)
            )
            listed = {p["id"] for p in posts}
        notes: dict[str, str] = {}
        for post in posts:
            if post.get("attachments") or not (post.get("hasAttachments") or _refers_inline(post)):
                continue
            # An empty expand where there should be attachments: app-only identities get
            # one (Graph documents listing post attachments as delegated only); ask directly.
            try:
                post["attachments"] = list(graph.list_attachments(group_id, thread_id, post["id"]))
            except ForbiddenError:
                notes[post["id"]] = NOT_READABLE
                continue
            if not post["attachments"]:
                notes[post["id"]] = NOT_LISTED
        conversation_id = (
            next((p.get("conversationId") for p in posts if p.get("conversationId")), None)
            or archived_conversation
        )
        conversation = None
        if conversation_id and self._claim_conversation(conversation_id):
            try:
                conversation = dict(self.graph.get_conversation(group_id, conversation_id))
            except NotFoundError:
                conversation = {"id": conversation_id}
        # The CPU side of storing (JSON, hash, HTML to text) here, beside the network wait,
        # so the writing thread only writes.
        prepared = {p["id"]: prepare_post(p) for p in posts}
        return _Fetched(
            thread, posts, listed, conversation, conversation_id, notes, prepared, repair
        )

    def _fires(self, group_id: str) -> bool:
        return self.options.fire_on_backfill or group_id not in self._backfill

    def _claim_conversation(self, conversation_id: str) -> bool:
        """True for the first thread of a run to need this conversation's metadata."""
        with self._lock:
            if conversation_id in self._conversations_seen:
                return False
            self._conversations_seen.add(conversation_id)
            return True

    def _store_thread(self, group_id: str, fetched: _Fetched, old: ThreadSignals | None) -> None:
        now = self.now()
        thread = fetched.thread
        listed = fetched.listed_ids or set()
        truncated = len(listed) == TRUNCATION_SUSPECT
        if truncated:
            self._note(
                f"thread {thread['id']} lists exactly {TRUNCATION_SUSPECT} posts: "
                "possibly truncated by Graph"
            )
        archive = self.archive
        with archive.atomic():
            conversation_id = fetched.conversation_id
            if fetched.conversation is not None:
                archive.save_conversation(group_id, fetched.conversation, now)
            elif conversation_id and not archive.has_conversation(conversation_id):
                archive.save_conversation(group_id, {"id": conversation_id}, now)
            archive.save_thread(
                group_id,
                thread,
                conversation_id,
                now,
                post_count=len(listed),
                possibly_truncated=truncated,
            )
            known = archive.post_states(thread["id"])
            outcomes = archive.save_posts(
                group_id,
                thread["id"],
                fetched.posts,
                now,
                run_id=self.report.run_id,
                notes=fetched.notes,
                prepared=fetched.prepared,
                known=known,
                repair=fetched.repair,
            )
            for post, outcome in zip(fetched.posts, outcomes, strict=True):
                if outcome == "new":
                    self.report.items_new += 1
                    self.report.attachments_new += len(post.get("attachments") or [])
                    if self._fires(group_id) and archive.save_event(
                        group_id, thread, post, fetched.conversation, now, run_id=self.report.run_id
                    ):
                        self.report.events += 1
                elif outcome == "changed":
                    self.report.items_changed += 1
                elif outcome == "repaired":
                    self.report.attachments_new += len(post.get("attachments") or [])
                    self._repaired += 1
            if not truncated:
                self.report.items_deleted += archive.tombstone_posts(
                    thread["id"], listed, now, known=known
                )
            self.report.threads_fetched += 1


def _refers_inline(post: Post) -> bool:
    """Whether the body shows an inline image (``src="cid:..."``) that must be archived."""
    body: Mapping[str, Any] = post.get("body") or {}
    return _CID.search(body.get("content") or "") is not None


def _any(_group_id: str) -> bool:
    return True


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
