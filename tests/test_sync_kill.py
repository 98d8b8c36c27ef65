"""SIGKILL a real ``groupsync sync`` at 20+ seeded moments, rerun it, compare with a clean sync.

Every table (run bookkeeping and timings aside) of a killed-then-rerun archive must equal
the archive of one uninterrupted sync, and the rerun must not fetch again what the killed
run had committed. The kill lands wherever it lands: mid-request, mid-transaction, with the
WAL half written; SQLite's journal and one transaction per thread of mail are what make
this safe.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread

from .conftest import cli_env, generate_tenant

pytestmark = pytest.mark.e2e

SEED = 20240611
LATENCY_MS = 45  # with 4 requests in flight, the uninterrupted sync lasts about 1.5 s
RANDOM_POINTS = 20  # timed from the sync's first Graph request, over its whole length
EARLY_POINTS = 3  # timed from process start, before its first request: imports, migrations
WORKERS = 2  # kill points run two at a time, each against its own simulator
KEYS_ONLY = "id,changeKey"  # the $select of a full reconcile's posts listing
IGNORED_TABLES = {"sync_runs", "_sqlite_migrations"}
IGNORED_COLUMNS = {"sync_run_id"}


# -- the simulator, with every request's group, thread and query kept --------------------


@dataclass(frozen=True)
class Call:
    """One ``/v1.0`` request: what kind, for which group and thread, fetching bodies or not."""

    kind: str  # memberOf, conversations, conversation, threads, posts, post, attachments
    group: str | None = None
    thread: str | None = None
    keys_only: bool = False

    @property
    def fetches_bodies(self) -> bool:
        """Posts with their bodies (and attachments), as opposed to ids and changeKeys."""
        return self.kind in ("posts", "post", "attachments") and not self.keys_only


def classify(path: str, query: str) -> Call:
    parts = path.removeprefix("/v1.0/").strip("/").split("/")
    select = parse_qs(query).get("$select", [""])[0]
    if parts[:2] == ["me", "memberOf"]:
        return Call("memberOf")
    if parts[0] != "groups" or len(parts) < 3:
        return Call("other:" + "/".join(parts[:1] + parts[2:3]))
    group = parts[1]
    if parts[2] == "conversations":
        return Call("conversations" if len(parts) == 3 else "conversation", group)
    kinds = {3: "threads", 4: "thread", 5: "posts", 6: "post", 7: "attachments"}
    if parts[2] != "threads" or len(parts) not in kinds:
        return Call("other:" + "/".join(parts[2:]), group)
    thread = parts[3] if len(parts) > 3 else None
    return Call(kinds[len(parts)], group, thread, keys_only=select == KEYS_ONLY)


class Recorder:
    """A WSGI wrapper around the simulator keeping each Graph request's path and query
    (the simulator's own log keeps endpoint templates only, not which thread)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self.first = threading.Event()  # set by the first request since the last reset
        self.first_at = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO") or ""
        if path.startswith("/v1.0/"):
            call = classify(path, str(environ.get("QUERY_STRING", "")))
            with self._lock:
                if not self._calls:
                    self.first_at = time.monotonic()
                    self.first.set()
                self._calls.append(call)
        return self.app(environ, start_response)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self.first.clear()
        self.app.log.reset()


@contextmanager
def simulator(tenant: Path) -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder(make_app(tenant, SimulatorOptions(latency_ms=LATENCY_MS)))
    with serve_in_thread(recorder) as url:  # any WSGI callable serves
        yield recorder, url


SYNC = [sys.executable, "-m", "groupsync", "sync", "--quiet"]


def run_sync(url: str, db: Path) -> None:
    result = subprocess.run(
        SYNC, env=cli_env(url, db), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


# -- archives ---------------------------------------------------------------------------


FTS5_SHADOWS = ("_data", "_idx", "_docsize", "_config", "_content")


def virtual_tables(conn: sqlite3.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND sql LIKE 'CREATE VIRTUAL TABLE%'"
        )
    ]


Snapshot = dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]


