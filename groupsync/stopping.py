"""Ending a long run cleanly: a signal becomes an event the library checks between units
of work (a thread of mail, an outbox item), so what was committed stays committed.

``sync --send``, ``send`` and ``watch`` all stop this way: the first signal sets the
event, a second Ctrl-C raises ``KeyboardInterrupt`` to quit at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stopping"]


@contextmanager
def stopping(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
    *,
    on_stop: Callable[[int], None] | None = None,
) -> Iterator[threading.Event]:
    """An event set by the first of ``signals``; the previous handlers come back on exit.

    ``on_stop`` is called once, with the signal number, when the event is first set (to
    tell a person what happens next). Off the main thread, where Python cannot install
    handlers, the event is only ever set by whoever holds it.
    """
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.set()
        if on_stop is not None:
            on_stop(signum)

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {number: signal.signal(number, handle) for number in signals}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
