"""The sync engine in-process against the simulator, as ``groupsync sync`` runs it; the
real CLI process only where the process is what is tested (its exit code and message)."""

from __future__ import annotations

import base64
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread
from groupsync.throttle import Throttle

from .conftest import (
    ANNOUNCEMENTS,
    ENGINEERING,
    JOINED,
    MARKETING,
    PARIS,
    SAMPLE_DATA,
    generate_tenant,
    new_archive,
    rows,
    run_cli,
    sync_archive,
)


def sync(app: Any, db: Path, group_ids: tuple[str, ...] = (), **options: Any) -> dict[str, Any]:
    """One sync run as ``groupsync sync --json`` makes it (SyncOptions ``options``), which
    must not fail; its report as the CLI prints it."""
    report = sync_archive(app, db, group_ids, **options)
    assert not report.error, report.error
    return report.as_dict()


def sim_threads(app, group_id):
    """The simulator's threads of a group, newest first, as Graph lists them."""
    return sorted(
        app.state.threads(group_id), key=lambda t: t["lastDeliveredDateTime"], reverse=True
    )


def test_first_sync_archives_every_joined_group(tmp_path, sim):
    db = tmp_path / "a.db"
    report = sync(sim, db)
    assert report["status"] == "complete"
    assert sorted(report["groups"]) == sorted(JOINED)
    expected_posts = sum(
        len(t["posts"]) for g in JOINED for c in sim.state.conversations(g) for t in c["threads"]
    )
    assert report["items_new"] == expected_posts
    assert rows(db, "select count(*) from posts")[0][0] == expected_posts
    assert rows(db, "select count(*) from post_versions")[0][0] == expected_posts
    # Every attachment with bytes is byte-for-byte the simulator's.
    checked = 0
    for g in JOINED:
        for c in sim.state.conversations(g):
            for t in c["threads"]:
                for p in t["posts"]:
                    for a in p.get("attachments") or []:
                        if not a.get("contentBytes"):
                            continue
                        (stored,) = rows(
                            db,
                            "select b.content from attachments a join blobs b using (sha256) "
                            "where a.post_id = ? and a.id = ?",
                            (p["id"], a["id"]),
                        )
                        assert stored[0] == base64.b64decode(a["contentBytes"])
                        checked += 1
    assert checked >= 5


