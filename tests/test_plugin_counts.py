"""Counts agree on every page: groupsync's home, the thread view, the search page and the
Datasette table pages they link to, deleted (tombstoned) items left out unless asked for.

The archive: the sample tenant, then a thread deleted upstream and reconciled, so each
group's tables hold tombstones next to live rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from bs4 import BeautifulSoup
from datasette.utils import tilde_encode

from groupsync import search
from groupsync.archive import Archive
from groupsync.datasette_plugin.server import make_datasette
from groupsync.simulator import make_app

from .conftest import ENGINEERING, SAMPLE_DATA, copy_sample, rows, sync_sample

pytestmark = pytest.mark.datasette1


@pytest.fixture(scope="module")
def archive(sample_archive, tmp_path_factory) -> dict[str, Any]:
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("counts") / "groupsync.db")
    app = make_app(SAMPLE_DATA)
    gone = next(t for t in app.state.threads(ENGINEERING) if len(t["posts"]) > 1)
    app.delete_thread(ENGINEERING, gone["id"])
    sync_sample(app, path, full=True)
    with Archive.open_for_writing(path) as db:
        # deleted posts are searchable only in an index that keeps them (`index --keep-...`)
        search.update_index(db, search.index_path_for(path), keep_deleted=True)
    search.close_indexes()
    return {"path": path, "gone": gone["id"]}


@pytest.fixture(scope="module")
def ds(archive):
    yield make_datasette(archive["path"], immutable=True)
    search.close_indexes()


def page(text: str) -> BeautifulSoup:
    return BeautifulSoup(text, "html.parser")


async def table_count(ds: Any, href: str) -> int:
    """How many rows the Datasette table page at ``href`` says it shows (from its JSON)."""
    parts = urlsplit(href)
    response = await ds.client.get(f"{parts.path}.json?{parts.query}&_size=1&_extra=count")
    assert response.status_code == 200, href
    data = response.json()
    return int(data.get("count", data.get("filtered_table_rows_count", -1)))


def number(text: str) -> int:
    return int(re.sub(r"\D", "", text))


@pytest.mark.asyncio
async def test_home_counts_match_the_tables_they_link_to(ds, archive):
    home = page((await ds.client.get("/-/groupsync/")).text)
    groups = home.select("table.groupsync-groups tbody tr")
    assert len(groups) == 4
    path = archive["path"]
    for row in groups:
        threads, posts = row.select_one("a.groupsync-threads"), row.select_one("a.groupsync-posts")
        assert await table_count(ds, threads["href"]) == number(threads.get_text())
        assert await table_count(ds, posts["href"]) == number(posts.get_text())
        group_id = dict(p.split("=") for p in urlsplit(posts["href"]).query.split("&"))["group_id"]
        live = rows(path, "select count(*) from posts where group_id = ? and deleted_at is null",
                    [group_id])[0][0]  # fmt: skip
        assert number(posts.get_text()) == live
    engineering = next(r for r in groups if "Engineering" in r.get_text())
    link = engineering.select_one("a.groupsync-threads")["href"]
    everything = link.replace("deleted_at__isnull=1", "").rstrip("&")
    # the deleted thread is in the table, and left out of the count
    assert await table_count(ds, everything) == number(engineering.select_one(
        "a.groupsync-threads").get_text()) + 1  # fmt: skip


@pytest.mark.asyncio
async def test_home_latest_post_leaves_deleted_threads_out(archive, tmp_path):
    """"Latest post" is the newest live thread's, like the counts beside it: with a group's
    newest thread deleted upstream, the date shown is the next one's."""
    path = copy_sample(archive["path"], tmp_path / "latest.db")
    newest, second = rows(path, "select id, lastDeliveredDateTime from threads where group_id = ? "
                          "and deleted_at is null order by lastDeliveredDateTime desc limit 2",
                          [ENGINEERING])  # fmt: skip
    assert newest[1] > second[1]
    rows(path, "update threads set deleted_at = '2026-01-01T00:00:00Z' where id = ?", [newest[0]])
    ds = make_datasette(path, immutable=True)
    home = page((await ds.client.get("/-/groupsync/")).text)
    engineering = next(r for r in home.select("table.groupsync-groups tbody tr")
                       if "Engineering" in r.get_text())  # fmt: skip
    assert engineering.select("td")[-1].get_text().strip() == (
        f"{second[1][:10]} {second[1][11:16]} UTC"
    )


@pytest.mark.asyncio
async def test_thread_view_counts_match_its_table_links(ds, archive):
    path = archive["path"]
    for group_id, thread_id, deleted in rows(
        path, "select group_id, id, deleted_at from threads order by id"
    ):
        url = f"/-/groupsync/thread/{tilde_encode(group_id)}/{tilde_encode(thread_id)}"
        view = page((await ds.client.get(url)).text)
        articles = view.select("article.groupsync-post")
        live = view.select_one("a.groupsync-count-live")
        assert await table_count(ds, live["href"]) == number(live.get_text())
        gone = view.select_one("a.groupsync-count-deleted")
        shown_gone = number(gone.get_text()) if gone else 0
        if gone:
            assert await table_count(ds, gone["href"]) == shown_gone
        assert number(live.get_text()) + shown_gone == len(articles)
        assert (shown_gone > 0) == (thread_id == archive["gone"]) == (deleted is not None)


@pytest.mark.asyncio
async def test_search_counts_leave_deleted_posts_out_unless_asked(ds, archive):
    """The search page's count of one group's posts is the home page's, and grows by the
    deleted thread's posts when deleted items are asked for."""
    home = page((await ds.client.get("/-/groupsync/")).text)
    engineering = next(r for r in home.select("table.groupsync-groups tbody tr")
                       if "Engineering" in r.get_text())  # fmt: skip
    posts = number(engineering.select_one("a.groupsync-posts").get_text())
    gone = rows(archive["path"], "select count(*) from posts where thread_id = ?",
                [archive["gone"]])[0][0]  # fmt: skip
    args = {"group": ENGINEERING, "after": "1970-01-01", "sort": "date"}
    for extra, expected in (({}, posts), ({"deleted": "1"}, posts + gone)):
        found = page((await ds.client.get("/-/groupsync/search?" + urlencode(
            {**args, **extra}))).text)  # fmt: skip
        line = found.select_one(".groupsync-count-line").get_text()
        matching = re.search(r"\(([\d,]+) matching posts?\)", line)
        assert matching and matching.group(1).replace(",", "") == str(expected), line


def test_the_archive_has_what_the_counts_are_about(archive):
    path = Path(archive["path"])
    tombstones = rows(path, "select count(*) from posts where deleted_at is not null")[0][0]
    assert tombstones >= 2
