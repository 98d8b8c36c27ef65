"""What every test shares, so each builds its world one way.

The sample tenant's group ids (``MARKETING`` ... ``JOINED``, ``ARCHIVED``); a simulator of
it (``sim``) and an in-process GraphClient (``graph_for``, fixture ``graph``); the real
sync in-process (``sync_archive``, ``sync_sample``); the session's synced sample archive
(``sample_archive``, read-only; ``copy_sample``/``sample_copy`` to change it), its search
index (``indexed_sample``) and Datasette over it (``sample_datasette``); ``new_archive``,
the one place tests create archives; ``rows`` for plain SQL on a file; fake and virtual
clocks; and the real CLI process (``run_cli``) for what needs a process.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from groupsync.archive import Archive, utc_now
from groupsync.graph import GraphClient
from groupsync.simulator import Simulator, make_app
from groupsync.sync import Syncer, SyncOptions, SyncReport

from . import hostile

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
GRAPH_SAMPLES = ROOT.parent / "shared" / "graph-samples"


class FakeClock:
    """Time that moves only when someone sleeps, so throttle tests never wait."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


class VirtualClock(FakeClock):
    """Time shared by threads that moves only when they sleep, calls taking none: a thread
    wakes at the time it last read plus what it slept, and threads that sleep at once wake
    together, as on a real clock; time never goes back."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._lock = threading.Lock()
        self._read = threading.local()

    def time(self) -> float:
        with self._lock:
            self._read.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now = max(self.now, getattr(self._read, "at", self.now) + max(seconds, 0.0))
            self._read.at = self.now

    def utc(self) -> str:
        """The virtual now as Graph writes times (``groupsync.archive.utc_now``'s format)."""
        return datetime.fromtimestamp(self.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def virtual_time(monkeypatch) -> VirtualClock:
    """A ``VirtualClock`` starting now, which the simulator's request log, rate limit and
    latency also follow: pass it as the client's and the throttle's clock."""
    import time
    import types

    import groupsync.simulator.app

    clock = VirtualClock(time.time())
    fake = types.SimpleNamespace(time=clock.time, monotonic=clock.time, sleep=clock.sleep)
    monkeypatch.setattr(groupsync.simulator.app, "time", fake)
    return clock


def graph_sample(name: str) -> dict[str, Any]:
    """A payload from Microsoft's documentation, without our ``_source`` note."""
    path = GRAPH_SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not here (it lives in ../shared beside the repo)")
    data = json.loads(path.read_text())
    data.pop("_source", None)
    return data


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch, tmp_path):
    """No GROUPSYNC_* or proxy settings leak in; msal's cache goes to a temp folder."""
    for name in list(os.environ):
        if name.startswith("GROUPSYNC_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


# The sample tenant's groups (sample_data/groups.json), named once for every test.
MARKETING = "83231e12-1380-4fe3-b849-b614bcff5d6c"
ENGINEERING = "b8f3e8ed-9bff-4e7e-acca-272a78b653ec"
PARIS = "639ffed1-1c46-44c0-b07f-d0f918950bdf"
ANNOUNCEMENTS = "36a8fb87-f96d-447b-8a27-33dd4dc585be"  # public; the demo user is not a member
LEADERSHIP = "99e3878d-a879-41d7-a784-fd7d80e16089"  # private; the demo user is not a member
SECURITY_GROUP = "5f0c8a4e-2d7b-4c1e-9a63-0b8e4d2f7a15"  # in memberOf, no mailbox
DISTRIBUTION_LIST = "c4a1e7d2-6b3f-4f8a-8e25-7d9b1c3e5f60"  # in memberOf, no mailbox
JOINED = [MARKETING, ENGINEERING, PARIS]
ARCHIVED = [*JOINED, ANNOUNCEMENTS]  # what a sync of the sample tenant archives
# Two Marketing threads the HTML tests look at.
HOSTILE_TOPIC = "Suspicious invoice — DO NOT OPEN (phishing sample, hostile HTML)"
NEWSLETTER_TOPIC = "Newsletter draft – April 2025"
GRAPH_BASE = "http://graph.test/v1.0"


def new_archive(path: str | os.PathLike[str] = ":memory:") -> Archive:
    """A writable archive, created or migrated. Tests make their archives here, so a change
    to how an archive is opened for writing touches this one place."""
    return Archive.open_for_writing(path)


def rows(db: str | os.PathLike[str], sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """``sql`` run on the file ``db`` through plain sqlite3 (foreign keys off, as SQLite's
    default, so a test can damage rows), committed; every row it returns."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def graph_for(
    app: Any, token: str | Callable[..., str] = "t", **options: Any
) -> GraphClient:
    """A GraphClient talking to a simulator (or any WSGI app) in-process: throttle off and
    a fake clock, so retries never sleep. ``token`` is a string or a token provider."""
    provider = token if callable(token) else (lambda force_refresh=False: token)
    return GraphClient(
        GRAPH_BASE,
        provider,
        transport=httpx.WSGITransport(app=app),
        **{"clock": FakeClock(), **options},
    )


def sync_archive(
    app: Any,
    path: str | os.PathLike[str],
    group_ids: Iterable[str] = (),
    *,
    joined: bool = False,
    token: str | Callable[..., str] = "t",
    graph_options: dict[str, Any] | None = None,
    **options: Any,
) -> SyncReport:
    """The real sync, in-process, of ``app`` into the archive at ``path``; its report.
    ``options`` are ``SyncOptions``; with no groups, the sync picks them as the CLI does."""
    with graph_for(app, token, **(graph_options or {})) as graph, new_archive(path) as archive:
        syncer = Syncer(archive, graph, options=SyncOptions(**options))
        return syncer.run(group_ids, joined=joined)


def sync_sample(
    app: Any, path: str | os.PathLike[str], *, full: bool = False, token: str = "t"
) -> SyncReport:
    """The sample tenant as the tests know it: the joined groups plus the public one, or
    (``full``) a full reconcile of what the archive holds."""
    if full:
        return sync_archive(app, path, token=token, full=True)
    return sync_archive(app, path, [ANNOUNCEMENTS], joined=True, token=token)


def first_with_attachments(archive: Archive, group_id: str) -> tuple[str, dict[str, Any]]:
    """The first archived post of ``group_id`` with attachments: (thread id, post)."""
    from groupsync import reads

    for thread in reads.iter_threads(archive, group_id):
        for post in reads.iter_posts(archive, group_id, thread["id"]):
            if post["hasAttachments"]:
                return thread["id"], post
    raise AssertionError(f"no post with attachments in {group_id}")


def generate_tenant(out: Path, **sizes: int) -> Path:
    """A tenant written to ``out`` by scripts/generate_tenant.py, given its sizes and seed
    (``groups=2, threads=60, posts=400, attachments=40, seed=5``)."""
    args = [f"--{name}={value}" for name, value in sizes.items()]
    script = ROOT / "scripts" / "generate_tenant.py"
    subprocess.run([sys.executable, str(script), *args, "--out", str(out)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return out


@pytest.fixture
def sim() -> Simulator:
    """A simulator of the sample tenant of the test's own, to change upstream."""
    return make_app(SAMPLE_DATA)


@pytest.fixture
def graph(sim) -> Iterator[GraphClient]:
    """A GraphClient over ``sim``, in-process."""
    with graph_for(sim) as client:
        yield client


# -- groups named the ways a tenant names them (groupsync.groupref) ------------------------

NAMED = {
    "engineering": "6f1e0c1a-0000-4000-8000-000000000001",
    "engineering_ops": "6f1e0c1a-0000-4000-8000-000000000002",
    "paris": "6f1e0c1a-0000-4000-8000-000000000003",
    "design": "6f1e0c1a-0000-4000-8000-000000000004",
    "design_upper": "6f1e0c1a-0000-4000-8000-000000000005",
    "hostile": "6f1e0c1a-0000-4000-8000-000000000006",
    "evil_twin": "6f1e0c1a-0000-4000-8000-000000000007",
    "marketing": "6f1e0c1a-0000-4000-8000-000000000008",
    "marketing_old": "6f1e0c1a-0000-4000-8000-000000000009",
    "engineering_old": "6f1e0c1a-0000-4000-8000-00000000000a",
    "id_spelled": "6f1e0c1a-0000-4000-8000-00000000000b",
}
HOSTILE_NAME = "\x1b[2J\u202eEvil <b>\x07"
NAMED_GROUPS = [
    # (key, displayName, mail, mailNickname, deleted upstream)
    ("engineering", "Engineering", "engineering@contoso.com", "engineering", False),
    ("engineering_ops", "Engineering Ops", "eng-ops@contoso.com", "eng-ops", False),
    ("paris", "Équipe Paris", "equipe-paris@contoso.com", "equipe-paris", False),
    ("design", "Design", "design@contoso.com", "design", False),
    ("design_upper", "DESIGN", "design-2@contoso.com", "design-2", False),
    ("hostile", HOSTILE_NAME, "evil@contoso.com", "evil", False),
    ("evil_twin", "Evil twin", "evil-twin@contoso.com", "evil-twin", False),
    ("marketing", "Marketing", "marketing@contoso.com", "marketing", False),
    ("marketing_old", "Marketing Archive", "marketing-old@contoso.com", "marketing-old", True),
    ("engineering_old", "Engineering", "engineering-2019@contoso.com", "engineering-2019", True),
    # a display name that spells another group's id: the id wins
    ("id_spelled", NAMED["paris"], "spelled@contoso.com", "spelled", False),
]


def save_named_groups(archive: Any) -> None:
    """NAMED_GROUPS into ``archive``, the deleted ones tombstoned as a full sync would."""
    now = "2025-01-01T00:00:00Z"
    with archive.atomic():
        for key, name, mail, nickname, deleted in NAMED_GROUPS:
            group = {"id": NAMED[key], "displayName": name, "mail": mail, "mailNickname": nickname}
            archive.save_group(group, now)
            if deleted:
                archive.note_group_access(NAMED[key], "deleted upstream", now)


@pytest.fixture(scope="module")
def named_groups():
    """An in-memory archive of groups whose names collide, fold, prefix one another and
    misbehave (control characters, a bidi override, markup), some deleted upstream."""
    with new_archive() as archive:
        save_named_groups(archive)
        yield archive


# One id of each kind the CLI and GraphClient refuse: tests/hostile.py holds them.
BAD_IDS = hostile.BAD_IDS


def run_cli(
    *args: str | bytes,
    db: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    umask: int | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """The real ``groupsync`` in a subprocess; arguments may be bytes (not UTF-8, say).

    ``env`` adds to a copy of the environment (GROUPSYNC_* already cleared by
    ``clean_environ``); ``db`` sets GROUPSYNC_DB; ``umask`` is the child's.
    """
    environ = {**os.environ, **(env or {})}
    if db is not None:
        environ["GROUPSYNC_DB"] = str(db)
    command = [os.fsencode(sys.executable), b"-m", b"groupsync"]
    command += [a if isinstance(a, bytes) else os.fsencode(a) for a in args]
    return subprocess.run(
        command,
        env=environ,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """Assert a failure told in exactly one line on stderr, no traceback; that line."""
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode not in (0, None), stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.fixture
def mounts():
    """Mount as root (``mounts(args, target)`` runs ``mount *args target``), unmounted at
    the end, last first; skips where this process may not mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    done: list[Path] = []

    def mount(args: list[str], target: Path) -> None:
        result = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mount is not permitted here: {result.stderr.strip()}")
        if target not in done:
            done.append(target)

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory) -> Path:
    """The sample tenant synced once by the real sync (``sync_sample``) from a simulator
    nobody changes. Shared by the whole session: never write to it; ``copy_sample`` it."""
    path = tmp_path_factory.mktemp("sample-archive") / "archive.db"
    sync_sample(make_app(SAMPLE_DATA), path)
    return path


def copy_sample(sample_archive: Path, path: str | os.PathLike[str]) -> Path:
    """A copy of the session's sample archive at ``path``, to change: the archive a
    ``sync_sample`` of a fresh simulator would give, without syncing again."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample_archive, target)  # its mode too: 0600, as groupsync makes it
    return target


@pytest.fixture
def sample_copy(sample_archive, tmp_path) -> Path:
    """A copy of the sample archive of the test's own (``tmp_path/archive.db``)."""
    return copy_sample(sample_archive, tmp_path / "archive.db")


@pytest.fixture(scope="module")
def indexed_sample(sample_archive, tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """A copy of the sample archive and its search index, built once per module that
    only reads them: ``(archive path, index path)``."""
    from groupsync import search

    db = copy_sample(sample_archive, tmp_path_factory.mktemp("indexed") / "sample.db")
    index = search.index_path_for(db)
    with Archive.open_for_writing(db) as archive:
        search.rebuild_index(archive, index, procs=1)
    yield db, index
    search.close_indexes()


@pytest.fixture(scope="session")
def sample_datasette(sample_archive) -> Iterator[Any]:
    """Datasette over the sample archive, immutable, as ``groupsync serve`` builds it; use
    ``await sample_datasette.client.get(...)``."""
    from groupsync import search
    from groupsync.datasette_plugin.server import make_datasette

    yield make_datasette(sample_archive, immutable=True)
    search.close_indexes()


@pytest.fixture(scope="session")
def hostile_archive(sample_archive, tmp_path_factory) -> Path:
    """The sample archive with ``tests.hostile`` written into it, through the archive's own
    save functions (a new version of each post, as a sync would store it):

    * every group's display name, mail and nickname, every thread's and conversation's topic;
    * each post's sender and author names and addresses, participants, categories and body
      (HTML for some, text for others);
    * one attachment per hostile string (that string as its name, a hostile content type,
      non-UTF-8 bytes as content), spread over the posts, plus reference attachments (no
      bytes) with hostile names.

    Lone surrogates are left out: UTF-8 text, so the archive, cannot hold them. Shared by
    the session (exports only add a row to ``exports``): copy it before changing it.
    """
    path = tmp_path_factory.mktemp("hostile-archive") / "archive.db"
    with Archive(sample_archive, readonly=True) as source:
        source.conn.execute("VACUUM INTO ?", (str(path),))
    texts = hostile.STORABLE
    addresses = hostile.ADDRESSES
    types = hostile.CONTENT_TYPES
    blobs = [*hostile.NON_UTF8_BYTES, b"", "é\r\n".encode()]
    now = utc_now()

    def pick(items: list, n: int):
        return items[n % len(items)]

    with new_archive(path) as archive, archive.atomic():
        conn = archive.conn
        for n, (group_json,) in enumerate(conn.execute("SELECT json FROM groups").fetchall()):
            group = json.loads(group_json)
            group.update(
                displayName=pick(texts, n), mail=pick(addresses, n), mailNickname=pick(texts, n + 7)
            )
            archive.save_group(group, now)
        for n, (thread_id,) in enumerate(conn.execute("SELECT id FROM threads ORDER BY id")):
            conn.execute("UPDATE threads SET topic = ? WHERE id = ?", (pick(texts, n), thread_id))
        for n, (conversation_id,) in enumerate(
            conn.execute("SELECT id FROM conversations ORDER BY id").fetchall()
        ):
            conn.execute(
                "UPDATE conversations SET topic = ? WHERE id = ?",
                (pick(texts, n + 3), conversation_id),
            )
        posts = conn.execute(
            "SELECT p.group_id, p.thread_id, v.json FROM posts p JOIN post_versions v "
            "ON v.post_id = p.id AND v.changeKey = p.changeKey "
            "WHERE p.deleted_at IS NULL ORDER BY p.id"
        ).fetchall()
        extra: dict[int, list[dict]] = {}
        for n, text in enumerate(texts):
            extra.setdefault(n % len(posts), []).append(
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "id": f"hostile-{n}",
                    "name": text,
                    "contentType": pick(types, n),
                    "size": len(pick(blobs, n)),
                    "isInline": False,
                    "contentBytes": base64.b64encode(pick(blobs, n)).decode(),
                }
            )
        for n, text in enumerate(hostile.PATHS + hostile.LINE_BREAKS):
            extra.setdefault((n * 7) % len(posts), []).append(
                {
                    "@odata.type": "#microsoft.graph.referenceAttachment",
                    "id": f"hostile-ref-{n}",
                    "name": text,
                    "contentType": pick(types, n + 1),
                    "isInline": False,
                }
            )
        for n, (group_id, thread_id, version_json) in enumerate(posts):
            post = json.loads(version_json)
            name, address = pick(texts, n + 11), pick(addresses, n)
            post["from"] = {"emailAddress": {"name": pick(texts, n + 5), "address": address}}
            post["sender"] = {"emailAddress": {"name": name, "address": pick(addresses, n + 1)}}
            post["newParticipants"] = [
                {"emailAddress": {"name": pick(texts, n + k), "address": pick(addresses, n + k)}}
                for k in (13, 17)
            ]
            post["categories"] = [pick(texts, n + 19), pick(texts, n + 23)]
            body = pick(texts, n) + "\n" + pick(texts, n + 29)
            post["body"] = (
                {"contentType": "html", "content": f"<p>{body}</p><p>{pick(texts, n + 31)}</p>"}
                if n % 2
                else {"contentType": "text", "content": body}
            )
            post["attachments"] = [*(post.get("attachments") or []), *extra.get(n, [])]
            post["hasAttachments"] = bool(post["attachments"])
            post["changeKey"] = f"{post.get('changeKey') or ''}-hostile"
            archive.save_posts(group_id, thread_id, [post], now)
    return path


def read_commands(group: str, conversation: str, thread: str, post: str) -> list[list[str]]:
    """The nine read commands (with --versions), as a person runs them on an archive."""
    g, c, t, p = group, conversation, thread, post
    return [
        ["groups"],
        ["group", g],
        ["conversations", g],
        ["conversation", g, c],
        ["threads", g],
        ["thread", g, t],
        ["posts", g, t],
        ["post", g, t, p],
        ["post", g, t, p, "--versions"],
        ["attachments", g, t, p],
    ]


@pytest.fixture
def closes_logs() -> Iterator[None]:
    """After the test, close the access logs and search indexes the process keeps open
    (a test module that serves or logs uses it for every test: ``usefixtures``)."""
    yield
    from groupsync import access, search

    access.close_access_logs()
    search.close_indexes()


def cli_env(
    url: str, db: str | os.PathLike[str], *, token: str = "e2e-token", rate: str = "0"
) -> dict[str, str]:
    """The environment of a real ``groupsync`` process: Graph at ``url`` (a simulator
    takes any token), the archive ``db``, the rate limit off unless given."""
    return {
        **os.environ,
        "GROUPSYNC_GRAPH_URL": url,
        "GROUPSYNC_ACCESS_TOKEN": token,
        "GROUPSYNC_DB": str(db),
        "GROUPSYNC_RATE": rate,
    }


@contextlib.contextmanager
def serving(
    args: list[str], cwd: str | os.PathLike[str], env: dict[str, str] | None = None
) -> Iterator[str]:
    """``groupsync *args`` (a ``serve``) on a free loopback port until the block ends:
    yields its base URL (what it prints, less groupsync's home)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "groupsync", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url:
            pytest.fail(f"groupsync serve did not start: {process.stderr.read()}")  # type: ignore[union-attr]
        assert url.endswith("/-/groupsync/"), url  # serve prints groupsync's home
        yield url.removesuffix("/-/groupsync/")
    finally:
        process.terminate()
        process.communicate(timeout=15)


# Debian's headless Chromium, driven by Playwright (test_browser.py, test_browser_login.py).
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _chromium_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.skip("Playwright's Python package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it with apt-get)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _chromium_or_skip()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