def snapshot(db: Path) -> Snapshot:
    """Every table's columns and rows, sorted, without timings and run bookkeeping; blobs as
    bytes.

    A full-text index's shadow tables hold b-tree segments whose bytes depend on the order
    of writes (a thread re-saved by the rerun is deleted from and re-added to the index), so
    they are not compared; the index's own rows are, and ``fts_problems`` checks the index
    against its content table.
    """
    out: Snapshot = {}
    with closing(sqlite3.connect(db)) as conn:
        shadows = {v + s for v in virtual_tables(conn) for s in FTS5_SHADOWS}
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            if table in IGNORED_TABLES or table in shadows:
                continue
            columns = [
                r[1]
                for r in conn.execute(f'PRAGMA table_info("{table}")')
                if not r[1].endswith("_at") and r[1] not in IGNORED_COLUMNS
            ]
            names = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(f'SELECT {names} FROM "{table}"').fetchall()
            out[table] = (tuple(columns), sorted(rows, key=repr))
    return out


def fts_problems(db: Path) -> list[str]:
    """FTS5's integrity check, with rank 1: the index also matches its content table."""
    found = []
    with closing(sqlite3.connect(db)) as conn:
        for table in virtual_tables(conn):
            try:
                conn.execute(
                    f'INSERT INTO "{table}" ("{table}", rank) VALUES (\'integrity-check\', 1)'
                )
            except sqlite3.DatabaseError as ex:
                found.append(f"{table}: {ex}")
    return found


def differences(expected: Snapshot, actual: Snapshot) -> list[str]:
    found = []
    if set(expected) != set(actual):
        found.append(f"tables differ: {sorted(set(expected) ^ set(actual))}")
    for table in sorted(set(expected) & set(actual)):
        (columns, want_rows), (got_columns, got_rows) = expected[table], actual[table]
        if columns != got_columns:
            found.append(f"{table}: columns {got_columns}, expected {columns}")
            continue
        if want_rows == got_rows:
            continue
        want, got = Counter(want_rows), Counter(got_rows)
        missing, extra = list((want - got).elements()), list((got - want).elements())
        by_key = {r[0]: r for r in extra}
        changed = [
            f"{_short(r[0])}: "
            + ", ".join(
                f"{c}={_short(a)}->{_short(b)}"
                for c, a, b in zip(columns, r, by_key[r[0]], strict=True)
                if a != b
            )
            for r in missing
            if r[0] in by_key
        ]
        keys = [[_short(r[0]) for r in rows[:3]] for rows in (missing, extra)]
        found.append(
            f"{table}: {len(want_rows)} rows expected, {len(got_rows)} found, "
            f"{len(missing)} missing, {len(extra)} extra; changed {changed[:3]}; "
            f"missing {keys[0]}, extra {keys[1]}"
        )
    return found


def _short(value: Any) -> Any:
    """Long values cut; Graph ids share their first 40 characters (the mailbox), so both
    ends are kept."""
    if isinstance(value, str | bytes) and len(value) > 40:
        return value[:12] + value[-24:]
    return value


@dataclass
class Committed:
    """What a killed run left in its archive, read from a copy (the original keeps its WAL)."""

    groups: int = 0
    threads: set[str] = field(default_factory=set)
    posts: int = 0
    full_groups: set[str] = field(default_factory=set)
    runs: int = 0


def committed(db: Path, scratch: Path) -> Committed:
    if not db.exists():
        return Committed()
    scratch.mkdir()
    for suffix in ("", "-wal"):  # no -shm: SQLite rebuilds the WAL index from the WAL
        if Path(f"{db}{suffix}").exists():
            shutil.copyfile(f"{db}{suffix}", scratch / f"copy.db{suffix}")
    with closing(sqlite3.connect(scratch / "copy.db")) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "_sync_state" not in tables:  # killed before the schema was committed
            return Committed()
        return Committed(
            groups=conn.execute("SELECT count(*) FROM groups").fetchone()[0],
            threads={r[0] for r in conn.execute("SELECT id FROM threads")},
            posts=conn.execute("SELECT count(*) FROM posts").fetchone()[0],
            full_groups={
                r[0]
                for r in conn.execute(
                    "SELECT group_id FROM _sync_state WHERE last_full_at IS NOT NULL"
                )
            },
            runs=conn.execute("SELECT count(*) FROM sync_runs").fetchone()[0],
        )


