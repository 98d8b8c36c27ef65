"""``watch``: the loop in-process with a scripted clock, then the real CLI on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from groupsync.archive import Archive
from groupsync.config import SECRET_ENV_VARS
from groupsync.errors import AuthError
from groupsync.events import (
    HOOK_OUTPUT_CAP,
    HookError,
    HookOutputLog,
    ShellHook,
    deliver_pending,
    hook_environment,
    hook_output_path,
)
from groupsync.integrity import verify
from groupsync.lock import LockedError, WriterLock
from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread
from groupsync.sync import Syncer
from groupsync.watch import Watcher, WatchOptions, parse_duration

from .conftest import (
    ENGINEERING,
    MARKETING,
    SAMPLE_DATA,
    cli_env,
    generate_tenant,
    graph_for,
    rows,
)

INTERVAL = 60.0


def say(text: str) -> dict:
    return {"body": {"contentType": "html", "content": f"<p>{text}</p>"}}


class Script:
    """The watcher's ``wait``: records each delay and runs the next step; with none left, stops.

    So ``n`` steps make ``n + 1`` iterations, the last one after the last step."""

    def __init__(self, stop: threading.Event, steps) -> None:
        self.stop = stop
        self.steps = list(steps)
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.steps:
            self.steps.pop(0)()
        else:
            self.stop.set()


class RecordingHook:
    """Takes events; refuses the first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.calls.append(event)
        if len(self.calls) <= self.failures:
            raise HookError(f"refused #{len(self.calls)}")


def watch(db: Path, app, steps, *, hook=None, token=None, **options):
    """Run a Watcher over the in-process simulator; returns (report, script, logs, emitted)."""
    stop = threading.Event()
    script = Script(stop, steps)
    logs: list[dict] = []
    emitted: list[dict] = []
    graph = graph_for(app, token or "t", max_attempts=2)
    with Archive.open_for_writing(db) as archive, graph:
        watcher = Watcher(
            archive,
            graph,
            options=WatchOptions(interval=INTERVAL, **options),
            hook=hook,
            on_event=emitted.append,
            log=logs.append,
            stop=stop,
            clock=lambda: 0.0,
            wait=script,
        )
        report = watcher.run()
    return report, script, logs, emitted


def test_history_fires_nothing_and_a_new_post_fires_one_event(tmp_path):
    app = make_app(SAMPLE_DATA)
    hook = RecordingHook()
    thread = app.state.threads(MARKETING)[0]
    added = {}
    report, script, logs, emitted = watch(
        tmp_path / "a.db",
        app,
        [lambda: added.update(app.add_post(MARKETING, thread["id"], say("news"))), lambda: None],
        hook=hook,
    )
    assert report.iterations == 3 and report.failures == 0
    assert script.delays == [INTERVAL, INTERVAL, INTERVAL]
    assert len(hook.calls) == 1 and emitted == hook.calls
    event = hook.calls[0]
    assert set(event) == {"id", "lastDeliveredDateTime", "threads", "@groupsync.event"}
    conversation = rows(tmp_path / "a.db", "select conversation_id from threads where id = ?",
                        (thread["id"],))[0][0]  # fmt: skip
    assert event["id"] == conversation
    (posted,) = event["threads"][0]["posts"]
    assert event["threads"][0]["id"] == thread["id"]
    assert posted == {
        "id": added["id"],
        "changeKey": added["changeKey"],
        "lastModifiedDateTime": added["lastModifiedDateTime"],
    }
    assert event["lastDeliveredDateTime"] >= added["receivedDateTime"]
    assert event["@groupsync.event"]["groupId"] == MARKETING
    assert rows(tmp_path / "a.db", "select state, attempts from events") == [("delivered", 1)]
    syncs = [entry for entry in logs if entry["event"] == "sync"]
    assert [s["mode"] for s in syncs] == ["full", "incremental", "incremental"]
    assert [s["events"] for s in syncs] == [0, 1, 0]


