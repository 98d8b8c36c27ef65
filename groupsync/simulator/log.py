"""The simulator's request log, so tests can check how a client paced its calls."""

from __future__ import annotations

import threading
from collections import Counter

LogEntry = tuple[float, str, str, int]


class RequestLog:
    """Every ``/v1.0`` request as ``(time.time() at arrival, method, endpoint template, status)``.

    Throttled and failed requests are recorded too, because Graph counts them against the
    quota. Endpoint templates look like ``/groups/{id}/threads``; ``per_endpoint`` keys add
    the method (``GET /groups/{id}/threads``). Safe to use from several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LogEntry] = []

    @property
    def entries(self) -> list[LogEntry]:
        """A snapshot copy, so callers can iterate while requests keep arriving."""
        with self._lock:
            return list(self._entries)

    def record(self, arrived: float, method: str, endpoint: str, status: int) -> None:
        """Append one finished request."""
        with self._lock:
            self._entries.append((arrived, method, endpoint, status))

    def count(self, endpoint: str | None = None, method: str | None = None) -> int:
        """How many requests matched; ``endpoint`` may be a template with or without method."""
        return sum(1 for entry in self.entries if _matches(entry, endpoint, method))

    def per_endpoint(self) -> dict[str, int]:
        """Request counts keyed by ``"METHOD /template"``."""
        counts = Counter(f"{method} {endpoint}" for _, method, endpoint, _ in self.entries)
        return dict(sorted(counts.items()))

    def max_in_window(self, seconds: float) -> int:
        """The most requests whose arrival times fit in any closed window of ``seconds``."""
        times = sorted(entry[0] for entry in self.entries)
        best = 0
        start = 0
        for end, arrived in enumerate(times):
            while arrived - times[start] > seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def reset(self) -> None:
        """Forget everything recorded so far (the rate limiter keeps its own memory)."""
        with self._lock:
            self._entries.clear()


def _matches(entry: LogEntry, endpoint: str | None, method: str | None) -> bool:
    _, entry_method, entry_endpoint, _ = entry
    if method is not None and entry_method != method.upper():
        return False
    if endpoint is None:
        return True
    if " " in endpoint:
        return f"{entry_method} {entry_endpoint}" == endpoint
    return entry_endpoint == endpoint