# -- the test ---------------------------------------------------------------------------


@dataclass
class Reference:
    snapshot: Snapshot
    startup: float  # from process start to the first Graph request
    duration: float  # from the first Graph request to the process's exit
    calls: list[Call]
    sim_total: int

    def cost(self, group: str) -> int:
        return sum(1 for c in self.calls if c.group == group)

    @property
    def member_of(self) -> int:
        return sum(1 for c in self.calls if c.kind == "memberOf")

    @property
    def groups(self) -> set[str]:
        return {c.group for c in self.calls if c.group}

    @property
    def threads(self) -> set[str]:
        return {c.thread for c in self.calls if c.thread}


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> Path:
    return generate_tenant(tmp_path_factory.mktemp("kill") / "tenant",
                           groups=3, threads=60, posts=400, attachments=40, seed=11)  # fmt: skip


def kill_and_rerun(
    point: tuple[str, float], db: Path, sims: queue.Queue, ref: Reference
) -> tuple[Committed, list[str]]:
    """Kill a sync at ``point`` (seconds after its process started, or after its first Graph
    request), rerun it, and say what went wrong, if anything."""
    anchor, seconds = point
    recorder, url = sims.get()
    try:
        recorder.reset()
        started = time.monotonic()
        proc = subprocess.Popen(
            SYNC, env=cli_env(url, db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if anchor == "request":
                assert recorder.first.wait(timeout=60), "the sync made no request in 60 s"
                started = recorder.first_at
            time.sleep(max(0.0, started + seconds - time.monotonic()))
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # a zombie if it already exited: harmless
            proc.wait(timeout=30)
        before = committed(db, db.parent / "inspect")
        recorder.reset()
        rerun_began = time.time()
        run_sync(url, db)
        calls = recorder.calls
        # The killed run's last requests may still be in the simulator (its latency sleep):
        # they are logged when answered, after the reset, but arrived before the rerun.
        logged = [e for e in recorder.app.log.entries if e[0] >= rerun_began]
    finally:
        sims.put((recorder, url))

    problems = differences(ref.snapshot, snapshot(db)) + fts_problems(db)
    posts_logged = sum(1 for e in logged if e[1:3] == ("GET", "/groups/{id}/threads/{id}/posts"))
    posts_seen = sum(1 for c in calls if c.kind == "posts")
    if (len(logged), posts_logged) != (len(calls), posts_seen):
        problems.append(
            f"simulator logged {len(logged)} requests ({posts_logged} posts listings), "
            f"the recorder saw {len(calls)} ({posts_seen})"
        )

    # Nothing committed is fetched again. A thread's row is written in the same transaction
    # as its posts, so a thread in the killed archive had every post of it stored: the rerun
    # never lists its posts with bodies (nor GETs one of them, nor their attachments) ...
    bodies = {c.thread for c in calls if c.fetches_bodies}
    refetched = bodies & before.threads
    if refetched:
        problems.append(f"{len(refetched)} committed thread(s) fetched again with bodies")
    # ... and every thread not committed has its posts fetched with bodies, as in a clean run.
    if bodies != ref.threads - before.threads:
        problems.append(
            f"bodies fetched for {len(bodies)} threads, "
            f"expected the {len(ref.threads - before.threads)} not committed"
        )
    # Requests. A group whose full reconcile had committed gets an incremental pass in the
    # rerun: nothing changed upstream, so one thread-list page and nothing else (no posts).
    # A group killed mid-way had no full reconcile yet, so it gets a full pass again: its
    # conversations and thread pages are listed again, and each committed thread's posts are
    # listed again with $select=id,changeKey to compare changeKeys (that is how a full pass
    # catches edits), which costs as many pages as listing them with bodies. So the posts
    # endpoint's count does NOT fall by the committed threads; what falls is the bytes (no
    # bodies, see above) and every request of the groups completed before the kill. Groups
    # the archive already holds are not listed again (no memberOf).
    for group in before.full_groups:
        kinds = [c.kind for c in calls if c.group == group]
        if kinds != ["threads"]:
            problems.append(f"completed group {group[:8]} cost {Counter(kinds)} in the rerun")
    bound = sum(ref.cost(g) for g in ref.groups - before.full_groups) + len(before.full_groups)
    bound += ref.member_of if not before.groups else 0
    if len(calls) > bound:
        problems.append(f"rerun made {len(calls)} requests, at most {bound} expected")
    if len(calls) > ref.sim_total:
        problems.append(f"rerun made {len(calls)} requests, the clean sync {ref.sim_total}")

    # The killed run is marked interrupted (or complete, if the kill came after its end).
    with closing(sqlite3.connect(db)) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM sync_runs ORDER BY id")]
    if statuses[-1] != "complete" or not set(statuses[:-1]) <= {"interrupted", "complete"}:
        problems.append(f"sync_runs statuses {statuses}")
    if len(statuses) != before.runs + 1:
        problems.append(f"{len(statuses)} runs recorded, expected {before.runs + 1}")
    return before, [f"kill {seconds:.3f}s after {anchor} start: {p}" for p in problems]


def test_sigkill_at_seeded_points_then_rerun_equals_an_uninterrupted_sync(tmp_path, tenant):
    with ExitStack() as stack:
        recorder, url = stack.enter_context(simulator(tenant))
        ref_db = tmp_path / "ref.db"
        began = time.monotonic()
        run_sync(url, ref_db)
        ref = Reference(
            snapshot(ref_db),
            recorder.first_at - began,
            time.monotonic() - recorder.first_at,
            recorder.calls,
            recorder.app.log.count(),
        )
        assert all(ref.snapshot[t][1] for t in ("posts", "blobs", "people", "attachments"))
        assert not fts_problems(ref_db)
        assert len(ref.groups) == 3 and len(ref.threads) == 60

        # Process startup (imports, opening and migrating the archive) takes 0.3 s on an idle
        # machine and twice that on a busy one: timed from process start, most points would
        # land in it. So the random points are timed from the first Graph request and spread
        # over the rest of the run; a few early ones cover startup itself.
        rng = random.Random(SEED)
        points = [("process", rng.uniform(0, ref.startup)) for _ in range(EARLY_POINTS)]
        points += [("request", rng.uniform(0, ref.duration)) for _ in range(RANDOM_POINTS)]

        sims: queue.Queue = queue.Queue()
        sims.put((recorder, url))
        for _ in range(WORKERS - 1):
            sims.put(stack.enter_context(simulator(tenant)))
        dbs = [tmp_path / f"kill{n:02d}" / "a.db" for n in range(len(points))]
        for db in dbs:
            db.parent.mkdir()
        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = list(pool.map(kill_and_rerun, points, dbs, [sims] * len(dbs),
                                     [ref] * len(dbs)))

    problems = [p for _, found in outcomes for p in found]
    assert not problems, "\n".join(problems)
    # The seeded points really did spread over the run: some before anything was stored,
    # some with threads committed (the case that matters for resuming), some later still.
    states = [before for before, _ in outcomes]
    assert sum(1 for s in states if not s.threads) >= 3, states
    assert sum(1 for s in states if s.threads) >= 10, states
    assert sum(1 for s in states if s.full_groups) >= 5, states
    # One version per post (nothing was edited upstream): equal tables above then also mean
    # no rerun stored a version twice.
    assert len(ref.snapshot["post_versions"][1]) == len(ref.snapshot["posts"][1])