def test_fire_on_backfill_fires_for_history(tmp_path):
    app = make_app(SAMPLE_DATA)
    report, _, _, emitted = watch(
        tmp_path / "a.db", app, [], group_ids=[MARKETING], fire_on_backfill=True
    )
    posts = rows(tmp_path / "a.db", "select count(*) from posts")[0][0]
    assert report.events == len(emitted) == posts >= 20


def test_a_failing_hook_is_retried_until_it_takes_the_event(tmp_path):
    app = make_app(SAMPLE_DATA)
    hook = RecordingHook(failures=2)
    thread = app.state.threads(MARKETING)[0]
    report, _, logs, _ = watch(
        tmp_path / "a.db",
        app,
        [lambda: app.add_post(MARKETING, thread["id"], say("retry me")), lambda: None,
         lambda: None, lambda: None],
    )  # fmt: skip
    assert report.delivered == 0  # no hook: recorded, pending
    assert rows(tmp_path / "a.db", "select state, attempts from events") == [("pending", 0)]

    report, _, logs, _ = watch(
        tmp_path / "a.db", app, [lambda: None, lambda: None, lambda: None], hook=hook
    )
    assert len(hook.calls) == 3 and report.delivered == 1
    assert {c["@groupsync.event"]["id"] for c in hook.calls} == {1}
    outcomes = [(e["outcome"], e["attempts"], e["error"]) for e in logs if e["event"] == "hook"]
    assert outcomes == [
        ("failed", 1, "refused #1"),
        ("failed", 2, "refused #2"),
        ("delivered", 3, None),
    ]
    assert rows(tmp_path / "a.db", "select state, attempts, last_error from events") == [
        ("delivered", 3, None)
    ]


def test_three_intervals_of_outage_lose_nothing(tmp_path):
    app = make_app(SAMPLE_DATA)
    hook = RecordingHook()
    threads = app.state.threads(MARKETING)
    added = []

    def go_down():
        app.set_down(True)
        added.append(app.add_post(MARKETING, threads[0]["id"], say("while down 1")))

    def still_down():
        added.append(app.add_post(MARKETING, threads[1]["id"], say("while down 2")))

    report, script, logs, emitted = watch(
        tmp_path / "a.db",
        app,
        [go_down, still_down, lambda: None, lambda: app.set_down(False), lambda: None],
        hook=hook,
    )
    assert report.iterations == 6 and report.failures == 3
    # after each failure the wait doubles from the interval: 1, 2, 4 intervals
    assert script.delays == [INTERVAL, INTERVAL, 2 * INTERVAL, 4 * INTERVAL, INTERVAL, INTERVAL]
    errors = [e for e in logs if e["event"] == "error"]
    assert [e["kind"] for e in errors] == ["ServiceUnavailableError"] * 3
    got = {c["threads"][0]["posts"][0]["id"] for c in hook.calls}
    assert got == {p["id"] for p in added} and len(hook.calls) == 2
    assert sorted(e["@groupsync.event"]["id"] for e in emitted) == [1, 2]
    statuses = [r[0] for r in rows(tmp_path / "a.db", "select status from sync_runs order by id")]
    assert statuses == ["complete", "failed", "failed", "failed", "complete", "complete"]
    with Archive(tmp_path / "a.db", readonly=True) as archive:
        assert verify(archive).ok


def test_token_errors_back_off_and_the_loop_goes_on(tmp_path):
    app = make_app(SAMPLE_DATA)
    expired = threading.Event()

    def token(force_refresh: bool = False) -> str:
        if expired.is_set():
            raise AuthError("the refresh token expired; run `groupsync login`")
        return "test-token"

    report, script, logs, _ = watch(
        tmp_path / "a.db",
        app,
        [expired.set, expired.clear, lambda: None],
        token=token,
        max_backoff=INTERVAL / 2,
    )
    assert report.failures == 1
    assert script.delays == [INTERVAL, INTERVAL / 2, INTERVAL, INTERVAL]  # capped by max_backoff
    (error,) = [e for e in logs if e["event"] == "error"]
    assert error["kind"] == "AuthError" and "groupsync login" in error["error"]


