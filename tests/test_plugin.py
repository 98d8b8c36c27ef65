"""The Datasette plugin, through Datasette's own client, on an archive the real sync built.

The archive is the sample tenant synced from the simulator in-process, then changed
upstream (a post edited, an SVG attached, a thread deleted) and reconciled, so it holds
versions and tombstones. Expected rows come from the simulator's state, not from SQL.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from datasette import hookspecs
from datasette.utils import tilde_encode

from groupsync import search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.datasette_plugin import metadata as plugin_metadata
from groupsync.datasette_plugin import views
from groupsync.datasette_plugin.archives import post_anchor
from groupsync.datasette_plugin.compat import DATASETTE_1
from groupsync.datasette_plugin.server import make_datasette
from groupsync.html import sanitise
from groupsync.simulator import make_app

from .conftest import (
    ANNOUNCEMENTS,
    ARCHIVED,
    ENGINEERING,
    HOSTILE_TOPIC,
    MARKETING,
    NEWSLETTER_TOPIC,
    PARIS,
    SAMPLE_DATA,
    copy_sample,
    rows,
    save_named_groups,
    sync_sample,
)

# scripts/test also runs these against the Datasette 1.0 alpha in .venv-ds1.
pytestmark = pytest.mark.datasette1

EDITED_TEXT = "Updated: the per-diem is now €60 and taxis need a receipt."
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="4"/></svg>'
ACTIVE_TAGS = ["script", "iframe", "frame", "object", "embed", "form", "input", "button",
               "svg", "math", "style", "link", "meta", "base", "applet", "template"]  # fmt: skip


class Tenant:
    """The simulator's tenant after the changes, plus the ids the tests look at."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state

    def threads(self, group_id: str) -> list[dict[str, Any]]:
        return self.state.threads(group_id)

    def thread_by_topic(self, group_id: str, topic: str, with_attachments: bool = False) -> Any:
        for thread in self.threads(group_id):
            if thread["topic"] != topic:
                continue
            if with_attachments and not any(p.get("attachments") for p in thread["posts"]):
                continue
            return thread
        raise LookupError(topic)

    def group_name(self, group_id: str) -> str:
        return self.state.group(group_id)["displayName"]


@pytest.fixture(scope="session")
def sample(sample_archive, tmp_path_factory) -> dict[str, Any]:
    """The sample archive: synced, then an edit, an attachment and a deletion reconciled."""
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("plugin") / "groupsync.db")
    app = make_app(SAMPLE_DATA)
    tenant = Tenant(app)
    travel = tenant.thread_by_topic(ANNOUNCEMENTS, "New travel & expenses policy")
    edited = travel["posts"][0]
    app.edit_post(ANNOUNCEMENTS, travel["id"], edited["id"], content=f"<p>{EDITED_TEXT}</p>")
    logo = tenant.thread_by_topic(MARKETING, "New logo proposal — v3")
    app.add_attachment(
        MARKETING, logo["id"], logo["posts"][0]["id"], "diagram.svg", "image/svg+xml", SVG
    )
    gone = tenant.thread_by_topic(ENGINEERING, "Roadmap 2025 (draft)", with_attachments=True)
    gone_posts = [p["id"] for p in gone["posts"]]
    gone_attachments = [a["name"] for p in gone["posts"] for a in p.get("attachments") or []]
    app.delete_thread(ENGINEERING, gone["id"])
    sync_sample(app, path, full=True)
    with Archive.open_for_writing(path) as archive:
        search.update_index(archive, search.index_path_for(path), keep_deleted=True)
    search.close_indexes()
    return {
        "path": path,
        "tenant": tenant,
        "edited": (ANNOUNCEMENTS, travel["id"], edited["id"]),
        "svg_post": (MARKETING, logo["id"], logo["posts"][0]["id"]),
        "deleted": (ENGINEERING, gone["id"], gone_posts, gone_attachments),
        "hostile": tenant.thread_by_topic(MARKETING, HOSTILE_TOPIC),
        "newsletter": tenant.thread_by_topic(MARKETING, NEWSLETTER_TOPIC),
    }


@pytest.fixture(scope="session")
def ds(sample):
    yield make_datasette(sample["path"], immutable=True)
    search.close_indexes()


@pytest.fixture(scope="session")
def db_name(sample) -> str:
    return Path(sample["path"]).stem


def thread_path(group_id: str, thread_id: str) -> str:
    return f"/-/groupsync/thread/{tilde_encode(group_id)}/{tilde_encode(thread_id)}"


def soup(text: str) -> BeautifulSoup:
    return BeautifulSoup(text, "html.parser")


def assert_inert(fragment: Any) -> None:
    """Nothing in the fragment can run or load from outside 127.0.0.1."""
    for tag in ACTIVE_TAGS:
        assert fragment.find(tag) is None, f"<{tag}> survived"
    for element in fragment.find_all(True):
        for name, value in element.attrs.items():
            assert not name.lower().startswith("on"), f"{name} on <{element.name}>"
            text = " ".join(value) if isinstance(value, list) else str(value)
            lowered = re.sub(r"\s", "", text).lower()
            assert "javascript:" not in lowered and "vbscript:" not in lowered
            if name == "style":
                assert "url(" not in lowered and "expression" not in lowered
            if name == "href":
                assert lowered.startswith(("http:", "https:", "mailto:", "tel:", "#", "/")), text
        if element.name == "img":
            src = element.get("src", "")
            assert src.startswith(("/-/groupsync/attachment/", "data:image/")), src


# -- plugin wiring ------------------------------------------------------------------------


def test_entry_point_registers_the_package():
    from importlib.metadata import entry_points

    found = {e.name: e.value for e in entry_points(group="datasette")}
    assert found.get("groupsync") == "groupsync.datasette_plugin"


@pytest.mark.asyncio
async def test_plugin_is_loaded_with_templates(sample_datasette):
    plugins = (await sample_datasette.client.get("/-/plugins.json")).json()
    ours = [p for p in plugins if "groupsync" in p["name"]]
    assert ours and ours[0]["templates"] is True
    hooks = set(ours[0]["hooks"])
    assert {"register_routes", "render_cell", "prepare_jinja2_environment"} <= hooks
    # Only hooks this Datasette has: get_metadata on 0.65, never on the 1.0 alphas.
    assert {h for h in hooks if not hasattr(hookspecs, h)} == set()
    assert ("get_metadata" in hooks) is not DATASETTE_1


