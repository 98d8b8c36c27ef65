"""The thread view and the search page in a real browser: Debian's headless Chromium.

Playwright's Python package drives ``/usr/bin/chromium`` (``scripts/test`` installs it with
apt-get; ``playwright install`` is never used). ``groupsync serve`` runs in a subprocess on
127.0.0.1. The archive holds the sample tenant plus a post that tries to run script in every
way mail can; the test checks it never ran, no dialog opened and no request left 127.0.0.1.

``SCREENSHOT_DIR=docs pytest tests/test_browser.py`` refreshes the README's screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from datasette.utils import tilde_encode

from groupsync import search
from groupsync.archive import Archive
from groupsync.simulator import make_app

from .conftest import (
    HOSTILE_TOPIC,
    MARKETING,
    NEWSLETTER_TOPIC,
    ROOT,
    SAMPLE_DATA,
    sync_sample,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Every way a mail body could try to run script or reach out, each setting a marker.
PWN = """<p>Follow-up from the billing department.</p>
<script>window.__pwned = 'script'</script>
<img src="x" onerror="window.__pwned = 'onerror'; alert('onerror')">
<img src="https://tracker.example/pixel.gif?u=1">
<a href="javascript:window.__pwned='href';alert(1)" id="pwn-link">Open the invoice</a>
<iframe srcdoc="<script>parent.__pwned='iframe'</script>"></iframe>
<svg><script>window.__pwned = 'svg'</script></svg>
<svg onload="window.__pwned = 'svgload'"></svg>
<div style="background:url(https://tracker.example/bg.png)">styled</div>
<object data="https://tracker.example/x.swf"></object>
<form action="https://tracker.example/collect"><button id="pwn-button">Verify</button></form>
<meta http-equiv="refresh" content="0;url=https://tracker.example/">
<link rel="stylesheet" href="https://tracker.example/x.css">
<details open ontoggle="window.__pwned = 'ontoggle'"><summary>more</summary>x</details>
"""
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
def archive(tmp_path_factory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("browser") / "groupsync.db"
    app = make_app(SAMPLE_DATA)
    hostile = next(t for t in app.state.threads(MARKETING) if t["topic"] == HOSTILE_TOPIC)
    newsletter = next(t for t in app.state.threads(MARKETING) if t["topic"] == NEWSLETTER_TOPIC)
    app.add_post(MARKETING, hostile["id"], {"body": {"contentType": "html", "content": PWN}})
    sync_sample(app, path)
    with Archive.open_for_writing(path) as db:
        search.update_index(db, search.index_path_for(path))
    search.close_indexes()
    return {"path": path, "hostile": hostile["id"], "newsletter": newsletter["id"],
            "post": hostile["posts"][0]["id"]}  # fmt: skip


@pytest.fixture(scope="module")
def server(archive, tmp_path_factory):
    """``groupsync serve`` on a free loopback port; yields its URL."""
    cwd = tmp_path_factory.mktemp("serve")
    command = [sys.executable, "-m", "groupsync", "--db", str(archive["path"]), "serve"]
    process = subprocess.Popen(
        [*command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url:
            pytest.fail(f"groupsync serve did not start: {process.stderr.read()}")  # type: ignore[union-attr]
        yield url.rstrip("/")
    finally:
        process.terminate()
        process.communicate(timeout=15)


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _chromium_or_skip()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page with every request, dialog, console message and page error recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()

    def assert_nothing_ran_or_left(self) -> None:
        assert self.page.evaluate("() => window.__pwned === undefined")
        assert self.dialogs == []
        assert self.errors == []
        hosts = {urlsplit(u).hostname for u in self.requests if not u.startswith("data:")}
        assert hosts == {"127.0.0.1"}, self.requests


@pytest.fixture
def watched(browser):
    page = Watched(browser)
    try:
        yield page
    finally:
        page.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=False)
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        out = ROOT / folder
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, out / name)
    return target


def thread_url(server: str, thread_id: str) -> str:
    return f"{server}/-/groupsync/thread/{tilde_encode(MARKETING)}/{tilde_encode(thread_id)}"


def test_hostile_thread_runs_nothing_and_loads_nothing_remote(server, archive, watched, tmp_path):
    page = watched.page
    response = page.goto(thread_url(server, archive["hostile"]))
    assert response is not None and response.status == 200
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == HOSTILE_TOPIC
    body = page.locator("article.groupsync-post").first.locator(".groupsync-body")
    assert "Your invoice #88412 of €4,980.00 is overdue" in body.inner_text()
    assert page.get_by_text("remote image blocked: https://tracker.example/pixel.gif?u=1").count()
    assert page.get_by_text("Follow-up from the billing department.").count() == 1
    screenshot(page, "thread-view-hostile.png", tmp_path)
    # clicking what the attacker offered does nothing either
    page.get_by_text("Open the invoice").click()
    page.get_by_text("Verify").first.click()
    page.wait_for_timeout(300)
    assert page.url.startswith(server)
    watched.assert_nothing_ran_or_left()
    assert page.locator(".groupsync-body script, .groupsync-body iframe").count() == 0


def test_thread_view_reads_like_a_conversation(server, archive, watched, tmp_path):
    page = watched.page
    page.goto(thread_url(server, archive["newsletter"]))
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == NEWSLETTER_TOPIC
    assert page.locator("article.groupsync-post").count() == 3
    assert page.get_by_text("Store of the month text is ready").count() == 1
    logo = page.locator(".groupsync-body img").first
    assert logo.get_attribute("src").startswith("/-/groupsync/attachment/")
    assert page.evaluate("(img) => img.complete && img.naturalWidth", logo.element_handle()) > 0
    watched.assert_nothing_ran_or_left()
    shot = screenshot(page, "thread-view.png", tmp_path)
    assert shot.stat().st_size > 10_000


def test_search_page_finds_and_links_to_threads(server, archive, watched, tmp_path):
    page = watched.page
    page.goto(f"{server}/-/groupsync/search")
    page.fill("input[name=q]", "launch")
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")
    count = page.locator(".groupsync-count-line").inner_text()
    assert re.search(r"of \d+ posts", count) and page.locator(".groupsync-hit").count() > 3
    assert page.locator(".groupsync-snippet mark").count() > 3
    screenshot(page, "search.png", tmp_path)
    page.fill("input[name=q]", "invoice")
    page.select_option("select[name=group]", label="Marketing")
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")
    hit = page.locator(".groupsync-hit-topic", has_text=HOSTILE_TOPIC).first
    assert hit.count() == 1
    assert "group=" + MARKETING in page.url
    hit.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == HOSTILE_TOPIC
    assert page.url.split("#")[0] == thread_url(server, archive["hostile"])
    assert page.locator(f"article#{page.url.split('#')[1]}").count() == 1
    watched.assert_nothing_ran_or_left()


def test_datasette_pages_work_under_the_policy(server, archive, watched):
    """Datasette's own pages get the policy too: their inline scripts run (allowed by hash),
    CodeMirror starts, and the console reports no violation."""
    page = watched.page
    db = archive["path"].stem
    post_id = archive["post"]
    pages = {
        f"{server}/{db}/posts": "() => window.DATASETTE_ALLOW_FACET === true",
        f"{server}/{db}": "() => document.querySelector('.CodeMirror') !== null",
        f"{server}/{db}?sql=select+id,+body_content+from+posts+limit+5":
            "() => document.querySelector('.CodeMirror') !== null",
        f"{server}/{db}/posts/{tilde_encode(post_id)}": "() => true",
        f"{server}/": "() => true",
    }
    for url, works in pages.items():
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        assert "default-src 'none'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        assert page.evaluate(works), url
    # The menu's inline script (closing open <details> on a click elsewhere) ran as well.
    page.goto(f"{server}/{db}/posts")
    page.locator("details.nav-menu > summary").click()
    assert page.locator("details.nav-menu[open]").count() == 1
    page.locator("h1").click()
    assert page.locator("details.nav-menu[open]").count() == 0
    violations = [c for c in watched.console if "Content Security Policy" in c]
    assert violations == [] and watched.errors == []
    watched.assert_nothing_ran_or_left()


# -- shards (issue 16): `groupsync serve A.db B.db`, one search over both -------------------


@pytest.fixture(scope="module")
def shard_server(tmp_path_factory):
    """Two shards of the sample tenant (hostile post included) served by one `serve`."""
    from groupsync.shards import Shard
    from groupsync.sync import Syncer, SyncOptions

    from .conftest import graph_for, new_archive

    folder = tmp_path_factory.mktemp("browser-shards")
    app = make_app(SAMPLE_DATA)
    hostile = next(t for t in app.state.threads(MARKETING) if t["topic"] == HOSTILE_TOPIC)
    app.add_post(MARKETING, hostile["id"], {"body": {"contentType": "html", "content": PWN}})
    paths = []
    for k in range(2):
        path = folder / f"shard-{k}.db"
        with graph_for(app) as graph, new_archive(path) as db:
            Syncer(db, graph, options=SyncOptions()).run(all_groups=True, shard=Shard(k, 2))
        paths.append(path)
    command = [sys.executable, "-m", "groupsync", "serve", *map(str, paths), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=folder)  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url:
            pytest.fail(f"groupsync serve did not start: {process.stderr.read()}")  # type: ignore[union-attr]
        yield url.rstrip("/"), [p.stem for p in paths]
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_search_over_shards_reaches_threads_in_each(shard_server, watched):
    server, names = shard_server
    page = watched.page
    page.goto(f"{server}/-/groupsync/search")
    page.fill("input[name=q]", "invoice OR paris")
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "db=" not in page.url  # the form searches every archive served
    links = page.locator(".groupsync-hit a[href*='/-/groupsync/thread/']")
    hrefs = [links.nth(n).get_attribute("href") or "" for n in range(links.count())]
    shards = {h.split("db=")[1].split("#")[0] for h in hrefs if "db=" in h}
    assert shards == set(names), hrefs
    for name in names:  # a hit of each shard opens its thread, from that shard
        page.goto(server + next(h for h in hrefs if f"db={name}" in h))
        page.wait_for_load_state("networkidle")
        assert page.locator("article.groupsync-post").count() >= 1
    page.goto(f"{server}/-/groupsync/search?q=invoice")
    page.wait_for_load_state("networkidle")
    assert page.locator(".groupsync-hit-topic", has_text=HOSTILE_TOPIC).count() >= 1
    watched.assert_nothing_ran_or_left()
