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
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
    serving,
    sync_sample,
)

# scripts/test runs these again on the Datasette 1.0 alpha (its SQL editor: .cm-editor).
pytestmark = [pytest.mark.browser, pytest.mark.datasette1]

KICKOFF_TOPIC = "Spring 2024 campaign kickoff"  # its replies quote Outlook's way (divRplyFwdMsg)
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
@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("browser") / "groupsync.db"
    app = make_app(SAMPLE_DATA)
    hostile = next(t for t in app.state.threads(MARKETING) if t["topic"] == HOSTILE_TOPIC)
    newsletter = next(t for t in app.state.threads(MARKETING) if t["topic"] == NEWSLETTER_TOPIC)
    app.add_post(MARKETING, hostile["id"], {"body": {"contentType": "html", "content": PWN}})
    # the hostile mail again, quoted in a reply: it stays inert when the fold is opened
    quoted = PWN.replace("Follow-up from the billing department.", "Quoted billing text.")
    quoted = quoted.replace("Open the invoice", "Open the quoted invoice")
    app.add_post(MARKETING, hostile["id"], {"body": {"contentType": "html", "content": (
        '<p>Forwarding this for review.</p><hr><div id="divRplyFwdMsg"><b>From:</b> Billing'
        f"<br><b>Sent:</b> Monday</div>{quoted}")}})  # fmt: skip
    sync_sample(app, path)
    with Archive.open_for_writing(path) as db:
        search.update_index(db, search.index_path_for(path))
    search.close_indexes()
    kickoff = next(t for t in app.state.threads(MARKETING) if t["topic"] == KICKOFF_TOPIC)
    return {"path": path, "hostile": hostile["id"], "newsletter": newsletter["id"],
            "post": hostile["posts"][0]["id"], "kickoff": kickoff["id"]}  # fmt: skip


@pytest.fixture(scope="module")
def server(archive, tmp_path_factory):
    """``groupsync serve`` on a free loopback port; yields its URL."""
    cwd = tmp_path_factory.mktemp("serve")
    with serving(["--db", str(archive["path"]), "serve"], cwd) as url:
        yield url


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
    assert re.search(r"of \d+ threads", count) and page.locator(".groupsync-hit").count() > 3
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
        f"{server}/{db}": "() => document.querySelector('.CodeMirror, .cm-editor') !== null",
        f"{server}/{db}?sql=select+id,+body_content+from+posts+limit+5":
            "() => document.querySelector('.CodeMirror, .cm-editor') !== null",
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


def test_the_search_page_shows_one_entry_per_thread(server, archive, watched):
    """A word in many posts of the same threads: each thread once, with its count of
    matching posts, and the count line saying threads and posts (at 1280 x 800)."""
    with Archive(archive["path"], readonly=True) as db:
        posts = search.search(db, search.index_path_for(archive["path"]), "the", limit=1000)
    search.close_indexes()
    threads = {h.thread_id for h in posts.hits}
    assert posts.total > len(threads) > 1  # the word is in several posts of some threads
    page = watched.page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/-/groupsync/search?q=the")
    page.wait_for_load_state("networkidle")
    links = page.locator("a.groupsync-hit-topic")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    shown = [href.split("#")[0] for href in hrefs]
    assert len(shown) == len(set(shown)) == min(20, len(threads))
    count = page.locator(".groupsync-count-line").inner_text()
    assert f"of {len(threads)} threads ({posts.total} matching posts)" in count
    metas = page.locator(".groupsync-hit-meta").all_inner_texts()
    matching = [int(re.search(r"(\d+) matching post", m).group(1)) for m in metas]
    assert max(matching) > 1 and all(n >= 1 for n in matching)
    assert page.locator(".groupsync-hit").first.is_visible()
    watched.assert_nothing_ran_or_left()


def in_viewport(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return (
        bool(box)
        and box["x"] >= 0
        and box["y"] >= 0
        and (
            box["x"] + box["width"] <= size["width"] and box["y"] + box["height"] <= size["height"]
        )
    )


def test_posts_table_reads_at_1280_pixels(server, archive, browser, tmp_path):
    """Date, sender and topic are in view without scrolling sideways: the page's own
    vertical scroll brings the table up, and nothing needs to move left or right."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        db = archive["path"].stem
        response = page.goto(f"{server}/{db}/posts")
        assert response is not None and response.status == 200
        page.wait_for_load_state("networkidle")
        page.locator("table.rows-and-columns").evaluate("t => t.scrollIntoView()")
        wanted = ["receivedDateTime", "sender_name", "thread_id"]
        for column in wanted:
            header = page.locator(f"table.rows-and-columns th.col-{column}")
            cell = page.locator("table.rows-and-columns tbody tr >> nth=0").locator(
                f"td.col-{column}"
            )
            assert in_viewport(page, header), column
            assert in_viewport(page, cell), column
        assert page.evaluate("() => window.scrollX") == 0
        wrapper = page.locator(".table-wrapper").evaluate("w => w.scrollLeft")
        assert wrapper == 0
        first = page.locator("table.rows-and-columns tbody tr >> nth=0")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+Z", first.locator(
            "td.col-receivedDateTime").inner_text().strip())  # fmt: skip
        assert first.locator("td.col-thread_id a").inner_text().strip()
        screenshot(page, "posts-table.png", tmp_path)
    finally:
        context.close()


def test_quoted_reply_is_folded_and_opens_with_a_click(server, archive, watched, tmp_path):
    page = watched.page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(thread_url(server, archive["kickoff"]))
    page.wait_for_load_state("networkidle")
    fold = page.locator("article.groupsync-post details.groupsync-quote").first
    assert fold.count() == 1 and fold.get_attribute("open") is None
    quoted = fold.locator(":scope > summary ~ *").first
    assert not quoted.is_visible()
    assert "Quoted text" in fold.locator(":scope > summary").inner_text()
    fold.locator(":scope > summary").click()
    assert fold.get_attribute("open") is not None
    assert quoted.is_visible()
    screenshot(page, "thread-quote-open.png", tmp_path)
    watched.assert_nothing_ran_or_left()


def test_hostile_mail_in_a_folded_quote_runs_nothing_when_opened(server, archive, watched):
    page = watched.page
    page.goto(thread_url(server, archive["hostile"]))
    page.wait_for_load_state("networkidle")
    post = page.locator("article.groupsync-post", has_text="Forwarding this for review.")
    fold = post.locator("details.groupsync-quote")
    assert fold.count() == 1 and not post.get_by_text("Quoted billing text.").is_visible()
    fold.locator(":scope > summary").click()
    assert post.get_by_text("Quoted billing text.").is_visible()
    post.get_by_text("Open the quoted invoice").click()
    page.wait_for_timeout(300)
    assert page.url.startswith(server)
    watched.assert_nothing_ran_or_left()
    # The same mail in Datasette's posts table: sanitised in a bounded cell, nothing runs.
    db = archive["path"].stem
    page.goto(f"{server}/{db}/posts?thread_id={quote(archive['hostile'])}")
    page.wait_for_load_state("networkidle")
    cells = page.locator("td.col-body_content .groupsync-cell-body")
    assert cells.count() >= 2
    assert page.locator("table.rows-and-columns script, table.rows-and-columns iframe").count() == 0
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
    with serving(["serve", *map(str, paths)], folder) as url:
        yield url, [p.stem for p in paths]


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