@pytest.mark.asyncio
async def test_plain_datasette_picks_the_plugin_up(sample):
    from datasette.app import Datasette

    plain = Datasette([str(sample["path"])])  # as `datasette groupsync.db` does
    assert (await plain.client.get("/-/groupsync/")).status_code == 200
    assert (await shown_metadata(plain))["title"] == "groupsync archive"


def test_archive_is_served_read_only(ds, db_name):
    db = ds.get_database(db_name)
    assert db.is_mutable is False
    mutable = make_datasette(db.path)
    assert mutable.get_database(db_name).is_mutable  # read-only connections, but live
    assert not any(q.get("write") for q in plugin_metadata.CANNED_QUERIES.values())


@pytest.mark.asyncio
async def test_sql_that_writes_is_refused(ds, db_name):
    response = await ds.client.get(f"/{db_name}.json?sql=delete+from+posts", follow_redirects=True)
    assert response.status_code in {400, 403}
    assert rows(ds.get_database(db_name).path, "select count(*) from posts")[0][0] > 0


# -- every page ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_page_returns_200(ds, db_name, sample):
    path = sample["path"]
    tables = [r[0] for r in rows(path, "select name from sqlite_master where type='table'")]
    pages = ["/", f"/{db_name}", "/-/groupsync/", "/-/groupsync", "/-/groupsync/search",
             "/-/static-plugins/groupsync/groupsync.css"]  # fmt: skip
    pages += [] if DATASETTE_1 else ["/-/metadata.json"]  # 1.0 has no such page
    # The 1.0 alphas forbid reading FTS shadow tables (the index's own storage).
    shadow = re.compile(r"_fts_(data|idx|docsize|config|content)$")
    pages += [f"/{db_name}/{quote(t)}" for t in tables if not (DATASETTE_1 and shadow.search(t))]
    pages += [f"/{db_name}/{q}" for q in plugin_metadata.CANNED_QUERIES]
    pages += [f"/{db_name}/posts?_facet_month=receivedDateTime"]
    for group_id, thread_id in rows(path, "select group_id, id from threads"):
        pages.append(thread_path(group_id, thread_id))
        pages.append(f"/{db_name}/threads/{tilde_encode(thread_id)}")
    for (post_id,) in rows(path, "select id from posts limit 10"):
        pages.append(f"/{db_name}/posts/{tilde_encode(post_id)}")
    for (sha256,) in rows(path, "select sha256 from blobs"):
        pages.append(f"/-/groupsync/attachment/{sha256}")
    failed = {}
    for page in pages:
        response = await ds.client.get(page, follow_redirects=True)
        if response.status_code != 200:
            failed[page] = response.status_code
    assert not failed
    assert len(pages) > 90


@pytest.mark.asyncio
async def test_plugin_pages_carry_a_content_security_policy(ds, sample):
    group_id, thread_id, *_ = sample["edited"]
    for page in ["/-/groupsync/", "/-/groupsync/search", thread_path(group_id, thread_id)]:
        response = await ds.client.get(page)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "img-src 'self' data:" in policy
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        page_soup = soup(response.text)
        for script in page_soup.find_all("script"):
            assert not script.get("src") or script["src"].startswith("/")


@pytest.mark.asyncio
async def test_stylesheet_is_served_by_datasettes_plugin_static(ds, db_name, sample):
    group_id, thread_id, *_ = sample["edited"]
    css = "/-/static-plugins/groupsync/groupsync.css"
    for page in ["/-/groupsync/", "/-/groupsync/search", thread_path(group_id, thread_id),
                 f"/{db_name}/posts"]:  # fmt: skip
        links = soup((await ds.client.get(page)).text).find_all("link", rel="stylesheet")
        assert css in [link["href"] for link in links], page
    response = await ds.client.get(css)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    for gone in ["/-/static-plugins/groupsync/nope.css", "/-/static-plugins/groupsync/../x"]:
        assert (await ds.client.get(gone)).status_code == 404


