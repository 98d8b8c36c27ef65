"""Graph's budgets per mailbox: the throttle's windows and Retry-After per mailbox, the
client's in-flight caps, the profiles as settings. Time is injected: nothing sleeps."""

from __future__ import annotations

import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groupsync.config import THROTTLE_PROFILES, load_settings
from groupsync.connect import throttle_for
from groupsync.errors import ConfigError, ThrottledError
from groupsync.graph import GraphClient, mailbox_of
from groupsync.throttle import Throttle

from .conftest import GRAPH_BASE, FakeClock


def _client(handler, clock, throttle, **options) -> GraphClient:
    return GraphClient(
        GRAPH_BASE,
        lambda force_refresh=False: "t",
        transport=httpx.MockTransport(handler),
        throttle=throttle,
        clock=clock,
        **options,
    )


def test_each_mailbox_has_its_own_window(clock):
    throttle = Throttle((2, 10.0), clock=clock, per_mailbox=True)
    for mailbox in ("a", "a", "b", "b", None, None):
        throttle.acquire(mailbox).release()
    assert clock.sleeps == []  # two each: nobody waited
    assert [throttle.in_window(m) for m in ("a", "b", None)] == [2, 2, 2]
    throttle.acquire("a").release()
    assert clock.now - 1_000_000.0 == pytest.approx(10.0, abs=0.01)
    throttle.close()


def test_the_connector_profile_shares_one_window_whatever_the_mailbox(clock):
    throttle = Throttle((2, 10.0), clock=clock)
    throttle.acquire("a").release()
    throttle.acquire("b").release()
    throttle.acquire("c").release()
    assert clock.now - 1_000_000.0 == pytest.approx(10.0, abs=0.01)
    throttle.close()


@pytest.mark.parametrize(("per_mailbox", "b_waits"), [(True, 0.0), (False, 30.0)])
def test_a_retry_after_slows_the_mailbox_it_names(clock, tmp_path, per_mailbox, b_waits):
    """Shared through the file, as a cron sync and an outbox replay share it."""
    path = str(tmp_path / "t.throttle")
    one = Throttle((100, 60.0), path, clock=clock, per_mailbox=per_mailbox)
    other = Throttle((100, 60.0), path, clock=clock, per_mailbox=per_mailbox)
    one.block(30.0, "a")
    start = clock.now
    other.acquire("b").release()
    assert clock.now - start == pytest.approx(b_waits, abs=0.01)
    other.acquire("a").release()
    assert clock.now - start == pytest.approx(30.0, abs=0.01)
    one.close()
    other.close()


_calls = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", None]),
        st.floats(min_value=0.0, max_value=3.0),  # how long the answer takes
        st.floats(min_value=0.0, max_value=2.0),  # the pause before the next call
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(calls=_calls, limit=st.integers(1, 5), window=st.floats(0.5, 10.0))
def test_never_more_than_the_limit_in_any_window_per_mailbox(calls, limit, window):
    """Per mailbox, the call ``limit`` places later starts at least ``window`` after the
    earlier one's answer: no window on the server's clock sees more than ``limit``."""
    clock = FakeClock()
    throttle = Throttle((limit, window), clock=clock, per_mailbox=True)
    seen: dict[str | None, list[tuple[float, float]]] = {}
    for mailbox, took, pause in calls:
        slot = throttle.acquire(mailbox)
        started = clock.now
        clock.now += took
        slot.release()
        seen.setdefault(mailbox, []).append((started, clock.now))
        clock.now += pause
    throttle.close()
    for spans in seen.values():
        for earlier, later in zip(spans, spans[limit:], strict=False):
            assert later[0] >= earlier[1] + window - 1e-6
        for (started, _) in spans:
            window_end = started + window
            assert sum(1 for s, _ in spans if started <= s < window_end) <= limit