def test_stop_between_threads_leaves_whole_threads_and_a_sealed_run(tmp_path):
    db = tmp_path / "a.db"
    app = make_app(SAMPLE_DATA)
    stop = threading.Event()

    def progress(event: dict) -> None:
        if event["stage"] == "posts":
            stop.set()

    with Archive.open_for_writing(db) as archive, graph_for(app, max_attempts=2) as graph:
        report = Syncer(archive, graph, progress=progress, stop=stop).run([MARKETING])
    assert report.status == "stopped" and report.threads_fetched == 1
    assert rows(db, "select status, digest is not null from sync_runs") == [("stopped", 1)]
    assert rows(db, "select count(*) from _sync_state") == [(0,)]  # group not done
    partial = rows(
        db,
        "select t.id from threads t where t.post_count != "
        "(select count(*) from posts p where p.thread_id = t.id)",
    )
    assert partial == []
    with Archive.open_for_writing(db) as archive, graph_for(app, max_attempts=2) as graph:
        assert verify(archive).ok
        again = Syncer(archive, graph).run([MARKETING])
    assert again.status == "complete" and again.events == 0  # still the group's backfill
    expected = sum(len(t["posts"]) for t in app.state.threads(MARKETING))
    assert rows(db, "select count(*) from posts") == [(expected,)]