def datasette_pages(db_name: str, sample) -> list[str]:
    """Datasette's own pages, one of each kind, and the plugin's."""
    group_id, thread_id, *_ = sample["edited"]
    (post_id,) = rows(sample["path"], "select id from posts limit 1")[0]
    return [
        "/", f"/{db_name}", f"/{db_name}/posts", f"/{db_name}/posts/{tilde_encode(post_id)}",
        f"/{db_name}?" + urlencode({"sql": "select id, body_content from posts limit 3"}),
        f"/{db_name}/busiest_threads", f"/{db_name}/posts.json", "/-/versions",
        "/-/groupsync/", "/-/groupsync/search?q=budget", thread_path(group_id, thread_id),
        "/no/such/page",
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_every_page_carries_the_policy_and_every_inline_script_is_allowed(
    ds, db_name, sample
):
    import base64

    for page in datasette_pages(db_name, sample):
        response = await ds.client.get(page)
        policy = response.headers["content-security-policy"]
        script_src = policy.split("script-src")[1].split(";")[0]
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff", page
        if not response.headers["content-type"].startswith("text/html"):
            continue  # JSON holds mail as data: a browser never runs it
        for script in re.findall(r"<script>(.*?)</script>", response.text, re.S):
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in script_src, (page, script[:80])
        for tag in re.findall(r"<script[^>]*>", response.text):
            assert tag == "<script>" or re.search(r' src="/', tag), (page, tag)
    # A download keeps its own, stricter, policy.
    (sha256,) = rows(sample["path"], "select sha256 from blobs limit 1")[0]
    response = await ds.client.get(f"/-/groupsync/attachment/{sha256}")
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"


# -- metadata -----------------------------------------------------------------------------


async def shown_metadata(ds: Any, database: str | None = None, table: str | None = None) -> Any:
    """The metadata Datasette shows (a table's with ``columns``), on 0.65 or a 1.0 alpha."""
    await ds.invoke_startup()
    if not DATASETTE_1:
        return ds.metadata(database=database, table=table) or {}
    if table is None:
        return await (
            ds.get_database_metadata(database) if database else ds.get_instance_metadata()
        )
    meta = dict(await ds.get_resource_metadata(database, table))
    meta["columns"] = {}
    for column in await ds.get_database(database).table_columns(table):
        found = await ds.get_column_metadata(database, table, column)
        if found.get("description"):
            meta["columns"][column] = found["description"]
    return meta


@pytest.mark.asyncio
async def test_every_visible_table_and_column_is_described(ds, db_name, sample):
    path = sample["path"]
    tables = [
        r[0]
        for r in rows(path, "select name from sqlite_master where type='table'")
        if not r[0].startswith(("posts_fts", "threads_fts"))
    ]
    missing = []
    for table in tables:
        meta = await shown_metadata(ds, db_name, table)
        if not meta.get("description"):
            missing.append(table)
        columns = meta.get("columns") or {}
        for (column,) in rows(path, f"select name from pragma_table_info('{table}')"):
            if not columns.get(column):
                missing.append(f"{table}.{column}")
    assert not missing
    assert (await shown_metadata(ds))["title"] == "groupsync archive"
    assert (await shown_metadata(ds, db_name))["source"].startswith("Microsoft Graph")


@pytest.mark.asyncio
async def test_foreign_keys_show_labels(ds, db_name):
    response = await ds.client.get(f"/{db_name}/posts.json?_labels=on&_size=5&_shape=objects")
    row = response.json()["rows"][0]
    assert isinstance(row["group_id"], dict) and row["group_id"]["label"] in {
        "Marketing", "Engineering", "Équipe Paris", "Company Announcements"
    }  # fmt: skip
    assert isinstance(row["thread_id"], dict) and row["thread_id"]["label"]
    assert isinstance(row["sender_address"], dict)


@pytest.mark.asyncio
async def test_default_facets_include_group_sender_attachments_and_month(ds, db_name, sample):
    response = await ds.client.get(f"/{db_name}/posts.json?_extra=facet_results")
    facets = response.json()["facet_results"]
    facets = facets.get("results", facets)
    assert {"group_id", "sender_address", "hasAttachments", "receivedDateTime"} <= set(facets)
    months = {v["value"]: v["count"] for v in facets["receivedDateTime"]["results"]}
    expected = Counter(r[0][:7] for r in rows(sample["path"], "select receivedDateTime from posts"))
    assert months == dict(expected) or len(months) == 30  # the default facet size
    march = next(v for v in facets["receivedDateTime"]["results"] if v["value"] == "2025-03")
    assert "receivedDateTime__startswith=2025-03" in march["toggle_url"]
    filtered = await ds.client.get(
        f"/{db_name}/posts.json?receivedDateTime__startswith=2025-03&_size=max"
    )
    assert len(filtered.json()["rows"]) == expected["2025-03"]


@pytest.mark.asyncio
async def test_default_sort_is_newest_first(ds, db_name):
    response = await ds.client.get(f"/{db_name}/posts.json?_shape=objects&_size=20")
    dates = [r["receivedDateTime"] for r in response.json()["rows"]]
    assert dates == sorted(dates, reverse=True)


# -- canned queries -----------------------------------------------------------------------


async def query(ds, db_name: str, name: str) -> list[dict[str, Any]]:
    response = await ds.client.get(f"/{db_name}/{name}.json?_shape=objects&_size=max")
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def live_posts(sample) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group id, thread, post) for every post the tenant still has in archived groups."""
    tenant = sample["tenant"]
    return [(g, t, p) for g in sorted(ARCHIVED) for t in tenant.threads(g) for p in t["posts"]]


@pytest.mark.asyncio
async def test_busiest_threads(ds, db_name, sample):
    got = await query(ds, db_name, "busiest_threads")
    counts: dict[str, list[Any]] = {}
    for _, thread, post in live_posts(sample):
        entry = counts.setdefault(thread["id"], [thread["topic"], 0, ""])
        entry[1] += 1
        entry[2] = max(entry[2], post["receivedDateTime"])
    expected = sorted(counts.items(), key=lambda kv: (-kv[1][1], _desc(kv[1][2])))
    assert [(r["thread_id"], r["topic"], r["posts"]) for r in got] == [
        (thread_id, topic, n) for thread_id, (topic, n, _) in expected
    ]
    assert got[0]["topic"] == "Incident 2024-08-19: checkout latency" and got[0]["posts"] == 6
    assert sample["deleted"][1] not in {r["thread_id"] for r in got}


def _desc(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


@pytest.mark.asyncio
async def test_top_senders_per_group(ds, db_name, sample):
    got = await query(ds, db_name, "top_senders_per_group")
    tenant = sample["tenant"]
    counts = Counter(
        (g, p["sender"]["emailAddress"]["address"].lower()) for g, _, p in live_posts(sample)
    )
    expected = set()
    for group_id in ARCHIVED:
        mine = {a: n for (g, a), n in counts.items() if g == group_id}
        for address, n in mine.items():
            rank = 1 + sum(1 for m in mine.values() if m > n)
            if rank <= 5:
                expected.add((tenant.group_name(group_id), address, n, rank))
    assert {(r["group"], r["sender_address"], r["posts"], r["rank"]) for r in got} == expected
    assert len(got) == len(expected)


@pytest.mark.asyncio
async def test_posts_per_month_per_group(ds, db_name, sample):
    got = await query(ds, db_name, "posts_per_month_per_group")
    tenant = sample["tenant"]
    expected = Counter(
        (tenant.group_name(g), p["receivedDateTime"][:7]) for g, _, p in live_posts(sample)
    )
    assert {(r["group"], r["month"]): r["posts"] for r in got} == dict(expected)
    assert [(r["group"], r["month"]) for r in got] == sorted(expected)


@pytest.mark.asyncio
async def test_threads_with_attachments(ds, db_name, sample):
    got = await query(ds, db_name, "threads_with_attachments")
    expected = Counter()
    for _, thread, post in live_posts(sample):
        expected[(thread["id"], thread["topic"])] += len(post.get("attachments") or [])
    expected = +expected  # only threads with at least one
    assert {(r["thread_id"], r["topic"]): r["attachments"] for r in got} == dict(expected)
    budget = next(r for r in got if r["topic"] == "Q1 2025 budget (confidential)")
    assert "Budget Q1 2025 – Marketing.pdf" in budget["names"]


@pytest.mark.asyncio
async def test_edited_posts(ds, db_name, sample):
    got = await query(ds, db_name, "edited_posts")
    edited = {sample["edited"][2], sample["svg_post"][2]}
    assert {r["post_id"]: r["versions"] for r in got} == dict.fromkeys(edited, 2)


@pytest.mark.asyncio
async def test_deleted_items(ds, db_name, sample):
    got = await query(ds, db_name, "deleted_items")
    _, thread_id, post_ids, attachment_names = sample["deleted"]
    assert Counter(r["kind"] for r in got) == Counter(
        {"thread": 1, "post": len(post_ids), "attachment": len(attachment_names)}
    )  # the conversation keeps its other thread, so it is not deleted
    assert {r["post_id"] for r in got if r["kind"] == "post"} == set(post_ids)
    assert {r["item"] for r in got if r["kind"] == "attachment"} == set(attachment_names)
    assert all(r["thread_id"] == thread_id for r in got)


@pytest.mark.asyncio
async def test_last_sync_changes(ds, db_name, sample):
    got = await query(ds, db_name, "last_sync_changes")
    _, thread_id, post_ids, _ = sample["deleted"]
    last_run = rows(sample["path"], "select max(id) from sync_runs")[0][0]
    assert {r["run"] for r in got} == {last_run}
    assert sorted((r["change"], r["post_id"]) for r in got) == sorted(
        [("edited post", sample["edited"][2]), ("edited post", sample["svg_post"][2])]
        + [("deleted post", p) for p in post_ids]
        + [("deleted thread", None)]
    )
    deleted_thread = next(r for r in got if r["change"] == "deleted thread")
    assert deleted_thread["thread_id"] == thread_id


@pytest.mark.asyncio
async def test_query_results_link_to_the_thread_view(ds, db_name, sample):
    response = await ds.client.get(f"/{db_name}/busiest_threads")
    links = [a["href"] for a in soup(response.text).find_all("a")]
    assert any(h.startswith("/-/groupsync/thread/") for h in links)


# -- the thread view ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hostile_body_renders_with_nothing_active(ds, sample):
    thread = sample["hostile"]
    response = await ds.client.get(thread_path(MARKETING, thread["id"]))
    assert response.status_code == 200
    page = soup(response.text)
    bodies = page.select(".groupsync-body")
    assert len(bodies) == len(thread["posts"])
    for body in bodies:
        assert_inert(body)
    assert_inert(page.select_one(".groupsync-thread"))
    first = bodies[0]
    assert "Your invoice #88412 of €4,980.00 is overdue" in first.get_text(" ", strip=True)
    blocked = first.select("a.groupsync-remote-image")
    assert [a.get_text() for a in blocked] == [
        "remote image blocked: https://contoso-billing.example/track.gif?id=88412"
    ]
    assert "alert(" not in str(first) and "document.cookie" not in str(first)
    assert "contoso-billing.example/pay" not in str(first)  # the iframe
    assert "contoso-billing.example/collect" not in str(first)  # the form
    # the only scripts on the page are Datasette's own, allowed by hash
    for script in page.find_all("script"):
        assert "contoso" not in script.get_text()


@pytest.mark.asyncio
async def test_hostile_body_in_the_posts_table_is_sanitised_too(ds, db_name, sample):
    thread = sample["hostile"]
    url = f"/{db_name}/posts?thread_id={quote(thread['id'], safe='')}"
    response = await ds.client.get(url)
    page = soup(response.text)
    cells = page.select(".groupsync-cell-body")
    assert len(cells) == len(thread["posts"])
    for cell in cells:
        assert_inert(cell)
    assert_inert(page.select_one("table.rows-and-columns"))


@pytest.mark.asyncio
async def test_inline_cid_image_points_at_the_archive(ds, sample):
    thread = sample["newsletter"]
    response = await ds.client.get(thread_path(MARKETING, thread["id"]))
    page = soup(response.text)
    logo = rows(sample["path"], "select sha256 from attachments where contentId = 'logo@contoso'")[
        0
    ][0]
    images = page.select(".groupsync-body img")
    assert images and all(
        img["src"].startswith(f"/-/groupsync/attachment/{logo}") for img in images
    )
    assert "cid:" not in response.text
    image = await ds.client.get(images[0]["src"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline;")
    assert hashlib.sha256(image.content).hexdigest() == logo


@pytest.mark.asyncio
async def test_thread_view_shows_posts_people_and_attachments(ds, sample):
    thread = sample["tenant"].thread_by_topic(MARKETING, "Q1 2025 budget (confidential)", True)
    response = await ds.client.get(thread_path(MARKETING, thread["id"]))
    page = soup(response.text)
    assert page.select_one("h1").get_text() == "Q1 2025 budget (confidential)"
    posts = page.select("article.groupsync-post")
    assert len(posts) == len(thread["posts"])
    for article, post in zip(posts, thread["posts"], strict=True):
        assert article["id"] == post_anchor(post["id"])
        sender = post["sender"]["emailAddress"]
        assert article.select_one(".groupsync-sender").get_text() == sender["name"]
        assert post["receivedDateTime"][:10] in article.select_one("time").get_text()
    people = page.select_one(".groupsync-people").get_text(" ", strip=True)
    for post in thread["posts"]:
        assert post["sender"]["emailAddress"]["name"] in people
    item = page.find("a", string="Budget Q1 2025 – Marketing.pdf")
    assert item is not None and item["href"].startswith("/-/groupsync/attachment/")
    meta = item.find_next("span", class_="groupsync-att-meta").get_text()
    assert "application/pdf" in meta and "1.7 KB" in meta


@pytest.mark.asyncio
async def test_reference_and_item_attachments_are_listed_without_downloads(ds, sample):
    thread = sample["tenant"].thread_by_topic(MARKETING, "Brand guidelines 2.0")
    page = soup((await ds.client.get(thread_path(MARKETING, thread["id"]))).text)
    item = page.find(string=re.compile("Contoso Outdoor Brand Guidelines 2.0.pptx"))
    assert item is not None and item.parent.name == "span"
    assert "a link to a file kept elsewhere" in page.get_text()


@pytest.mark.asyncio
async def test_edited_post_shows_its_versions(ds, sample):
    group_id, thread_id, post_id = sample["edited"]
    page = soup((await ds.client.get(thread_path(group_id, thread_id))).text)
    article = page.find("article", id=post_anchor(post_id))
    assert EDITED_TEXT in article.select_one(".groupsync-body").get_text()
    badge = article.select_one(".groupsync-edited")
    assert badge is not None and "2 versions" in badge.get_text()
    versions = article.select("details.groupsync-versions section.groupsync-version")
    assert len(versions) == 2
    assert EDITED_TEXT not in versions[0].get_text() and EDITED_TEXT in versions[1].get_text()
    assert "(current)" in versions[1].h4.get_text()
    for version in versions:
        assert_inert(version)


@pytest.mark.asyncio
async def test_deleted_thread_shows_tombstones(ds, sample):
    group_id, thread_id, post_ids, _ = sample["deleted"]
    response = await ds.client.get(thread_path(group_id, thread_id))
    assert response.status_code == 200
    page = soup(response.text)
    assert "thread deleted upstream" in page.select_one(".groupsync-meta").get_text()
    deleted = page.select("article.groupsync-post-deleted")
    assert [a["id"] for a in deleted] == [post_anchor(p) for p in post_ids]
    assert all(a.select_one(".groupsync-deleted") for a in deleted)


@pytest.mark.asyncio
async def test_svg_attachment_is_downloaded_never_shown(ds, sample):
    group_id, thread_id, post_id = sample["svg_post"]
    page = soup((await ds.client.get(thread_path(group_id, thread_id))).text)
    link = page.find("a", string="diagram.svg")
    assert link is not None
    assert not page.select(f'img[src="{link["href"]}"]')
    response = await ds.client.get(link["href"])
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.content == SVG


@pytest.mark.asyncio
async def test_bidi_overrides_in_file_names_are_neutralised(sample, tmp_path, db_name):
    copy = tmp_path / f"{db_name}.db"
    shutil.copy(sample["path"], copy)
    group_id, thread_id, post_id = sample["svg_post"]
    spoof = "invoice\u202egpj.exe"  # shows as "invoiceexe.jpg"
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute("update attachments set name = ? where post_id = ? and name = 'diagram.svg'",
                     (spoof, post_id))  # fmt: skip
        (att_id, sha256) = conn.execute(
            "select id, sha256 from attachments where name = ?", (spoof,)
        ).fetchone()
    conn.close()
    spoofed = make_datasette(copy)
    shown = "invoice[U+202E]gpj.exe"
    thread_page = await spoofed.client.get(thread_path(group_id, thread_id))
    table_page = await spoofed.client.get(f"/{db_name}/attachments?post_id={quote(post_id)}")
    row_page = await spoofed.client.get(
        f"/{db_name}/attachments/{tilde_encode(post_id)},{tilde_encode(att_id)}"
    )
    for response in (thread_page, table_page, row_page):
        assert response.status_code == 200
        assert "\u202e" not in response.text and shown in soup(response.text).get_text()
    download = await spoofed.client.get(f"/-/groupsync/attachment/{sha256}?post={quote(post_id)}")
    disposition = download.headers["content-disposition"]
    assert 'filename="invoice_gpj.exe"' in disposition
    assert "filename*=UTF-8''invoice_gpj.exe" in disposition


@pytest.mark.asyncio
async def test_in_reply_to_links_to_the_answered_post(sample, tmp_path):
    copy = tmp_path / "replies.db"
    shutil.copy(sample["path"], copy)
    first, second = sample["newsletter"]["posts"][:2]
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute(
            "update posts set in_reply_to_id = ? where id = ?", (first["id"], second["id"])
        )
        conn.execute("update posts set in_reply_to_id = 'elsewhere' where id = ?", (first["id"],))
    conn.close()
    replies = make_datasette(copy)
    page = soup((await replies.client.get(thread_path(MARKETING, sample["newsletter"]["id"]))).text)
    second_article = page.find("article", id=post_anchor(second["id"]))
    link = second_article.select_one(".groupsync-reply a")
    assert link["href"] == "#" + post_anchor(first["id"])
    assert "Aisha Bello" in link.get_text()
    first_article = page.find("article", id=post_anchor(first["id"]))
    assert "not in this thread" in first_article.select_one(".groupsync-reply").get_text()


@pytest.mark.asyncio
async def test_thread_and_post_rows_link_to_the_thread_view(ds, db_name, sample):
    thread = sample["hostile"]
    href = thread_path(MARKETING, thread["id"])
    threads = soup((await ds.client.get(f"/{db_name}/threads?group_id={MARKETING}")).text)
    assert threads.find("a", href=href, string=HOSTILE_TOPIC) is not None
    row = soup((await ds.client.get(f"/{db_name}/threads/{tilde_encode(thread['id'])}")).text)
    assert row.find("a", href=href) is not None
    post = thread["posts"][0]
    posts = soup((await ds.client.get(f"/{db_name}/posts?thread_id={quote(thread['id'])}")).text)
    assert posts.find("a", href=f"{href}#{post_anchor(post['id'])}") is not None
    versions = soup((await ds.client.get(f"/{db_name}/post_versions")).text)
    assert any(a["href"].startswith("/-/groupsync/thread/") for a in versions.find_all("a"))


@pytest.mark.asyncio
async def test_json_cells_are_readable(ds, db_name, sample):
    thread = sample["tenant"].thread_by_topic(MARKETING, NEWSLETTER_TOPIC)
    page = soup((await ds.client.get(f"/{db_name}/threads?id={quote(thread['id'])}")).text)
    senders = page.select_one("td.col-uniqueSenders").get_text(strip=True)
    assert senders == ", ".join(thread["uniqueSenders"])
    to = page.select_one("td.col-toRecipients").get_text(strip=True)
    assert to == "Marketing <marketing@contosooutdoor.onmicrosoft.com>"
    versions = soup((await ds.client.get(f"/{db_name}/post_versions?_size=2")).text)
    pre = versions.select_one("td.col-json pre.groupsync-json")
    assert pre is not None and '\n  "body": {' in pre.get_text()


@pytest.mark.asyncio
async def test_sha256_cells_link_to_downloads(ds, db_name):
    page = soup((await ds.client.get(f"/{db_name}/attachments")).text)
    links = [a["href"] for a in page.select("td.col-sha256 a")]
    assert links and all(h.startswith("/-/groupsync/attachment/") for h in links)


# -- attachment downloads -----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name,content_type,disposition",
    [
        ("Budget Q1 2025 – Marketing.pdf", "application/pdf", "attachment"),
        ("Invoice_88412.html", "text/html", "attachment"),
        ("leads-2025-03.csv", "text/csv", "attachment"),
        ("contoso-outdoor-logo.png", "image/png", "inline"),
        ("Compte rendu – réunion du 12 mars.txt", "text/plain", "attachment"),
    ],
)
async def test_download_headers(ds, sample, name, content_type, disposition):
    sha256, post_id, size = rows(
        sample["path"], "select sha256, post_id, size from attachments where name = ?", (name,)
    )[0]
    response = await ds.client.get(f"/-/groupsync/attachment/{sha256}?post={quote(post_id)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-disposition"] == (
        f'{disposition}; filename="{re.sub(r"[^A-Za-z0-9._ ()-]", "_", name)}"; '
        f"filename*=UTF-8''{quote(name, safe='')}"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    assert int(response.headers["content-length"]) == len(response.content) == size
    assert hashlib.sha256(response.content).hexdigest() == sha256


@pytest.mark.asyncio
async def test_downloads_are_streamed_in_chunks(ds, sample, monkeypatch):
    monkeypatch.setattr(views, "BLOB_CHUNK", 100)
    sha256, size = rows(
        sample["path"], "select sha256, size from attachments where contentType = 'application/pdf'"
    )[0]
    messages: list[dict[str, Any]] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": f"/-/groupsync/attachment/{sha256}", "raw_path": None, "query_string": b"",
        "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1),
        "server": ("localhost", 80), "root_path": "",
    }  # fmt: skip
    scope["raw_path"] = scope["path"].encode()
    await ds.app()(scope, receive, send)
    bodies = [m["body"] for m in messages if m["type"] == "http.response.body" and m["body"]]
    assert len(bodies) == -(-size // 100)
    assert hashlib.sha256(b"".join(bodies)).hexdigest() == sha256


@pytest.mark.parametrize(
    "value,expected",
    [
        ("image/png", "image/png"),
        ("Image/JPEG; name=x.jpg", "image/jpeg"),
        ("text/html\r\nX-Evil: 1", "application/octet-stream"),
        ("", "application/octet-stream"),
        (None, "application/octet-stream"),
        ("nonsense", "application/octet-stream"),
    ],
)
def test_content_types_from_the_archive_are_checked(value, expected):
    assert views.safe_content_type(value) == expected


def test_content_disposition_survives_hostile_names():
    header = views.content_disposition("attachment", 'a"b\r\nSet-Cookie: x=1;.html')
    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="a_b__Set-Cookie_ x_1_.html"')
    header.encode("latin-1")


# -- not found ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        thread_path(MARKETING, "AAQkNOPE"),
        thread_path("00000000-0000-0000-0000-000000000000", "AAQkNOPE"),
        "/-/groupsync/attachment/" + "0" * 64,
        "/-/groupsync/attachment/not-a-hash",
        "/-/groupsync/search?db=nope",
        "/-/groupsync/static/nope.css",
        "/-/groupsync/nothing-here",
    ],
)
async def test_unknown_ids_give_404_pages(sample_datasette, path):
    response = await sample_datasette.client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    assert "<title>" in response.text


@pytest.mark.asyncio
async def test_thread_in_another_group_is_not_found(ds, sample):
    thread = sample["hostile"]
    response = await ds.client.get(thread_path(ENGINEERING, thread["id"]))
    assert response.status_code == 404
    percent = f"/-/groupsync/thread/{MARKETING}/{quote(thread['id'], safe='')}"
    assert (await ds.client.get(percent)).status_code == 200  # percent-encoding works too
    response = await ds.client.get(percent.replace(MARKETING, ENGINEERING))
    assert response.status_code == 404 and "No thread" in response.text


# -- the sanitiser ------------------------------------------------------------------------

HOSTILE = [
    ("<script>window.__pwned = 1</script><p>hi</p>", "<p>hi</p>"),
    ('<img src="x" onerror="alert(1)">', ""),
    ('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href=" JaVaScRiPt:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="jav&#x61;script:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="data:text/html,<script>alert(1)</script>">x</a>',
     '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="vbscript:msgbox(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<iframe src="https://evil.example/"></iframe>ok', "ok"),
    ('<object data="https://evil.example/x.swf"></object>ok', "ok"),
    ('<embed src="https://evil.example/x.swf">ok', "ok"),
    ('<form action="https://evil.example/"><input name="pw"><button>Go</button></form>', "Go"),
    ('<svg onload="alert(1)"><circle/></svg>ok', "ok"),
    ('<math><mtext>x</mtext></math>ok', "ok"),
    ('<div style="background-image:url(javascript:alert(1))">x</div>', "<div>x</div>"),
    ('<div style="width: expression(alert(1))">x</div>', "<div>x</div>"),
    ('<div style="color:red; background: u\\72l(https://evil.example/)">x</div>', "<div>x</div>"),
    ('<div style="color:red;position:fixed;top:0">x</div>', '<div style="color:red">x</div>'),
    ("<style>@import url(https://evil.example/x.css);</style>ok", "ok"),
    ('<link rel="stylesheet" href="https://evil.example/x.css">ok', "ok"),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example/">ok', "ok"),
    ('<base href="https://evil.example/">ok', "ok"),
    ('<body onload="alert(1)" background="https://evil.example/bg.png">ok</body>', "ok"),
    ('<table background="https://evil.example/bg.png"><tr><td>ok</td></tr></table>',
     "<table><tbody><tr><td>ok</td></tr></tbody></table>"),
    ('<video src="https://evil.example/v.mp4" poster="https://evil.example/p.png"></video>ok',
     "ok"),
    ('<audio src="https://evil.example/a.mp3"></audio>ok', "ok"),
    ('<img src="https://evil.example/t.gif">',
     '<a class="groupsync-remote-image" href="https://evil.example/t.gif" '
     'rel="noopener noreferrer nofollow">remote image blocked: https://evil.example/t.gif</a>'),
    ('<img src="//evil.example/t.gif" alt="pixel">', "[image: pixel]"),
    ('<img srcset="https://evil.example/a.png 2x" alt="a">', "[image: a]"),
    ('<img src="/-/groupsync/attachment/abc">', ""),
    ('<p id="x" class="y" name="z">ok</p>', "<p>ok</p>"),
    ("<!-- <script>alert(1)</script> -->ok", "ok"),
    ("<noscript><img src=x onerror=alert(1)></noscript>ok", "ok"),
    ('<a href="https://example.com/" target="_top">ok</a>',
     '<a href="https://example.com/" rel="noopener noreferrer nofollow">ok</a>'),
]  # fmt: skip


@pytest.mark.parametrize("html,expected", HOSTILE)
def test_sanitise_hostile_html(html, expected):
    out = sanitise(html)
    assert out == expected
    assert_inert(soup(out))


def test_sanitise_rewrites_cid_images():
    urls = {"logo@contoso": "/-/groupsync/attachment/" + "a" * 64}
    html = '<img src="cid:logo@contoso" alt="Logo"><img src="CID:%3Cother%3E" alt="x">'
    out = sanitise(html, attachment_url=urls.get)
    assert out == (
        f'<img src="{urls["logo@contoso"]}" alt="Logo">'
        '<span class="groupsync-missing-image">[inline image other is not in the archive]</span>'
    )


def test_sanitise_keeps_mail_formatting_and_text():
    html = (
        '<table border="1" cellpadding="4"><tr><td align="center" style="color:#333">'
        "日本語 <b>bold</b> <i>é</i></td></tr></table>"
        '<font face="Calibri" color="#000">x</font><img src="data:image/png;base64,iVBOR" alt="d">'
    )
    assert sanitise(html) == (
        '<table border="1" cellpadding="4"><tbody><tr><td align="center" style="color:#333">'
        "日本語 <b>bold</b> <i>é</i></td></tr></tbody></table>"
        '<font face="Calibri" color="#000">x</font><img src="data:image/png;base64,iVBOR" alt="d">'
    )


def test_sanitise_text_bodies_and_empty():
    assert sanitise("a <b>\nline", content_type="text") == (
        '<div style="white-space:pre-wrap">a &lt;b&gt;\nline</div>'
    )
    assert sanitise(None) == sanitise("") == ""


def test_data_svg_images_are_dropped():
    assert sanitise('<img src="data:image/svg+xml;base64,PHN2Zz4=" alt="s">') == "[image: s]"


# -- groupsync serve ----------------------------------------------------------------------


def test_serve_rejects_a_file_that_is_no_archive(tmp_path):
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("create table t (x)")
    conn.close()
    result = CliRunner().invoke(cli, ["--db", str(plain), "serve"])
    assert result.exit_code == 1
    assert "is not a groupsync archive" in result.output
    missing = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "serve"])
    assert missing.exit_code == 1 and "no archive at" in missing.output


def test_serve_runs_datasette_on_loopback(sample, tmp_path):
    command = [
        sys.executable,
        "-m",
        "groupsync",
        "--db",
        str(sample["path"]),
        "serve",
        "--port",
        "0",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        # The URL it prints opens groupsync's home; Datasette's index links to it.
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/-/groupsync/", url), url
        with httpx.Client(base_url=url.removesuffix("-/groupsync/"), timeout=10) as client:
            page = client.get(url)
            index = soup(client.get("/").text)
            assert index.find("a", href="/-/groupsync/") is not None
            assert page.status_code == 200 and "Marketing" in page.text
            thread = sample["hostile"]
            assert client.get(thread_path(MARKETING, thread["id"])).status_code == 200
            assert client.get(f"/{Path(sample['path']).stem}.json").status_code == 200
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert "Serving" in err and "read-only" in err


def test_metadata_json_has_the_canned_queries(sample):
    meta = plugin_metadata.instance_metadata(["groupsync"])
    queries = meta["databases"]["groupsync"]["queries"]
    assert set(queries) == {
        "busiest_threads", "top_senders_per_group", "posts_per_month_per_group",
        "threads_with_attachments", "last_sync_changes", "edited_posts", "deleted_items",
    }  # fmt: skip
    json.dumps(meta)


# -- the search page ----------------------------------------------------------------------


async def search_page(ds, **args: Any) -> tuple[Any, BeautifulSoup]:
    response = await ds.client.get("/-/groupsync/search?" + urlencode(args))
    return response, soup(response.text)


@pytest.mark.asyncio
async def test_search_finds_highlights_and_links_to_the_thread_view(ds, sample):
    response, page = await search_page(ds, q="invoice")
    assert response.status_code == 200, page.select_one(".groupsync-error")
    hits = page.select("li.groupsync-hit")
    topics = [h.select_one("a.groupsync-hit-topic").get_text() for h in hits]
    assert HOSTILE_TOPIC in topics
    hit = hits[topics.index(HOSTILE_TOPIC)]
    link = hit.select_one("a.groupsync-hit-topic")["href"]
    thread = sample["hostile"]
    assert link.startswith(thread_path(MARKETING, thread["id"]) + "#post-")
    assert (await ds.client.get(link.split("#")[0])).status_code == 200
    assert "Marketing" in hit.select_one(".groupsync-hit-meta").get_text()
    snippet = hit.select_one(".groupsync-snippet")
    assert snippet.find("mark") is not None
    assert_inert(page.select_one(".groupsync-hits"))
    assert "of " in page.select_one(".groupsync-count-line").get_text()


@pytest.mark.asyncio
async def test_search_page_uses_groupsync_search(ds, sample, monkeypatch):
    calls = []
    real = search.search_threads

    def spy(archive, index_path, query, **options):
        calls.append((Path(archive.path), Path(index_path), query, options))
        return real(archive, index_path, query, **options)

    monkeypatch.setattr(search, "search_threads", spy)
    response, _ = await search_page(
        ds, q="budget", group=MARKETING, after="2024-01-01", before="2025-12-31", sort="date",
        deleted="1", page="2",
    )  # fmt: skip
    assert response.status_code == 200
    assert calls == [
        (
            Path(sample["path"]),
            search.index_path_for(sample["path"]),
            "budget after:2024-01-01 before:2026-01-01",
            {"limit": 20, "offset": 20, "group": MARKETING, "sort": "date",
             "include_deleted": True, "catch_up": False},
        )
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_search_filters_by_group_and_date(ds):
    _, everywhere = await search_page(ds, q="invoice")
    _, engineering = await search_page(ds, q="invoice", group=ENGINEERING)
    topics = {a.get_text() for a in engineering.select("a.groupsync-hit-topic")}
    assert HOSTILE_TOPIC not in topics
    assert len(engineering.select("li.groupsync-hit")) < len(everywhere.select("li.groupsync-hit"))
    _, before = await search_page(ds, q="invoice", before="2020-01-01")
    assert before.select("li.groupsync-hit") == []
    assert "No posts match" in before.get_text()
    _, window = await search_page(ds, q="invoice", after="2025-04-08", before="2025-04-08")
    assert {a.get_text() for a in window.select("a.groupsync-hit-topic")} == {HOSTILE_TOPIC}


@pytest.mark.asyncio
async def test_search_pages_through_results(ds):
    _, first = await search_page(ds, q="the")  # in more than 20 threads
    count = first.select_one(".groupsync-count-line").get_text()
    total = int(re.search(r"of ([\d,]+) threads", count).group(1).replace(",", ""))
    assert total > 20
    assert count.strip().startswith("1–20 of")
    next_link = first.find("a", rel="next")
    assert next_link is not None and first.find("a", rel="prev") is None
    second = soup((await ds.client.get(next_link["href"])).text)
    assert second.select_one(".groupsync-count-line").get_text().strip().startswith("21–")
    assert second.find("a", rel="prev") is not None
    ids = {a["href"] for a in first.select("a.groupsync-hit-topic")}
    assert not ids & {a["href"] for a in second.select("a.groupsync-hit-topic")}


@pytest.mark.asyncio
async def test_search_includes_tombstones_only_when_asked(ds, sample):
    group_id, thread_id, _, _ = sample["deleted"]
    prefix = thread_path(group_id, thread_id)
    _, live = await search_page(ds, q="roadmap")
    assert not [a for a in live.select("a.groupsync-hit-topic") if a["href"].startswith(prefix)]
    _, deleted = await search_page(ds, q="roadmap", deleted="1")
    hits = [h for h in deleted.select("li.groupsync-hit")
            if h.select_one("a.groupsync-hit-topic")["href"].startswith(prefix)]  # fmt: skip
    assert hits and all(h.select_one(".groupsync-deleted") for h in hits)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "args,message",
    [
        ({"q": "invoice", "after": "yesterday"}, "must be a date"),
        ({"q": "invoice", "before": "2025-02-30"}, "must be a date"),
        ({"q": "invoice", "group": "nope"}, "no such group"),
        ({"q": "invoice", "sort": "random"}, "unknown sort"),
    ],
)
async def test_search_rejects_bad_filters(ds, args, message):
    response, page = await search_page(ds, **args)
    assert response.status_code == 400
    assert message in page.select_one(".groupsync-error").get_text()


@pytest.mark.asyncio
async def test_an_ambiguous_group_in_the_query_lists_the_candidates(ds):
    response, page = await search_page(ds, q="group:e invoice")
    assert response.status_code == 400
    error = page.select_one(".groupsync-error")
    head, *lines = error.get_text().strip().split("\n")
    assert head.startswith("'e' fits 2 archived groups")
    assert [line.split("  ")[1:3] for line in lines] == [
        [f"'{ENGINEERING}'", "'Engineering'"],
        [f"'{PARIS}'", "'Équipe Paris'"],
    ]
    assert page.select(".groupsync-hit") == []


@pytest.mark.asyncio
async def test_hostile_group_names_in_the_error_are_escaped(tmp_path):
    path = tmp_path / "named.db"
    with Archive.open_for_writing(path) as archive:
        save_named_groups(archive)
    ds = make_datasette(path)
    response, page = await search_page(ds, q="group:ev budget")
    assert response.status_code == 400
    error = page.select_one(".groupsync-error")
    assert_inert(error)
    assert error.find("b") is None and "<b>" not in response.text
    assert "'\\x1b[2J\\u202eEvil <b>\\x07'" in error.get_text()
    assert not {"\x1b", "\u202e", "\x07"} & set(str(error))


@pytest.mark.asyncio
async def test_malformed_query_is_explained_not_a_traceback(ds):
    response, page = await search_page(ds, q='"unclosed phrase')
    if response.status_code == 200:  # the query language may forgive it
        return
    assert response.status_code == 400
    assert page.select_one(".groupsync-error").get_text().strip()
    assert "Traceback" not in response.text


@pytest.mark.asyncio
async def test_a_huge_query_gets_an_error_message_at_once(ds):
    started = time.monotonic()
    response, page = await search_page(ds, q="budget " * 500)
    assert time.monotonic() - started < 2
    assert response.status_code == 400
    error = page.select_one(".groupsync-error").get_text()
    assert "3,499 characters long; at most 1,000 are allowed" in error


@pytest.mark.asyncio
async def test_search_echoes_the_query_escaped(ds):
    hostile = '<script>window.__pwned=1</script>"><img src=x onerror=alert(1)>'
    response, page = await search_page(ds, q=hostile)
    assert page.select_one("input[name=q]")["value"] == hostile
    for results in page.select(".groupsync-hits, .groupsync-error, .groupsync-count-line"):
        assert_inert(results)
    assert len(page.find_all("img")) == 0
    assert "window.__pwned" not in "".join(s.get_text() for s in page.find_all("script"))


@pytest.mark.asyncio
async def test_groups_without_a_mailbox_in_an_older_archive_are_not_listed(sample, tmp_path):
    """An archive written before groupsync left memberOf's security groups out may hold one;
    groupsync's pages list Microsoft 365 groups only."""
    import shutil

    path = tmp_path / "older.db"
    shutil.copy(sample["path"], path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO groups (id, displayName, groupTypes, json, first_seen_at, last_seen_at)"
            " VALUES ('5f0c8a4e-2d7b-4c1e-9a63-0b8e4d2f7a15', 'IT Admins Security', '[]', '{}',"
            " '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')"
        )
    from groupsync import reads

    with Archive(path, readonly=True) as archive:
        names = [g.get("displayName") for g in reads.iter_groups(archive, include_deleted=True)]
        assert "IT Admins Security" not in names and "Marketing" in names
        assert "5f0c8a4e-2d7b-4c1e-9a63-0b8e4d2f7a15" not in archive.group_ids()
    older = make_datasette(path, immutable=True)
    for page in ["/-/groupsync/", "/-/groupsync/search"]:
        response = await older.client.get(page)
        assert response.status_code == 200
        assert "IT Admins Security" not in response.text
        assert "Marketing" in response.text