def test_incremental_then_full_picks_up_every_upstream_change(tmp_path, sim):
    db = tmp_path / "a.db"
    sync(sim, db)
    # Upstream: a reply to an old thread, an edit, a new thread, a deletion, an attachment.
    threads = sim_threads(sim, MARKETING)
    old_thread = threads[-1]
    new_post = sim.add_post(
        MARKETING,
        old_thread["id"],
        {
            "body": {"contentType": "html", "content": "<p>Late reply on an old thread</p>"},
        },
    )
    edited_thread = threads[len(threads) // 2]
    edited = edited_thread["posts"][0]
    old_key = edited["changeKey"]
    sim.edit_post(MARKETING, edited_thread["id"], edited["id"], content="<p>Edited body</p>")
    started = sim.new_thread(
        ENGINEERING,
        "Brand new thread",
        {
            "body": {"contentType": "html", "content": "<p>Hello</p>"},
        },
    )
    doomed = sim_threads(sim, PARIS)[-1]
    sim.delete_thread(PARIS, doomed["id"])
    target_thread = sim_threads(sim, ENGINEERING)[-1]
    target = target_thread["posts"][-1]
    sim.add_attachment(
        ENGINEERING,
        target_thread["id"],
        target["id"],
        "notes.txt",
        "text/plain",
        "hello attachment ✓".encode(),
    )

    incremental = report = sync(sim, db)
    assert report["mode"] == "incremental"
    assert report["items_new"] == 2  # the reply and the new thread's post
    assert rows(db, "select 1 from posts where id = ?", (new_post["id"],))
    assert rows(db, "select topic from threads where id = ?", (started["id"],)) == [
        ("Brand new thread",)
    ]
    # Edits and deletions do not move a thread's delivery time: full reconcile's job.
    assert rows(db, "select deleted_at from threads where id = ?", (doomed["id"],)) == [(None,)]

    report = sync(sim, db, full=True)
    assert report["mode"] == "full"
    # The edit; the post that got an attachment, unless its thread's hasAttachments
    # flipped and the incremental sync already took it.
    assert report["items_changed"] + incremental["items_changed"] == 2
    versions = rows(
        db,
        "select changeKey from post_versions where post_id = ? order by first_seen_at",
        (edited["id"],),
    )
    assert [v[0] for v in versions][0] == old_key and len(versions) == 2
    assert rows(db, "select body_content from posts where id = ?", (edited["id"],)) == [
        ("<p>Edited body</p>",)
    ]
    (deleted_at,) = rows(db, "select deleted_at from threads where id = ?", (doomed["id"],))[0]
    assert deleted_at is not None
    assert rows(
        db, "select count(*) from posts where thread_id = ? and deleted_at is null", (doomed["id"],)
    ) == [(0,)]
    assert rows(db, "select count(*) from posts where thread_id = ?", (doomed["id"],))[0][0] > 0
    (content,) = rows(
        db,
        "select b.content from attachments a join blobs b using (sha256) "
        "where a.post_id = ? and a.name = 'notes.txt'",
        (target["id"],),
    )[0]
    assert content == "hello attachment ✓".encode()


def test_request_costs(tmp_path, sim):
    db = tmp_path / "a.db"
    sync(sim, db)
    sim.log.reset()
    report = sync(sim, db)
    # A sync with nothing new: one request per group (the thread list is newest-first).
    assert sim.log.count() == len(JOINED) == report["requests"]

    sim.log.reset()
    thread = sim_threads(sim, ENGINEERING)[3]
    sim.add_post(
        ENGINEERING,
        thread["id"],
        {
            "body": {"contentType": "text", "content": "one more"},
        },
    )
    report = sync(sim, db)
    assert report["items_new"] == 1
    assert sim.log.count() <= len(JOINED) + 2, sim.log.per_endpoint()


def minimum_full_requests(app, groups, top):
    """Fewest calls Graph allows to read every group's mail once, page size ``top``:
    the memberOf pages, then per group its conversation pages and thread pages, and per
    thread its post pages (attachments come inside them with $expand)."""
    page = lambda n: max(1, math.ceil(n / top))  # noqa: E731
    total = page(len(app.state.member_groups(app.state.me["id"])))
    for g in groups:
        conversations = app.state.conversations(g)
        threads = [t for c in conversations for t in c["threads"]]
        total += page(len(conversations)) + page(len(threads))
        total += sum(page(len(t["posts"])) for t in threads)
    return total


def test_full_sync_costs_at_most_5_percent_over_the_minimum(tmp_path):
    tenant = generate_tenant(
        tmp_path / "tenant", groups=3, threads=120, posts=900, attachments=60, seed=3
    )
    app = make_app(tenant, SimulatorOptions(max_top=50))
    report = sync(app, tmp_path / "a.db", full=True)
    groups = report["groups"]
    minimum = minimum_full_requests(app, groups, 50)
    assert report["items_new"] == 900
    assert app.log.count() <= minimum * 1.05, (app.log.count(), minimum, app.log.per_endpoint())


def test_random_thread_order_never_stops_early(tmp_path):
    app = make_app(SAMPLE_DATA, SimulatorOptions(thread_order="random", page_size=3))
    db = tmp_path / "a.db"
    sync(app, db)
    thread = sim_threads(app, PARIS)[-1]
    app.add_post(PARIS, thread["id"], {"body": {"contentType": "text", "content": "x"}})
    report = sync(app, db)
    assert report["items_new"] == 1
    assert any("not newest-first" in n for n in report["notes"])


def test_public_group_by_id_and_truncated_threads(tmp_path):
    app = make_app(SAMPLE_DATA, SimulatorOptions(truncate_posts_at=2))
    db = tmp_path / "a.db"
    report = sync(app, db, [ANNOUNCEMENTS])
    assert report["groups"] == [ANNOUNCEMENTS]
    assert rows(db, "select count(*) from threads where group_id = ?", (ANNOUNCEMENTS,))[0][0]


def test_app_only_attachments_are_noted_not_fatal(tmp_path, sim):
    db = tmp_path / "a.db"
    report = sync_archive(sim, db, [MARKETING], token="app-only-token")
    assert not report.error, report.error
    notes = rows(db, "select count(*) from posts where attachments_note is not null")[0][0]
    assert notes >= 1
    assert rows(db, "select count(*) from attachments")[0][0] == 0


@pytest.mark.e2e
def test_unknown_group_fails_cleanly(tmp_path):
    """The process: exit status 1 and one line on stderr."""
    with serve_in_thread(make_app(SAMPLE_DATA)) as url:
        result = run_cli(
            "sync",
            "--group",
            "00000000-0000-4000-8000-000000000000",
            db=tmp_path / "a.db",
            env={"GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"},
            timeout=60,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert len(stderr.strip().splitlines()) == 1
    assert "not found" in stderr


def _first_listed_after_reply(seed: int) -> tuple[str, str]:
    """Which Paris thread a random-order simulator lists first after a reply to another."""
    import httpx

    app = make_app(
        SAMPLE_DATA, SimulatorOptions(thread_order="random", page_size=1, max_top=1, seed=seed)
    )
    reply_to = sim_threads(app, PARIS)[-1]["id"]
    app.add_post(PARIS, reply_to, {"body": {"contentType": "text", "content": "x"}})
    with httpx.Client(
        transport=httpx.WSGITransport(app=app), headers={"Authorization": "Bearer t"}
    ) as http:
        first = http.get(f"http://sim/v1.0/groups/{PARIS}/threads").json()["value"][0]["id"]
    return reply_to, first


def test_full_reconcile_turns_early_stopping_off_when_it_missed_a_change(tmp_path):
    """One thread per page in random order: every page looks ordered, so the incremental
    sync stops early and misses a reply; the full reconcile notices and turns it off."""
    seed = next(s for s in range(50) if len(set(_first_listed_after_reply(s))) == 2)
    app = make_app(
        SAMPLE_DATA, SimulatorOptions(thread_order="random", page_size=1, max_top=1, seed=seed)
    )
    db = tmp_path / "a.db"
    sync(app, db, [PARIS])
    reply_to = sim_threads(app, PARIS)[-1]
    app.add_post(PARIS, reply_to["id"], {"body": {"contentType": "text", "content": "x"}})
    missed = sync(app, db, [PARIS])
    full = sync(app, db, [PARIS], full=True)
    assert (missed["items_new"], full["items_new"]) == (0, 1)
    assert any("early stopping is now off" in n for n in full["notes"])
    assert rows(
        db, "select early_stop, missed_changes from _sync_state where group_id = ?", (PARIS,)
    ) == [(0, 1)]
    again = sim_threads(app, PARIS)[-1]
    app.add_post(PARIS, again["id"], {"body": {"contentType": "text", "content": "y"}})
    assert sync(app, db, [PARIS])["items_new"] == 1


def test_throttled_sync_keeps_the_connectors_limit_and_uses_its_budget(tmp_path, virtual_time):
    """The real limit, 100 calls per 60 s, on a tenant needing ~160 calls: one wait of
    about a minute, never more than 100 calls in any 60 s, and no idle window. The throttle,
    the client and the simulator's request log share a virtual clock: no real minute."""
    tenant = generate_tenant(
        tmp_path / "tenant", groups=1, threads=150, posts=320, attachments=10, seed=4
    )
    app = make_app(tenant)
    clock = virtual_time
    throttle = Throttle((100, 60.0), clock=clock)
    report = sync_archive(
        app, tmp_path / "a.db", graph_options={"clock": clock, "throttle": throttle}
    ).as_dict()
    assert report["status"] == "complete" and report["items_new"] == 320
    calls = app.log.count()
    assert calls > 150
    assert app.log.max_in_window(60.0) <= 100
    assert report["throttle_wait"] > 50
    times = sorted(entry[0] for entry in app.log.entries)
    # The 101st call goes as soon as the 1st's minute is over: the budget is not left idle.
    assert 60.0 <= times[100] - times[0] <= 62.0
    assert times[-1] - times[0] <= 63.0


def _post(n: int, change_key: str = "CQAAA1") -> dict:
    return {
        "id": f"AAMkADpost{n}", "changeKey": change_key, "conversationId": None,
        "receivedDateTime": f"2025-06-01T10:00:0{n}Z",
        "from": {"emailAddress": {"name": f"Sender {n}", "address": f"s{n}@contoso.test"}},
        "body": {"contentType": "html", "content": f"<p>post <b>{n}</b></p>"},
    }  # fmt: skip


def test_save_posts_splits_rows_at_sqlites_parameter_limit(tmp_path):
    """Posts go in as multi-row INSERTs; a limit of 60 parameters means two post rows (23
    columns) per statement: every post still lands once, in order, with its version."""
    from groupsync.archive import utc_now

    now = utc_now()
    with new_archive(tmp_path / "a.db") as archive:
        archive.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 60)
        with archive.atomic():
            archive.save_group({"id": "g"}, now)
            archive.save_thread("g", {"id": "t"}, None, now)
            posts = [_post(n) for n in range(5)]
            outcomes = archive.save_posts("g", "t", [*posts, posts[1]], now, run_id=None)
        assert outcomes == ["new"] * 5 + ["same"]  # listed twice, stored once
        rows = archive.conn.execute(
            "select id, change_seq, body_text, version_count, from_address from posts "
            "order by change_seq"
        ).fetchall()
        assert [r[0] for r in rows] == [p["id"] for p in posts]
        assert [r[1] for r in rows] == [1, 2, 3, 4, 5]
        assert rows[2][2:] == ("post 2", 1, "s2@contoso.test")
        assert archive.conn.execute("select count(*) from post_versions").fetchone()[0] == 5
        with archive.atomic():
            edited = [_post(0), _post(3, "CQAAA2")]
            assert archive.save_posts("g", "t", edited, now) == ["same", "changed"]
        assert archive.conn.execute(
            "select version_count, change_seq from posts where id = 'AAMkADpost3'"
        ).fetchone() == (2, 6)
        assert archive.conn.execute("select count(*) from post_versions").fetchone()[0] == 6


def test_save_posts_knows_a_post_archived_under_another_thread(tmp_path):
    """The per-thread states miss it; it is looked up by id, so an unchanged post is
    "same" and an edited one "changed", never a second "new"."""
    from groupsync.archive import utc_now

    now = utc_now()
    with new_archive(tmp_path / "a.db") as archive, archive.atomic():
        archive.save_group({"id": "g"}, now)
        for thread_id in ("t1", "t2"):
            archive.save_thread("g", {"id": thread_id}, None, now)
        assert archive.save_posts("g", "t1", [_post(1), _post(2)], now) == ["new", "new"]
        moved = [_post(1), _post(2, "CQAAA2"), _post(3)]
        assert archive.save_posts("g", "t2", moved, now) == ["same", "changed", "new"]
        assert archive.conn.execute(
            "select id, thread_id, version_count from posts order by id"
        ).fetchall() == [
            ("AAMkADpost1", "t1", 1), ("AAMkADpost2", "t2", 2), ("AAMkADpost3", "t2", 1)
        ]  # fmt: skip