@pytest.mark.parametrize(
    "text,seconds",
    [("60", 60), (90, 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("1.5h", 5400),
     ("7d", 604800), (" 2 M ", 120)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "-5", "soon", "5w", "1h30m"])
def test_parse_duration_refuses(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_the_writer_lock_says_who_holds_it(tmp_path):
    db = tmp_path / "a.db"
    with WriterLock(db, "groupsync watch"):
        with pytest.raises(LockedError) as refused, WriterLock(db, "groupsync sync"):
            pass
        assert refused.value.exit_code == 3
        assert f"`groupsync watch` (pid {os.getpid()}, since " in str(refused.value)
    with WriterLock(db, "groupsync sync"):  # released: free again
        pass


def test_shell_hook_gets_stdin_and_env_and_is_killed_on_timeout(tmp_path):
    out = tmp_path / "got.json"
    script = f"cat > {out}; echo \"$GROUPSYNC_EVENT_ID $GROUPSYNC_POST_ID\" >> {out}.env"
    event = {"id": "c", "threads": [{"id": "t", "posts": [{"id": "p"}]}],
             "@groupsync.event": {"id": 7, "groupId": "g"}}  # fmt: skip
    ShellHook(script, timeout=10)(event)
    assert json.loads(out.read_text()) == event
    assert (tmp_path / "got.json.env").read_text() == "7 p\n"
    with pytest.raises(HookError, match="status 3: bad luck"):
        ShellHook("echo bad luck >&2; exit 3")(event)
    started = time.monotonic()
    with pytest.raises(HookError, match="within 0.3 s"):
        ShellHook("sleep 30 & sleep 30", timeout=0.3)(event)
    assert time.monotonic() - started < 5


def failed_hook_archive(tmp_path: Path, command: str) -> tuple[Path, HookOutputLog]:
    """An archive whose Marketing history fired events, the first delivered to ``command``
    (which should fail), with what it printed kept in ``<db>.hooks``."""
    db = tmp_path / "a.db"
    watch(db, make_app(SAMPLE_DATA), [], group_ids=[MARKETING], fire_on_backfill=True)
    outputs = HookOutputLog(hook_output_path(db))
    with Archive.open_for_writing(db) as archive:
        deliver_pending(archive, ShellHook(command, timeout=30), outputs=outputs,
                        max_consecutive_failures=1)  # fmt: skip
    return db, outputs


def test_a_hook_that_prints_a_megabyte_is_stored_shortened_outside_the_archive(tmp_path):
    megabyte = f"{sys.executable} -c \"import sys; sys.stdout.write('o' * 2**20 + 'LAST-OUT'); " \
        "sys.stderr.write('e' * 2**20 + 'LAST-ERR'); sys.exit(4)\""
    db, outputs = failed_hook_archive(tmp_path, megabyte)
    with outputs:
        (event_id,) = rows(db, "select id from events where state = 'failed'")[0]
        kept = outputs.get(event_id)
    assert kept is not None and kept["status"] == 4
    for stream, last in (("stdout", "LAST-OUT"), ("stderr", "LAST-ERR")):
        text = kept[stream]
        assert len(text.encode()) < HOOK_OUTPUT_CAP + 100
        assert f"groupsync kept {HOOK_OUTPUT_CAP} of {2**20 + 8} bytes" in text
        assert text.startswith("o" * 100 if stream == "stdout" else "e" * 100)
        assert text.endswith(last)
    # The archive has groupsync's words only, never the hook's.
    assert rows(db, "select last_error from events where state = 'failed'") == [
        ("the hook exited with status 4",)
    ]
    assert os.stat(hook_output_path(db)).st_mode & 0o777 == 0o600
    # `groupsync events` (run by someone who can read the config) shows it.
    from click.testing import CliRunner

    from groupsync.cli import cli

    result = CliRunner().invoke(cli, ["events", "--state", "failed"], env={"GROUPSYNC_DB": str(db)})
    (item,) = json.loads(result.stdout)["value"]
    assert item["hook_output"] == kept


def test_hook_output_an_earlier_version_kept_in_the_archive_is_scrubbed(tmp_path):
    db, outputs = failed_hook_archive(tmp_path, "exit 3")
    outputs.close()
    with sqlite3.connect(db) as conn:  # as groupsync before 005 left it
        conn.execute("update events set last_error = "
                     "'the hook exited with status 3: token=abc: s3cret' where state = 'failed'")
        conn.execute("update events set last_error = 'the hook did not finish within 60 s' "
                     "where id = (select min(id) from events where state = 'pending')")
        conn.execute("delete from _sqlite_migrations where name = ?",
                     ("005_events_without_hook_output",))  # fmt: skip
    conn.close()
    with Archive.open_for_writing(db):
        pass
    assert sorted(rows(db, "select last_error from events where last_error is not null")) == [
        ("the hook did not finish within 60 s",), ("the hook exited with status 3",)
    ]


def test_hook_environment_is_an_allow_list_without_secrets(monkeypatch):
    for name in SECRET_ENV_VARS:
        monkeypatch.setenv(name, "s3cret-" + name)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cret")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("MY_HOOK_SETTING", "mine")
    env = hook_environment(os.environ, keep=["MY_HOOK_SETTING"], extra={"GROUPSYNC_DB": "a.db"})
    assert env["PATH"] == os.environ["PATH"] and env["LC_TIME"] == "C"
    assert env["MY_HOOK_SETTING"] == "mine" and env["GROUPSYNC_DB"] == "a.db"
    assert not any("s3cret" in value for value in env.values())
    for secret in SECRET_ENV_VARS:
        with pytest.raises(HookError, match="secret setting"):
            hook_environment(os.environ, keep=[secret])
    secrets = {"GROUPSYNC_ACCESS_TOKEN", "GROUPSYNC_CLIENT_SECRET"}
    assert secrets | {"GROUPSYNC_CERTIFICATE_PASSWORD"} == SECRET_ENV_VARS


@pytest.mark.asyncio
async def test_datasette_never_shows_hook_output(tmp_path):
    from groupsync.datasette_plugin.server import make_datasette

    marker = "HOOK-PRINTED-7f3a"
    db, outputs = failed_hook_archive(
        tmp_path, f"echo {marker}-out; echo {marker}-err >&2; exit 5"
    )
    with outputs:
        (event_id,) = rows(db, "select id from events where state = 'failed'")[0]
        assert marker in outputs.get(event_id)["stderr"]  # kept, but not where Datasette is
    ds = make_datasette(db)
    pages = ["/a/events", "/a/events.json", f"/a/events/{event_id}", f"/a/events/{event_id}.json"]
    # Arbitrary SQL over every table Datasette can reach (the sample archive is small enough
    # for each to come back whole).
    tables = rows(db, "select name from sqlite_master where type in ('table', 'view')")
    for (table,) in tables:
        pages.append("/a.json?" + urlencode({"sql": f"select * from [{table}]", "_size": "max"}))
    for page in pages:
        response = await ds.client.get(page)
        assert response.status_code == 200, (page, response.text[:300])
        assert marker not in response.text, page


# -- the real CLI ------------------------------------------------------------------------

def gs(url: str, db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "groupsync", *args],
        env=cli_env(url, db),
        capture_output=True,
        text=True,
        timeout=120,
    )


class Watch:
    """``groupsync watch --log-json`` in the background, its output read as it comes."""

    def __init__(self, url: str, db: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "groupsync", "watch", "--log-json", *args],
            env=cli_env(url, db),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[dict] = []
        self.stdout: list[str] = []
        self.other: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, is_log: bool) -> None:
        for line in stream:
            if not is_log:
                self.stdout.append(line)
                continue
            try:
                self.logs.append(json.loads(line))
            except ValueError:
                self.other.append(line)

    def syncs(self, status: str | None = None) -> list[dict]:
        return [e for e in list(self.logs) if e["event"] == "sync"
                and (status is None or e["status"] == status)]  # fmt: skip

    def wait_for(self, condition, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"watch ended ({self.proc.returncode}): {self.other}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.logs[-5:]}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def watches():
    started: list[Watch] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.kill()


def hook_script(tmp_path: Path, fail_first: int = 0) -> str:
    """A hook that appends each event to got.jsonl, refusing the first ``fail_first``."""
    path = tmp_path / "hook.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import pathlib, sys
            here = pathlib.Path({str(tmp_path)!r})
            count = here / "calls"
            n = int(count.read_text()) + 1 if count.exists() else 1
            count.write_text(str(n))
            event = sys.stdin.read()
            if n <= {fail_first}:
                sys.exit("not yet (call %d)" % n)
            with open(here / "got.jsonl", "a") as out:
                out.write(event.strip() + "\\n")
            """
        )
    )
    return f"{sys.executable} {path}"


def got(tmp_path: Path) -> list[dict]:
    path = tmp_path / "got.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.e2e
def test_cli_watch_delivers_a_post_added_mid_run_to_the_hook_once(tmp_path, watches):
    app = make_app(SAMPLE_DATA)
    db = tmp_path / "a.db"
    with serve_in_thread(app) as url:
        w = Watch(url, db, "--interval", "0.2", "--on-new", hook_script(tmp_path), "--jsonl")
        watches.append(w)
        w.wait_for(lambda: w.syncs("complete"), what="the first sync")
        thread = app.state.threads(ENGINEERING)[0]
        post = app.add_post(ENGINEERING, thread["id"], say("mid-run news"))
        w.wait_for(lambda: got(tmp_path), what="the hook")
        after = len(w.syncs())
        w.wait_for(lambda: len(w.syncs()) >= after + 3, what="three more syncs")
        assert w.terminate() == 0
    (event,) = got(tmp_path)
    assert event["threads"][0]["posts"][0]["id"] == post["id"]
    assert event["threads"][0]["id"] == thread["id"]
    assert [json.loads(line) for line in w.stdout] == [event]  # --jsonl, the same event
    assert rows(db, "select state, attempts, post_id from events") == [
        ("delivered", 1, post["id"])
    ]
    assert w.logs[-1]["event"] == "watch.stop" and w.logs[-1]["reason"] == "signal"
    assert w.other == []


@pytest.mark.e2e
def test_cli_watch_retries_a_failing_hook_until_it_succeeds(tmp_path, watches):
    app = make_app(SAMPLE_DATA)
    db = tmp_path / "a.db"
    with serve_in_thread(app) as url:
        w = Watch(url, db, "--interval", "0.2", "--on-new", hook_script(tmp_path, fail_first=2))
        watches.append(w)
        w.wait_for(lambda: w.syncs("complete"), what="the first sync")
        app.add_post(MARKETING, app.state.threads(MARKETING)[0]["id"], say("try again"))
        w.wait_for(lambda: got(tmp_path), what="the delivery")
        after = len(w.syncs())
        w.wait_for(lambda: len(w.syncs()) >= after + 2, what="two more syncs")
        assert w.terminate() == 0
    assert len(got(tmp_path)) == 1
    hooks = [(e["outcome"], e["attempts"]) for e in w.logs if e["event"] == "hook"]
    assert hooks == [("failed", 1), ("failed", 2), ("delivered", 3)]
    failed = [e["error"] for e in w.logs if e["event"] == "hook" and e["error"]]
    assert all("not yet" in e and "status 1" in e for e in failed)
    assert rows(db, "select state, attempts, last_error from events") == [("delivered", 3, None)]


@pytest.mark.e2e
def test_cli_watch_survives_three_intervals_of_outage_and_a_lost_network(tmp_path, watches):
    app = make_app(SAMPLE_DATA)
    db = tmp_path / "a.db"
    interval = 0.4
    with serve_in_thread(app) as url:
        port = int(url.split(":")[2].split("/")[0])
        w = Watch(url, db, "--interval", str(interval), "--on-new", hook_script(tmp_path))
        watches.append(w)
        w.wait_for(lambda: w.syncs("complete"), what="the first sync")
        app.set_down(True)  # every request: 503
        added = [app.add_post(MARKETING, app.state.threads(MARKETING)[0]["id"], say("down 1"))]
        time.sleep(3 * interval)
        added.append(app.new_thread(ENGINEERING, "Born in an outage", say("down 2"))["posts"][0])
        app.set_down(False)
        w.wait_for(lambda: len(got(tmp_path)) == 2, what="both posts delivered")
    # The server is gone: connections refused, the loop logs, backs off and keeps going.
    w.wait_for(lambda: any(e["event"] == "backoff" for e in w.logs), what="a failed iteration")
    with serve_in_thread(app, port=port):
        added.append(app.add_post(MARKETING, app.state.threads(MARKETING)[1]["id"], say("back")))
        w.wait_for(lambda: len(got(tmp_path)) == 3, what="the post after the network came back")
        assert w.terminate() == 0
    assert {e["threads"][0]["posts"][0]["id"] for e in got(tmp_path)} == {p["id"] for p in added}
    kinds = {e["kind"] for e in w.logs if e["event"] == "error"}
    assert kinds == {"TransportError"}  # the 503s were ridden out by the client's retries
    assert gs(url, db, "verify").returncode == 0


def generated_tenant(root: Path) -> Path:
    return generate_tenant(root, groups=2, threads=300, posts=900, attachments=30, seed=7)


@pytest.mark.e2e
def test_cli_watch_sigterm_mid_sync_leaves_a_consistent_archive(tmp_path, watches):
    tenant = generated_tenant(tmp_path / "tenant")
    app = make_app(tenant, SimulatorOptions(latency_ms=20))
    db = tmp_path / "a.db"
    with serve_in_thread(app) as url:
        w = Watch(url, db, "--all", "--interval", "60")
        watches.append(w)

        def some_posts() -> bool:
            return db.exists() and bool(
                rows(db, "select 1 from sqlite_master where name = 'posts'")
            ) and rows(db, "select count(*) from posts")[0][0] >= 20

        w.wait_for(some_posts, what="posts being written")
        started = time.monotonic()
        assert w.terminate() == 0
        assert time.monotonic() - started < 10
        (sync,) = w.syncs()
        assert sync["status"] == "stopped"
        assert rows(db, "pragma integrity_check") == [("ok",)]
        assert rows(db, "select status, digest is not null from sync_runs") == [("stopped", 1)]
        stored = rows(db, "select count(*) from posts")[0][0]
        total = sum(len(t["posts"]) for g in app.state.groups for t in app.state.threads(g))
        assert 20 <= stored < total
        assert rows(
            db,
            "select count(*) from threads t where t.post_count != "
            "(select count(*) from posts p where p.thread_id = t.id)",
        ) == [(0,)]  # whole threads only
        assert gs(url, db, "verify").returncode == 0
        finish = gs(url, db, "sync", "--all", "--quiet")
        assert finish.returncode == 0, finish.stderr
        assert rows(db, "select count(*) from posts")[0][0] == total
        assert gs(url, db, "verify").returncode == 0


@pytest.mark.e2e
def test_cli_a_second_writer_is_refused_with_exit_3(tmp_path, watches):
    app = make_app(SAMPLE_DATA)
    db = tmp_path / "a.db"
    with serve_in_thread(app) as url:
        w = Watch(url, db, "--interval", "60")
        watches.append(w)
        w.wait_for(lambda: w.syncs("complete"), what="the first sync")
        for command in (["sync"], ["send"], ["watch", "--once"]):
            refused = gs(url, db, *command)
            assert refused.returncode == 3, refused.stderr
            (line,) = refused.stderr.splitlines()
            assert f"`groupsync watch` (pid {w.proc.pid}, since " in line
            assert line.startswith("Error: ") and line.endswith("try again later")
        assert rows(db, "select count(*) from sync_runs") == [(1,)]
        assert w.terminate() == 0
        assert gs(url, db, "sync", "--quiet").returncode == 0


@pytest.mark.e2e
def test_cli_hook_sees_no_secret_though_watch_had_them_all(tmp_path):
    app = make_app(SAMPLE_DATA)
    db = tmp_path / "a.db"
    dump = tmp_path / "env.txt"
    secrets = {
        "GROUPSYNC_CLIENT_SECRET": "client-s3cret",
        "GROUPSYNC_CERTIFICATE_PASSWORD": "cert-s3cret",
        "AWS_SECRET_ACCESS_KEY": "aws-s3cret",
        "HTTPS_PROXY": "http://user:proxy-s3cret@127.0.0.1:9",
    }
    hook = f"env -0 > {dump}"
    with serve_in_thread(app) as url:
        env = {**cli_env(url, db), **secrets, "MY_HOOK_SETTING": "mine", "NO_PROXY": "*"}
        done = subprocess.run(
            [sys.executable, "-m", "groupsync", "watch", "--once", "--fire-on-backfill",
             "--group", MARKETING, "--on-new", hook, "--hook-env", "MY_HOOK_SETTING"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        refused = subprocess.run(
            [sys.executable, "-m", "groupsync", "watch", "--once", "--on-new", hook,
             "--hook-env", "GROUPSYNC_CLIENT_SECRET"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    seen = dict(item.split("=", 1) for item in dump.read_text().split("\0") if item)
    assert "e2e-token" not in dump.read_text() and "s3cret" not in dump.read_text()
    assert not set(seen) & (SECRET_ENV_VARS | set(secrets))
    assert seen["MY_HOOK_SETTING"] == "mine" and seen["PATH"] == os.environ["PATH"]
    assert seen["GROUPSYNC_DB"] == str(db)
    assert {"GROUPSYNC_EVENT_ID", "GROUPSYNC_GROUP_ID", "GROUPSYNC_THREAD_ID",
            "GROUPSYNC_POST_ID"} <= set(seen)  # fmt: skip
    assert seen["GROUPSYNC_GROUP_ID"] == MARKETING
    assert refused.returncode != 0
    (line,) = refused.stderr.splitlines()
    assert "GROUPSYNC_CLIENT_SECRET" in line and "secret" in line and "client-s3cret" not in line


def test_cli_events_lists_what_the_hook_gets(tmp_path):
    from click.testing import CliRunner

    from groupsync.cli import cli

    app = make_app(SAMPLE_DATA)
    thread = app.state.threads(MARKETING)[0]
    hook = RecordingHook()
    watch(tmp_path / "a.db", app, [lambda: app.add_post(MARKETING, thread["id"], say("x"))],
          hook=hook)  # fmt: skip
    env = {"GROUPSYNC_DB": str(tmp_path / "a.db")}
    runner = CliRunner()
    result = runner.invoke(cli, ["events", "--jsonl"], env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == hook.calls
    result = runner.invoke(cli, ["events", "--state", "delivered"], env=env)
    (item,) = json.loads(result.stdout)["value"]
    assert item["state"] == "delivered" and item["event"] == hook.calls[0]
    assert item["post_id"] == hook.calls[0]["threads"][0]["posts"][0]["id"]
    result = runner.invoke(cli, ["events", "--since", "2999-01-01", "--table"], env=env)
    assert result.exit_code == 0 and result.stdout.strip() == "(none)"
    result = runner.invoke(cli, ["events", "--state", "failed", "--jsonl"], env=env)
    assert result.stdout == ""
