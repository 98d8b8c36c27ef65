"""The outbox through the real CLI: queue offline, replay against the simulator."""

from __future__ import annotations

import base64
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from groupsync.outbox import EXTENSION_NAME, Draft, Outbox
from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread
from groupsync.throttle import Throttle

from .conftest import (
    ENGINEERING,
    MARKETING,
    SAMPLE_DATA,
    cli_env,
    copy_sample,
    graph_for,
    new_archive,
    rows,
    sync_archive,
)

pytestmark = pytest.mark.e2e

DEAD = "http://127.0.0.1:9/v1.0"  # nothing listens: "the simulator is stopped"


def gs(
    db: Path,
    *args: str,
    url: str = DEAD,
    token: str = "e2e-token",
    rate: str = "0",
    check: bool = True,
    stdin: str | None = None,
):
    env = cli_env(url, db, token=token, rate=rate)
    result = subprocess.run(
        [sys.executable, "-m", "groupsync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        input=stdin,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def synced(tmp_path: Path, app) -> Path:
    """The joined groups of ``app`` synced into a new archive, as a first `sync` does."""
    db = tmp_path / "a.db"
    sync_archive(app, db)
    return db


def open_thread(db: Path, group: str) -> tuple[str, str]:
    (thread,) = rows(
        db,
        "select id from threads where group_id = ? and isLocked = 0 "
        "and deleted_at is null order by lastDeliveredDateTime limit 1",
        (group,),
    )[0:1]
    post = rows(
        db,
        "select id from posts where thread_id = ? order by receivedDateTime limit 1",
        (thread[0],),
    )[0][0]
    return thread[0], post


def markers(app, group: str) -> Counter:
    """Posts carrying each outbox marker, in the simulator's state: the ground truth."""
    seen: Counter = Counter()
    for thread in app.state.threads(group):
        for post in thread["posts"]:
            for extension in post.get("extensions") or []:
                if extension.get("extensionName") == EXTENSION_NAME:
                    seen[extension["marker"]] += 1
    return seen


def newest_other_open_thread(db: Path, group: str, not_this: str) -> str:
    """An unlocked thread of ``group`` other than ``not_this``: one to delete."""
    return rows(
        db,
        "select id from threads where group_id = ? and isLocked = 0 "
        "and id != ? order by lastDeliveredDateTime desc limit 1",
        (group, not_this),
    )[0][0]


def item_markers(db: Path) -> dict[int, str]:
    return dict(rows(db, "select id, marker from _outbox"))


def test_each_action_queued_offline_then_sent_exactly_once(tmp_path):
    app = make_app(SAMPLE_DATA)
    db = synced(tmp_path, app)
    thread, post = open_thread(db, ENGINEERING)
    victim = newest_other_open_thread(db, ENGINEERING, thread)
    conversation = rows(db, "select conversation_id from threads where id = ?", (thread,))[0][0]
    attachment = tmp_path / "plan.txt"
    attachment.write_bytes("Le plan ✓\n".encode())

    queued = [
        gs(
            db,
            "new-conversation",
            ENGINEERING,
            "--topic",
            "Offline conversation",
            "--content",
            "<p>Started offline</p>",
            "--attach",
            str(attachment),
            "--to",
            "guest@fabrikam.test",
            "--category",
            "Blue",
        ),
        gs(db, "new-thread", ENGINEERING, "--topic", "Offline thread", "--text", "plain words"),
        gs(
            db,
            "new-thread",
            ENGINEERING,
            "--conversation",
            conversation,
            "--topic",
            "Same conversation",
            "--content",
            "<p>another thread</p>",
        ),
        gs(db, "reply", ENGINEERING, thread, "--content", "<p>reply to thread</p>"),
        gs(db, "reply", ENGINEERING, thread, "--post", post, "--text", "reply to post"),
        gs(
            db,
            "forward",
            ENGINEERING,
            thread,
            post,
            "--to",
            "boss@fabrikam.test",
            "--comment",
            "FYI",
        ),
        gs(db, "delete-thread", ENGINEERING, victim, "--yes"),
    ]
    ids = [json.loads(r.stdout)["id"] for r in queued]
    assert ids == list(range(1, 8))

    # Offline echo: the queued reply reads as a pending post at once.
    posts = json.loads(gs(db, "posts", ENGINEERING, thread).stdout)["value"]
    pending = [p for p in posts if "@groupsync.outbox" in p]
    assert [p["@groupsync.outbox"]["state"] for p in pending] == ["queued", "queued"]
    threads = json.loads(gs(db, "threads", ENGINEERING).stdout)["value"]
    assert {t["topic"] for t in threads if "@groupsync.outbox" in t} >= {
        "Offline conversation",
        "Offline thread",
    }

    before = {t["id"] for t in app.state.threads(ENGINEERING)}
    with serve_in_thread(app) as url:
        report = json.loads(gs(db, "send", "--reconcile-delay", "0", url=url).stdout)
        assert report["sent"] == 7 and report["failed"] == 0
        again = json.loads(gs(db, "send", url=url).stdout)
        assert again["sent"] == 0
        gs(db, "sync", "--quiet", "--full", url=url)

    counts = markers(app, ENGINEERING)
    marks = item_markers(db)
    for item_id in (1, 2, 3, 4, 5):
        assert counts[marks[item_id]] == 1, item_id
    after = {t["id"]: t for t in app.state.threads(ENGINEERING)}
    new_topics = sorted(after[t]["topic"] for t in set(after) - before)
    assert new_topics == ["Offline conversation", "Offline thread", "Same conversation"]
    # The new conversation's post: body, participant, category and attachment bytes.
    created = next(t for t in after.values() if t["topic"] == "Offline conversation")
    first = created["posts"][0]
    assert "Started offline" in first["body"]["content"]
    assert first["newParticipants"][0]["emailAddress"]["address"] == "guest@fabrikam.test"
    assert first["categories"] == ["Blue"]
    assert base64.b64decode(first["attachments"][0]["contentBytes"]) == attachment.read_bytes()
    # The forward went out once, and nothing else was sent as mail.
    assert [m["recipients"][0]["emailAddress"]["address"] for m in app.sent_mail] == [
        "boss@fabrikam.test"
    ]
    # The delete removed the thread upstream; the next full sync tombstoned it.
    assert victim not in after
    assert rows(db, "select deleted_at is not null from threads where id = ?", (victim,)) == [(1,)]
    # The echo gave way to the real posts.
    posts = json.loads(gs(db, "posts", ENGINEERING, thread).stdout)["value"]
    assert not [p for p in posts if "@groupsync.outbox" in p]
    assert sum("reply to thread" in p["body"]["content"] for p in posts) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["reply", "00000000-0000-4000-8000-000000000000", "T", "--text", "x"],
            "not in the archive",
        ),
        (["reply", ENGINEERING, "no-such-thread", "--text", "x"], "is not in group"),
        (["reply", ENGINEERING, "{thread}", "--post", "nope", "--text", "x"], "is not in thread"),
        (["reply", ENGINEERING, "{locked}", "--text", "x"], "locked"),
        (["reply", ENGINEERING, "{thread}", "--content", "<p> </p>"], "empty"),
        (
            ["reply", ENGINEERING, "{thread}", "--text", "x", "--to", "not-an-address"],
            "not an e-mail address",
        ),
        (
            ["reply", ENGINEERING, "{thread}", "--text", "x", "--attach", "/no/such/file"],
            "cannot read attachment",
        ),
        (["reply", ENGINEERING, "{thread}", "--text", "x", "--attach", "{big}"], "under 3,145,728"),
        (["new-thread", ENGINEERING, "--topic", "  ", "--text", "x"], "needs a --topic"),
        (
            ["new-thread", ENGINEERING, "--conversation", "nope", "--topic", "t", "--text", "x"],
            "conversation nope is not in group",
        ),
        (["forward", ENGINEERING, "{thread}", "{post}", "--to", "bad@"], "not an e-mail"),
        (
            ["reply", ENGINEERING, "{thread}", "--text", "x", "--content", "<p>y</p>"],
            "exactly one of",
        ),
        (["delete-thread", ENGINEERING, "{thread}"], "needs --yes"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_queued(tmp_path, args, message, archive_copy):
    db, thread, post, locked = archive_copy(tmp_path)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    args = [a.format(thread=thread, post=post, locked=locked, big=big) for a in args]
    result = gs(db, *args, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert rows(db, "select count(*) from _outbox") == [(0,)]


def test_app_only_identity_cannot_queue_conversation_writes(tmp_path, archive_copy):
    db, thread, _, _ = archive_copy(tmp_path)
    claims = base64.urlsafe_b64encode(json.dumps({"roles": ["Group.Read.All"]}).encode())
    app_token = "eyJhbGciOiJub25lIn0." + claims.decode().rstrip("=") + ".sig"
    result = gs(db, "reply", ENGINEERING, thread, "--text", "x", token=app_token, check=False)
    assert result.returncode == 2
    assert "needs a signed-in user" in result.stderr
    assert rows(db, "select count(*) from _outbox") == [(0,)]


@pytest.fixture
def archive_copy(sample_archive):
    def copy(tmp_path: Path):
        db = copy_sample(sample_archive, tmp_path / "copy.db")
        thread, post = open_thread(db, ENGINEERING)
        locked = rows(db, "select id from threads where isLocked = 1")[0][0]
        return db, thread, post, locked

    return copy


def test_graph_refusals_mark_the_item_failed_and_the_queue_moves_on(tmp_path, archive_copy):
    db, thread, _, _ = archive_copy(tmp_path)
    app = make_app(SAMPLE_DATA)
    gs(db, "reply", ENGINEERING, thread, "--text", "first")
    gs(db, "reply", ENGINEERING, thread, "--text", "second")
    app.delete_thread(ENGINEERING, thread)  # upstream, before we send: Graph will say 404
    other, _ = open_thread(db, MARKETING)
    gs(db, "reply", MARKETING, other, "--text", "elsewhere")
    with serve_in_thread(app) as url:
        result = gs(db, "send", url=url, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert (report["sent"], report["failed"]) == (1, 2)
    errors = rows(db, "select state, last_error from _outbox order by id")
    assert errors[0][0] == "failed" and "not found" in errors[0][1].lower()
    assert errors[2][0] == "sent"


def _replies_arrived(app, db: Path, group: str) -> tuple[Counter, list[str]]:
    counts = markers(app, group)
    marks = item_markers(db)
    return Counter({i: counts[m] for i, m in marks.items()}), list(marks)


def _queue_replies(db: Path, threads: list[str], n: int) -> None:
    """n replies round-robin over threads, through the library."""
    with new_archive(db) as archive:
        box = Outbox(archive)
        for i in range(n):
            box.queue("reply-to-thread", ENGINEERING, Draft(content=f"<p>reply {i}</p>"),
                      thread_id=threads[i % len(threads)])  # fmt: skip


def _order_per_thread_is_queue_order(app, db: Path) -> None:
    marks = {m: i for i, m in item_markers(db).items()}
    for thread in app.state.threads(ENGINEERING):
        ours = [
            marks[e["marker"]]
            for p in sorted(thread["posts"], key=lambda p: p["receivedDateTime"])
            for e in p.get("extensions") or []
            if e.get("extensionName") == EXTENSION_NAME
        ]
        assert ours == sorted(ours), "a reply overtook an earlier one in its thread"


def engineering_threads(db: Path, n: int) -> list[str]:
    return [
        r[0]
        for r in rows(
            db,
            "select id from threads where group_id = ? and isLocked = 0 order by id limit ?",
            (ENGINEERING, n),
        )
    ]


def test_writes_applied_but_answered_504_still_arrive_exactly_once(tmp_path, archive_copy):
    db, _, _, _ = archive_copy(tmp_path)
    _queue_replies(db, engineering_threads(db, 3), 40)
    app = make_app(SAMPLE_DATA, SimulatorOptions(write_504_rate=0.2, seed=9))
    with serve_in_thread(app) as url:
        report = json.loads(
            gs(db, "send", "--reconcile-delay", "0", "--max-per-minute", "0", url=url).stdout
        )
    counts, ids = _replies_arrived(app, db, ENGINEERING)
    assert report["uncertain"] >= 3 and report["reconciled"] >= 3
    assert all(counts[i] == 1 for i in ids), counts
    _order_per_thread_is_queue_order(app, db)


def test_200_replies_under_throttle_and_503s_arrive_once_in_order(
    tmp_path, archive_copy, virtual_time
):
    """The connector's limit on both sides (client 100/60, simulator 429 past 100/60) and
    10 % random 503/504 before anything is applied. The replay runs in-process as `send
    --reconcile-delay 0 --max-per-minute 0` runs it, on a virtual clock shared with the
    simulator, so its two minutes of waiting take none."""
    db, _, _, _ = archive_copy(tmp_path)
    _queue_replies(db, engineering_threads(db, 4), 200)
    app = make_app(SAMPLE_DATA, SimulatorOptions(rate=(100, 60.0), fail_rate=0.1, seed=2))
    clock = virtual_time
    throttle = Throttle((100, 60.0), clock=clock)
    with graph_for(app, clock=clock, throttle=throttle) as graph, new_archive(db) as archive:
        box = Outbox(archive, reconcile_delay=0, now=clock.utc)
        report = box.send(graph, wait=True).__dict__
    counts, ids = _replies_arrived(app, db, ENGINEERING)
    assert report["sent"] == 200
    assert all(counts[i] == 1 for i in ids), counts
    _order_per_thread_is_queue_order(app, db)
    assert app.log.max_in_window(60.0) <= 100
    assert not [e for e in app.log.entries if e[3] == 429]


def test_sigkill_during_send_never_loses_or_doubles(tmp_path, archive_copy):
    db0, _, _, _ = archive_copy(tmp_path)
    threads = engineering_threads(db0, 3)
    rng = random.Random(20261126)
    points = sorted(rng.uniform(0.0, 1.6) for _ in range(20))
    for n, point in enumerate(points):
        db = tmp_path / f"kill{n}.db"
        with sqlite3.connect(db0) as source, sqlite3.connect(db) as target:
            source.backup(target)
        _queue_replies(db, threads, 12)
        app = make_app(SAMPLE_DATA, SimulatorOptions(latency_ms=60, seed=n))
        with serve_in_thread(app) as url:
            env = cli_env(url, db)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "groupsync",
                    "send",
                    "--reconcile-delay",
                    "0",
                    "--max-per-minute",
                    "0",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(point)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            gs(db, "send", "--reconcile-delay", "0", "--max-per-minute", "0", url=url)
        counts, ids = _replies_arrived(app, db, ENGINEERING)
        assert all(counts[i] == 1 for i in ids), (point, counts)
        assert rows(db, "select count(*) from _outbox where state != 'sent'") == [(0,)]


def test_own_writes_show_in_the_archive_without_a_full_sync(tmp_path):
    """A sent delete-thread marks the archive in the outcome's transaction; a sent reply and
    a new thread arrive with the next incremental sync, as real posts, not pending ones."""
    app = make_app(SAMPLE_DATA)
    db = synced(tmp_path, app)
    thread, _ = open_thread(db, ENGINEERING)
    victim = newest_other_open_thread(db, ENGINEERING, thread)
    victim_posts = rows(db, "select count(*) from posts where thread_id = ?", (victim,))[0][0]
    gs(db, "delete-thread", ENGINEERING, victim, "--yes")
    gs(db, "reply", ENGINEERING, thread, "--text", "own reply 7f3a")
    gs(db, "new-thread", ENGINEERING, "--topic", "Own thread 7f3a", "--text", "own thread 7f3a")
    with serve_in_thread(app) as url:
        report = json.loads(gs(db, "send", "--reconcile-delay", "0", url=url).stdout)
        assert report["sent"] == 3
        # The delete, before any sync: thread and every post marked, sent_at the same moment.
        sent_at = rows(db, "select sent_at from _outbox where action = 'delete-thread'")[0][0]
        assert rows(db, "select deleted_at from threads where id = ?", (victim,)) == [(sent_at,)]
        assert rows(
            db, "select count(*) from posts where thread_id = ? and deleted_at = ?",
            (victim, sent_at),
        ) == [(victim_posts,)]
        threads = json.loads(gs(db, "threads", ENGINEERING).stdout)["value"]
        assert victim not in {t["id"] for t in threads}
    sync_report = sync_archive(app, db).as_dict()  # the next incremental sync
    assert sync_report["mode"] == "incremental" and sync_report["items_new"] == 2
    archived = rows(
        db, "select thread_id, body_text from posts where body_text like '%own % 7f3a%' "
        "and deleted_at is null order by receivedDateTime"
    )
    assert [text.strip() for _, text in archived] == ["own reply 7f3a", "own thread 7f3a"]
    assert archived[0][0] == thread
    posts = json.loads(gs(db, "posts", ENGINEERING, thread).stdout)["value"]
    assert not [p for p in posts if "@groupsync.outbox" in p]  # no longer pending
