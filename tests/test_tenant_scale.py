"""Many mailboxes at once: the simulator enforcing Graph's per-mailbox limits, and a sync
that keeps to them with the ``graph`` profile, several groups in flight together."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from groupsync.simulator import SimulatorOptions, make_app
from groupsync.simulator.faults import CONCURRENCY_MESSAGE
from groupsync.sync import Syncer, SyncOptions
from groupsync.throttle import Throttle

from .conftest import (
    ENGINEERING,
    GRAPH_BASE,
    MARKETING,
    SAMPLE_DATA,
    generate_tenant,
    graph_for,
    new_archive,
    rows,
    sync_archive,
)


def _get(app, path: str) -> httpx.Response:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=GRAPH_BASE) as client:
        return client.get(path, headers={"Authorization": "Bearer t"})


def test_the_mailbox_window_answers_429_with_retry_after_and_graphs_error(virtual_time):
    app = make_app(SAMPLE_DATA, SimulatorOptions(mailbox_rate=(3, 1.0)))
    path = f"groups/{MARKETING}/threads"
    assert [_get(app, path).status_code for _ in range(3)] == [200] * 3
    throttled = _get(app, path)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    error = throttled.json()["error"]
    assert error["code"] == "ApplicationThrottled"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    # Another mailbox, and the directory, have budgets of their own.
    assert _get(app, f"groups/{ENGINEERING}/threads").status_code == 200
    assert _get(app, f"groups/{MARKETING}").status_code == 200
    virtual_time.sleep(1.1)
    assert _get(app, path).status_code == 200


def _at_once(app, paths: list[str]) -> list[int]:
    """Send ``paths`` together (the simulator holds each for its latency)."""
    statuses: list[int] = []
    lock = threading.Lock()

    def one(path: str) -> None:
        status = _get(app, path).status_code
        with lock:
            statuses.append(status)

    workers = [threading.Thread(target=one, args=(p,)) for p in paths]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(statuses)


@pytest.mark.parametrize(
    ("scope", "spread", "expected"),
    [
        ("app", [MARKETING] * 5, [200] * 4 + [429]),
        ("app", [MARKETING] * 3 + [ENGINEERING] * 2, [200] * 4 + [429]),
        ("mailbox", [MARKETING] * 5, [200] * 4 + [429]),
        ("mailbox", [MARKETING] * 4 + [ENGINEERING] * 4, [200] * 8),
    ],
)
def test_the_concurrency_cap_per_app_or_per_mailbox(scope, spread, expected):
    app = make_app(
        SAMPLE_DATA, SimulatorOptions(latency_ms=400, max_concurrency=4, concurrency_scope=scope)
    )
    assert _at_once(app, [f"groups/{g}/threads" for g in spread]) == expected
    if 429 in expected:
        refused = [e for e in app.log.entries if e[3] == 429]
        assert len(refused) == 1


def test_concurrency_429_carries_the_reported_text():
    app = make_app(SAMPLE_DATA, SimulatorOptions(latency_ms=400, max_concurrency=1))
    answers: list[httpx.Response] = []
    workers = [
        threading.Thread(target=lambda: answers.append(_get(app, f"groups/{MARKETING}/threads")))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 1
    assert refused[0].json()["error"]["message"] == CONCURRENCY_MESSAGE
    assert refused[0].headers["Retry-After"] == "1"


def _archive(db) -> list[tuple]:
    return rows(
        db,
        "select group_id, thread_id, id, changeKey, body_text, deleted_at is null from posts "
        "order by id",
    )


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    return generate_tenant(
        tmp_path_factory.mktemp("tenant"), groups=6, threads=90, posts=300, attachments=12, seed=16
    )


def test_graph_profile_against_graphs_limits_gets_no_429_and_the_same_archive(
    tmp_path, tenant, virtual_time
):
    """A per-mailbox window scaled down to 20 per second, 4 in flight for the app: the
    graph profile keeps to both, and archives exactly what an unthrottled sync does."""
    plain = sync_archive(make_app(tenant), tmp_path / "plain.db")
    assert plain.status == "complete"

    limited = make_app(tenant, SimulatorOptions(mailbox_rate=(20, 1.0), max_concurrency=4))
    clock = virtual_time
    throttle = Throttle((20, 1.0), clock=clock, per_mailbox=True)
    report = sync_archive(
        limited,
        tmp_path / "limited.db",
        graph_options={"clock": clock, "throttle": throttle, "max_concurrency": 4},
    )
    assert report.status == "complete" and report.throttled == 0
    assert [e for e in limited.log.entries if e[3] == 429] == []
    assert len(report.groups) == 6 and set(report.per_group) == set(report.groups)
    assert sum(g["posts"] for g in report.per_group.values()) == 300
    assert _archive(tmp_path / "limited.db") == _archive(tmp_path / "plain.db")
    assert len(_archive(tmp_path / "plain.db")) == 300
    # The window really bound: 20 per mailbox per second, and the run took virtual time.
    assert report.throttle_wait > 0


def test_per_mailbox_caps_against_the_per_mailbox_reading(tmp_path, tenant, virtual_time):
    limited = make_app(
        tenant,
        SimulatorOptions(mailbox_rate=(20, 1.0), max_concurrency=4, concurrency_scope="mailbox"),
    )
    clock = virtual_time
    throttle = Throttle((20, 1.0), clock=clock, per_mailbox=True)
    report = sync_archive(
        limited,
        tmp_path / "a.db",
        graph_options={
            "clock": clock,
            "throttle": throttle,
            "max_concurrency": 16,
            "mailbox_concurrency": 4,
        },
        workers=16,
        spread=32,
    )
    assert report.status == "complete" and report.throttled == 0
    assert len(_archive(tmp_path / "a.db")) == 300


def test_progress_reports_each_group_and_the_run(tmp_path, tenant):
    events: list[dict] = []

    with graph_for(make_app(tenant)) as graph, new_archive(tmp_path / "a.db") as archive:
        report = Syncer(archive, graph, options=SyncOptions(), progress=events.append).run()
    done = [e for e in events if e["stage"] == "group-done"]
    assert sorted(e["group"] for e in done) == sorted(report.groups)
    assert [e["groups_done"] for e in done] == list(range(1, len(report.groups) + 1))
    assert all(e["groups_total"] == 6 for e in events)
    for e in done:
        assert e["group_counts"] == report.per_group[e["group"]]
        assert e["group_counts"]["requests"] > e["group_counts"]["threads_fetched"] > 0
    assert sum(g["posts"] for g in report.per_group.values()) == report.items_new == 300
    assert done[-1]["requests"] == report.requests
    # Groups overlap: a later group is listed before an earlier one is done.
    stages = [(e["stage"], e["group"]) for e in events if e["stage"] in ("group", "group-done")]
    first_done = stages.index(("group-done", report.groups[0]))
    assert stages.index(("group", report.groups[1])) < first_done


@pytest.mark.e2e
def test_sync_cli_with_the_graph_profile_keeps_a_window_per_mailbox(tmp_path):
    """The real command: ``--throttle-profile graph`` against a simulator whose per-mailbox
    window is scaled down to 30 per second; no 429, one window row per mailbox."""
    from groupsync.simulator import serve_in_thread

    from .conftest import run_cli

    app = make_app(SAMPLE_DATA, SimulatorOptions(mailbox_rate=(30, 1.0)))
    db = tmp_path / "a.db"
    with serve_in_thread(app) as url:
        result = run_cli(
            "sync", "--joined", "--json", "--no-index", "--throttle-profile", "graph",
            "--max-concurrency", "4", "--mailbox-concurrency", "2",
            db=db,
            env={"GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t",
                 "GROUPSYNC_RATE": "30/1", "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["status"] == "complete" and report["throttled"] == 0
    assert report["items_new"] > 0 and set(report["per_group"]) == set(report["groups"])
    keys = {k for (k,) in rows(f"{db}.throttle", "select distinct key from calls")}
    assert {k.rsplit("|mailbox:", 1)[1] for k in keys} >= set(report["groups"])
    assert [e for e in app.log.entries if e[3] == 429] == []
    assert (tmp_path / "a.db.throttle").stat().st_mode & 0o777 == 0o600


def test_interleaved_groups_stopped_midway_resume_to_the_same_archive(tmp_path, tenant):
    """``spread`` > 1 stores threads of several groups in turn; a run stopped between two
    threads leaves whole threads, and the next run completes the same archive."""
    sync_archive(make_app(tenant), tmp_path / "plain.db")
    stop = threading.Event()
    stored: list[dict] = []

    def progress(event: dict) -> None:
        if event["stage"] == "posts":
            stored.append(event)
            if len(stored) == 25:
                stop.set()

    app = make_app(tenant)
    db = tmp_path / "resumed.db"
    with graph_for(app) as graph, new_archive(db) as archive:
        options = SyncOptions(workers=4, spread=8)
        first = Syncer(archive, graph, options=options, progress=progress, stop=stop).run()
    assert first.status == "stopped" and 0 < first.items_new < 300
    order = [e["group"] for e in stored]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches > len(set(order)) - 1  # groups were stored in turn, not one by one
    again = sync_archive(app, db, workers=4, spread=8)
    assert again.status == "complete" and first.items_new + again.items_new == 300
    assert _archive(db) == _archive(tmp_path / "plain.db")
