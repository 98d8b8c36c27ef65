"""Throttling and failure injection, modelled on what Graph does to Outlook workloads."""

from __future__ import annotations

import math
import random
import threading
from collections import deque

from .responses import SimHTTPError

CONCURRENCY_MESSAGE = "Application is over its MailboxConcurrency limit."
RATE_MESSAGE = "Too many requests. Application is over its MailboxRequests limit; retry later."


class RateLimiter:
    """A sliding window: more than ``calls`` arrivals within ``seconds`` are answered 429.

    Rejected requests stay in the window, as Graph keeps counting requests while it throttles,
    so a client that retries before ``Retry-After`` only extends its own penalty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque()

    def check(self, now: float, calls: int, seconds: float) -> None:
        """Record an arrival at ``now`` and raise a 429 if the window is over ``calls``."""
        with self._lock:
            arrivals = self._arrivals
            arrivals.append(now)
            while arrivals and arrivals[0] <= now - seconds:
                arrivals.popleft()
            if len(arrivals) <= calls:
                return
            # The next request fits once all but calls-1 of the current window have left it.
            frees_at = arrivals[len(arrivals) - calls] + seconds
        wait = max(1, math.ceil(frees_at - now))
        raise SimHTTPError(429, "ApplicationThrottled", RATE_MESSAGE, [("Retry-After", str(wait))])


class ConcurrencyGate:
    """Counts requests in flight; more than the limit are refused rather than queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0

    def enter(self, limit: int) -> None:
        """Take a slot, or raise Graph's MailboxConcurrency 429 (the slot is then released)."""
        with self._lock:
            self.in_flight += 1
            over = limit > 0 and self.in_flight > limit
            if over:
                self.in_flight -= 1
        if over:
            raise SimHTTPError(
                429, "ApplicationThrottled", CONCURRENCY_MESSAGE, [("Retry-After", "1")]
            )

    def leave(self) -> None:
        """Give the slot back."""
        with self._lock:
            self.in_flight -= 1


class FaultInjector:
    """Seeded random failures, so a failing test run can be replayed exactly."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._before = random.Random(f"groupsync-sim-fail-{seed}")
        self._after = random.Random(f"groupsync-sim-write504-{seed}")

    def before(self, rate: float) -> None:
        """With probability ``rate`` fail the request before it touches any state."""
        if rate <= 0:
            return
        with self._lock:
            if self._before.random() >= rate:
                return
            gateway = self._before.random() < 0.5
            retry_after = self._before.random() < 0.5
        if gateway:
            raise gateway_timeout()
        headers = [("Retry-After", "1")] if retry_after else []
        raise SimHTTPError(
            503, "serviceNotAvailable", "The service is temporarily unavailable.", headers
        )

    def after_write(self, rate: float) -> bool:
        """Whether a write that was just applied should still be answered 504."""
        if rate <= 0:
            return False
        with self._lock:
            return self._after.random() < rate


def gateway_timeout() -> SimHTTPError:
    """The 504 a gateway gives when the backend did not answer in time."""
    return SimHTTPError(504, "GatewayTimeout", "The gateway did not receive a timely response.")


def service_down() -> SimHTTPError:
    """What every request gets while the simulator is switched down."""
    return SimHTTPError(
        503,
        "serviceNotAvailable",
        "The service is temporarily unavailable.",
        [("Retry-After", "1")],
    )


class MailboxLimits:
    """Graph's Outlook limits kept per group mailbox: a request window (10,000 per 10 minutes
    per app and mailbox in Graph; scaled down for tests) and, under the per-mailbox reading
    of the concurrency cap, a gate per mailbox. Requests that name no mailbox (``/groups``,
    ``/me``) are directory calls and count in neither."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, RateLimiter] = {}
        self._gates: dict[str, ConcurrencyGate] = {}

    def check_window(self, mailbox: str, now: float, calls: int, seconds: float) -> None:
        """Count an arrival in ``mailbox``'s window; 429 with Retry-After when over."""
        with self._lock:
            window = self._windows.setdefault(mailbox, RateLimiter())
        window.check(now, calls, seconds)

    def gate(self, mailbox: str) -> ConcurrencyGate:
        """The mailbox's in-flight counter (per-mailbox reading of the concurrency cap)."""
        with self._lock:
            return self._gates.setdefault(mailbox, ConcurrencyGate())


def mailbox_of(segments: list[str]) -> str | None:
    """The group mailbox a request reaches (``/groups/{id}/...``), or ``None``."""
    if len(segments) >= 3 and segments[0].lower() == "groups":
        return segments[1]
    return None
