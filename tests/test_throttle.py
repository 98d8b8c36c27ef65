from __future__ import annotations

import multiprocessing
import time

import pytest

from groupsync.throttle import Throttle


def test_allows_limit_then_waits_for_the_oldest_to_leave(clock):
    throttle = Throttle((3, 10.0), clock=clock)
    starts = []
    for _ in range(7):
        slot = throttle.acquire()
        starts.append(clock.now)
        slot.release()
    assert starts[:3] == [starts[0]] * 3
    # The 4th waits until the 1st's answer is 10 s old; the window then keeps sliding.
    assert starts[3] - starts[0] == pytest.approx(10.0, abs=0.01)
    assert starts[6] - starts[3] == pytest.approx(10.0, abs=0.01)
    assert throttle.stats.waits == 2  # the 4th and the 7th; the 5th and 6th follow the 4th
    assert throttle.stats.acquired == 7
    throttle.close()


def test_window_counts_from_when_the_answer_arrived(clock):
    throttle = Throttle((1, 10.0), clock=clock)
    slot = throttle.acquire()
    clock.now += 7.0  # a slow answer: the server may have seen it late
    slot.release()
    released = clock.now
    throttle.acquire().release()
    assert clock.now - released == pytest.approx(10.0, abs=0.01)
    throttle.close()


def test_calls_still_in_flight_always_count(clock):
    throttle = Throttle((2, 1.0), clock=clock)
    a = throttle.acquire()
    b = throttle.acquire()
    clock.now += 5.0
    assert throttle.in_window() == 2
    a.release()
    b.release()
    clock.now += 1.1
    assert throttle.in_window() == 0
    throttle.close()


def test_a_dead_processes_call_is_let_go_after_the_lease(clock, tmp_path):
    path = str(tmp_path / "t.throttle")
    dead = Throttle((1, 1.0), path, clock=clock, lease=30.0)
    dead.acquire()  # never released: the process "died"
    dead.close()
    alive = Throttle((1, 1.0), path, clock=clock, lease=30.0)
    before = clock.now
    alive.acquire().release()
    assert clock.now - before == pytest.approx(31.0, abs=0.1)
    alive.close()


def test_block_stops_everyone_sharing_the_file(clock, tmp_path):
    path = str(tmp_path / "t.throttle")
    one = Throttle((100, 60.0), path, key="k", clock=clock)
    two = Throttle((100, 60.0), path, key="k", clock=clock)
    other = Throttle((100, 60.0), path, key="another-connection", clock=clock)
    one.block(12.5)
    start = clock.now
    other.acquire().release()
    assert clock.now == start
    two.acquire().release()
    assert clock.now - start == pytest.approx(12.5, abs=0.01)
    assert two.stats.blocked == pytest.approx(12.5, abs=0.01)
    for t in (one, two, other):
        t.close()


def test_no_rate_means_no_waiting(clock):
    throttle = Throttle(None, clock=clock)
    for _ in range(1000):
        throttle.acquire().release()
    assert clock.sleeps == []
    throttle.close()


def _hammer(path: str, n: int, out) -> None:
    throttle = Throttle((20, 0.5), path, key="shared")
    stamps = []
    for _ in range(n):
        with throttle.acquire():
            stamps.append(time.time())
    throttle.close()
    out.put(stamps)


def test_two_processes_share_one_window(tmp_path):
    """Real processes, real clock: 80 calls at 20 per 0.5 s take at least 1.5 s together."""
    path = str(tmp_path / "shared.throttle")
    Throttle((20, 0.5), path).close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(path, 40, out)) for _ in range(2)]
    for p in procs:
        p.start()
    stamps = sorted(out.get(timeout=60) + out.get(timeout=60))
    for p in procs:
        p.join(timeout=60)
    out.close()
    out.join_thread()
    assert len(stamps) == 80
    # In any 0.5 s window, at most 20 calls started.
    j = 0
    for i in range(len(stamps)):
        while stamps[i] - stamps[j] > 0.5:
            j += 1
        assert i - j + 1 <= 20
