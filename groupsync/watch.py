"""Scheduled sync: the polling loop behind ``groupsync watch`` and the "new email" trigger.

Every ``interval`` (start to start) one iteration: replay the outbox (with ``send``),
sync incrementally (a group gets its full reconcile when its last is older than
``full_every``, which the archive remembers across restarts), hand the events it
recorded to ``on_event`` (``--jsonl``) and every undelivered event to the hook.

A transient failure (Graph errors, a network gone, a token that cannot be refreshed) ends
the iteration; the loop logs it and waits ``interval × 2^(failures-1)``, at most
``max_backoff``, then goes on. Anything else (the archive unusable) ends the loop. Setting
``stop`` ends it between two threads of mail: what was committed stays committed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .archive import Archive, utc_now
from .errors import AuthError, GraphError
from .events import (
    Hook,
    HookOutputLog,
    deliver_pending,
    event_payload,
    iter_events,
    latest_event_id,
)
from .graph import GraphClient
from .outbox import Outbox
from .sync import Syncer, SyncOptions
from .throttle import Throttle

__all__ = ["WatchOptions", "WatchReport", "Watcher", "parse_duration"]

TRANSIENT = (GraphError, AuthError)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d``."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(f"not a duration: {text!r} (try 60, 90s, 15m, 24h or 7d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"a duration must be more than 0 seconds: {text!r}")
    return seconds


@dataclass
class WatchOptions:
    """What to watch and how often.

    ``group_ids``/``joined``/``all_groups`` as for ``sync``; ``interval`` seconds between
    iteration starts; ``full_every`` seconds between a group's full reconciles; ``send``
    replays the outbox each iteration; ``fire_on_backfill`` makes a group's first sync fire
    events for its history; ``max_backoff`` caps the wait after failures;
    ``max_iterations`` ends the loop after that many (``None``: until stopped).
    """

    group_ids: list[str] = field(default_factory=list)
    joined: bool = False
    all_groups: bool = False
    interval: float = 60.0
    full_every: float = 86400.0
    send: bool = False
    fire_on_backfill: bool = False
    max_backoff: float = 900.0
    workers: int = 4
    max_iterations: int | None = None


@dataclass
class WatchReport:
    iterations: int = 0
    failures: int = 0
    runs: list[int] = field(default_factory=list)
    events: int = 0
    delivered: int = 0
    stopped: bool = False


class Watcher:
    """The loop. Parameters: ``archive`` (read-write, its writer lock held by the caller),
    ``graph``, ``options``, ``identity`` (for the audit), ``hook`` (called once per event;
    raises ``HookError`` when it did not take it), ``hook_outputs`` (keeps what the hook
    printed, outside the archive), ``on_event`` (each event recorded while
    watching, e.g. printed as JSON lines), ``outbox`` and ``sending_cap`` (for ``send``),
    ``log`` (one dict per thing worth saying), ``stop`` (set it to end the loop), and for
    tests ``clock`` (monotonic seconds), ``wait`` (sleeps up to N seconds, returns early
    when ``stop`` is set) and ``now`` (Graph-style UTC times).
    """

    def __init__(
        self,
        archive: Archive,
        graph: GraphClient,
        *,
        options: WatchOptions | None = None,
        identity: str | None = None,
        hook: Hook | None = None,
        hook_outputs: HookOutputLog | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        outbox: Outbox | None = None,
        sending_cap: Throttle | None = None,
        log: Callable[[dict[str, Any]], None] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], Any] | None = None,
        now: Callable[[], str] = utc_now,
    ) -> None:
        self.archive = archive
        self.graph = graph
        self.options = options or WatchOptions()
        self.identity = identity
        self.hook = hook
        self.hook_outputs = hook_outputs
        self.on_event = on_event
        self.outbox = outbox
        self.sending_cap = sending_cap
        self._log = log
        self.stop = stop or threading.Event()
        self.clock = clock
        self.wait = wait or self.stop.wait
        self.now = now
        self.report = WatchReport()
        self._seen_event = 0

    def log(self, event: str, level: str = "info", **fields: Any) -> None:
        if self._log is not None:
            self._log({"at": self.now(), "level": level, "event": event, **fields})

    def run(self) -> WatchReport:
        """Iterate until ``stop`` is set (or ``max_iterations``); never raises on a transient
        error. Returns what happened."""
        options = self.options
        self._seen_event = latest_event_id(self.archive)
        self.log(
            "watch.start",
            groups=options.group_ids or ("joined" if options.joined else "archived"),
            interval=options.interval,
            full_every=options.full_every,
            send=options.send,
            hook=self.hook is not None,
        )
        failures = 0
        while not self.stop.is_set():
            started = self.clock()
            ok = self.iteration()
            self.report.iterations += 1
            if ok:
                failures = 0
                delay = max(0.0, options.interval - (self.clock() - started))
            else:
                failures += 1
                self.report.failures += 1
                delay = min(options.max_backoff, options.interval * 2 ** (failures - 1))
                self.log("backoff", "warning", failures=failures, retry_in=round(delay, 3))
            if self.stop.is_set():
                break
            if options.max_iterations and self.report.iterations >= options.max_iterations:
                break
            self.wait(delay)
        self.report.stopped = self.stop.is_set()
        self.log(
            "watch.stop",
            iterations=self.report.iterations,
            failures=self.report.failures,
            events=self.report.events,
            delivered=self.report.delivered,
            reason="signal" if self.report.stopped else "done",
        )
        return self.report

    def iteration(self) -> bool:
        """One pass: send, sync, hand over events. ``False`` after a transient failure."""
        ok = True
        try:
            if self.options.send and self.outbox is not None:
                sent = self.outbox.send(self.graph, sending_cap=self.sending_cap, stop=self.stop)
                if sent.sent or sent.failed or sent.uncertain:
                    self.log(
                        "send", sent=sent.sent, failed=sent.failed, waiting=sent.waiting,
                        uncertain=sent.uncertain,
                    )
            if not self.stop.is_set():
                self._sync()
        except TRANSIENT as ex:
            ok = False
            self.log("error", "error", kind=type(ex).__name__, error=str(ex))
        # Events recorded before a failure are committed: hand them over all the same.
        self._emit_new_events()
        if self.hook is not None and not self.stop.is_set():
            delivery = deliver_pending(
                self.archive, self.hook, now=self.now, log=self._log_hook,
                should_stop=self.stop.is_set, outputs=self.hook_outputs,
            )
            self.report.delivered += delivery.delivered
        return ok

    def _sync(self) -> None:
        options = self.options
        syncer = Syncer(
            self.archive,
            self.graph,
            options=SyncOptions(
                full_max_age=timedelta(seconds=options.full_every),
                workers=options.workers,
                fire_on_backfill=options.fire_on_backfill,
            ),
            identity=self.identity,
            now=self.now,
            stop=self.stop,
        )
        started = self.clock()
        try:
            report = syncer.run(
                options.group_ids, joined=options.joined, all_groups=options.all_groups
            )
        finally:
            if syncer.report.run_id:
                self.report.runs.append(syncer.report.run_id)
        self.report.events += report.events
        self.log(
            "sync",
            run_id=report.run_id,
            mode=report.mode,
            status=report.status,
            new=report.items_new,
            changed=report.items_changed,
            deleted=report.items_deleted,
            events=report.events,
            requests=report.requests,
            seconds=round(self.clock() - started, 3),
            notes=report.notes or None,
        )

    def _emit_new_events(self) -> None:
        for row in iter_events(self.archive, after_id=self._seen_event):
            self._seen_event = row["id"]
            if self.on_event is not None:
                self.on_event(event_payload(row))

    def _log_hook(self, entry: dict[str, Any]) -> None:
        fields = {k: v for k, v in entry.items() if k not in {"event", "level"}}
        self.log(entry["event"], entry.get("level", "info"), **fields)