def test_mailbox_of_names_group_mailboxes_only():
    assert mailbox_of(f"{GRAPH_BASE}/groups/g1/threads", GRAPH_BASE) == "g1"
    assert mailbox_of(f"{GRAPH_BASE}/groups/g%2B1/threads/t/posts", GRAPH_BASE) == "g+1"
    assert mailbox_of(f"{GRAPH_BASE}/groups/g1", GRAPH_BASE) is None
    assert mailbox_of(f"{GRAPH_BASE}/groups", GRAPH_BASE) is None
    assert mailbox_of(f"{GRAPH_BASE}/me/memberOf", GRAPH_BASE) is None


@pytest.mark.parametrize(("per_mailbox", "b_delayed"), [(True, False), (False, True)])
def test_a_429_on_one_mailbox_does_not_delay_another(clock, per_mailbox, b_delayed):
    sent: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, clock.now))
        if "/groups/a/" in request.url.path:
            return httpx.Response(
                429,
                headers={"Retry-After": "30"},
                json={"error": {"code": "ApplicationThrottled", "message": "slow down"}},
            )
        return httpx.Response(200, json={"value": []})

    throttle = Throttle((100, 60.0), clock=clock, per_mailbox=per_mailbox)
    with _client(handler, clock, throttle, max_attempts=1) as graph:
        with pytest.raises(ThrottledError):
            graph.get_json("groups/a/threads")
        graph.get_json("groups/b/threads")
        assert (sent[-1][1] > sent[0][1]) is b_delayed
        graph.get_json("groups/b/threads")  # still not waiting on a's penalty
    assert sent[-1][1] - sent[0][1] == pytest.approx(30.0 if b_delayed else 0.0, abs=0.01)


def test_in_flight_caps_per_mailbox_and_per_app():
    """Eight callers, two mailboxes: never more than 1 in flight per mailbox nor 2 in all,
    and the app's two slots both get used."""
    lock = threading.Lock()
    now: dict[str, int] = {"a": 0, "b": 0, "all": 0}
    most: dict[str, int] = {"a": 0, "b": 0, "all": 0}
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        mailbox = request.url.path.split("/")[3]
        with lock:
            for key in (mailbox, "all"):
                now[key] += 1
                most[key] = max(most[key], now[key])
        release.wait(0.05)
        with lock:
            now[mailbox] -= 1
            now["all"] -= 1
        return httpx.Response(200, json={"value": []})

    with _client(
        handler, FakeClock(), Throttle(None), max_concurrency=2, mailbox_concurrency=1
    ) as graph:
        workers = [
            threading.Thread(target=graph.get_json, args=(f"groups/{m}/threads",))
            for m in "abababab"
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert graph.in_flight == 0
        assert graph.stats.by_mailbox == {"a": 4, "b": 4}
    assert most == {"a": 1, "b": 1, "all": 2}


def test_profiles_are_settings(tmp_path):
    default = load_settings({}, environ={})
    assert default.throttle_profile == "connector" and default.window == (100, 60.0)
    assert not default.profile.per_mailbox and default.max_concurrency == 4
    graph = load_settings({}, environ={"GROUPSYNC_THROTTLE_PROFILE": "graph"})
    assert graph.window == THROTTLE_PROFILES["graph"].rate == (10_000, 600.0)
    assert graph.profile.per_mailbox
    scaled = load_settings(
        {"throttle_profile": "graph", "rate": "50/1", "mailbox_concurrency": "4"}, environ={}
    )
    assert scaled.window == (50, 1.0) and scaled.mailbox_concurrency == 4
    with pytest.raises(ConfigError, match="throttle_profile must be one of connector, graph"):
        load_settings({"throttle_profile": "fast"}, environ={})
    throttle = throttle_for(
        load_settings({"throttle_profile": "graph", "db": str(tmp_path / "a.db")}, environ={})
    )
    assert throttle.per_mailbox and throttle.rate == (10_000, 600.0)
    assert (tmp_path / "a.db.throttle").stat().st_mode & 0o777 == 0o600
    throttle.close()
