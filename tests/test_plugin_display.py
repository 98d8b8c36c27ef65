"""Datasette's own table pages for the archive, as a person reads them, and the thread
view's folded quotes, with hostile mail run through both (on 0.65 and the 1.0 alpha)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from datasette.utils import tilde_encode

from groupsync.datasette_plugin.server import make_datasette
from groupsync.datasette_plugin.tables import FIRST_COLUMNS
from groupsync.simulator import make_app

from . import hostile
from .conftest import MARKETING, SAMPLE_DATA, copy_sample, rows, sync_sample

pytestmark = pytest.mark.datasette1

ACTIVE = ["script", "iframe", "frame", "object", "embed", "form", "input", "svg", "math",
          "style", "link", "meta", "base", "template"]  # fmt: skip


def page(text: str) -> BeautifulSoup:
    return BeautifulSoup(text, "html.parser")


def table_body(html: str) -> Any:
    table = page(html).select_one("table.rows-and-columns")
    assert table is not None
    return table


def assert_inert(fragment: Any) -> None:
    for tag in ACTIVE:
        assert fragment.find(tag) is None, tag
    for element in fragment.find_all(True):
        assert not any(name.lower().startswith("on") for name in element.attrs), element.name
        href = str(element.get("href") or "").replace(" ", "").lower()
        assert not href.startswith(("javascript:", "vbscript:", "data:")), href


@pytest.fixture(scope="module")
def ds(sample_archive, tmp_path_factory):
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("display") / "groupsync.db")
    return make_datasette(path, immutable=True)


def headers(table: Any) -> list[str]:
    return [th["data-column"] for th in table.select("thead th")]


@pytest.mark.asyncio
async def test_posts_table_shows_date_sender_topic_and_a_preview_first(ds):
    response = await ds.client.get("/groupsync/posts")
    assert response.status_code == 200
    table = table_body(response.text)
    shown = headers(table)
    assert shown[:5] == ["id", "receivedDateTime", "sender_name", "thread_id", "body_text"]
    assert sorted(shown) == sorted(await ds.get_database("groupsync").table_columns("posts"))
    first = table.select_one("tbody tr")
    link = first.select_one("td.col-id a")
    whole = link["title"]
    assert len(whole) > 100 and link.get_text() == f"{whole[:4]}…{whole[-12:]}"
    assert link["href"].endswith("/posts/" + tilde_encode(whole))
    topic = first.select_one("td.col-thread_id a")
    assert topic.get_text() and len(topic["title"]) > 100  # the topic, its id in the title
    assert first.select_one("td.col-body_text .groupsync-cell-text").get_text()


@pytest.mark.asyncio
@pytest.mark.parametrize("table", sorted(FIRST_COLUMNS))
async def test_no_table_shows_a_whole_exchange_id(ds, table):
    """Ids show shortened (whole in titles and links), the columns read first come first."""
    response = await ds.client.get(f"/groupsync/{table}?_size=20")
    body = table_body(response.text)
    assert headers(body)[1 : 1 + len(FIRST_COLUMNS[table])] == [
        c for c in FIRST_COLUMNS[table] if c in headers(body)
    ]
    path = Path(ds.get_database("groupsync").path)
    ids = {r[0] for t in ("posts", "threads", "conversations", "attachments")
           for r in rows(path, f"select id from {t}")}  # fmt: skip
    for raw_json in body.select("td.col-json"):  # the item as Graph sent it: kept whole
        raw_json.decompose()
    text = body.get_text(" ")
    assert not [i for i in ids if i in text]


@pytest.mark.asyncio
async def test_json_keeps_whole_ids_in_schema_order(ds):
    data = (await ds.client.get("/groupsync/posts.json?_size=3&_shape=objects")).json()
    schema = await ds.get_database("groupsync").table_columns("posts")
    assert list(data["rows"][0]) == schema
    assert all(len(r["id"]) > 100 and "…" not in r["id"] for r in data["rows"])


@pytest.mark.asyncio
async def test_chosen_columns_keep_the_order_asked_for(ds):
    response = await ds.client.get("/groupsync/posts?_col=sender_name&_col=receivedDateTime")
    assert headers(table_body(response.text)) == ["id", "sender_name", "receivedDateTime"]


@pytest.mark.asyncio
async def test_row_page_uses_the_same_arrangement(ds):
    (post_id,) = rows(Path(ds.get_database("groupsync").path), "select id from posts limit 1")[0]
    response = await ds.client.get(f"/groupsync/posts/{tilde_encode(post_id)}")
    assert response.status_code == 200
    assert headers(table_body(response.text))[:3] == ["id", "receivedDateTime", "sender_name"]


@pytest.mark.asyncio
async def test_other_databases_keep_datasettes_table(ds, tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table posts (id text primary key, zzz text, receivedDateTime text)")
        conn.execute("insert into posts values ('x' || hex(randomblob(60)), 'a', 'b')")
    conn.close()
    from datasette.database import Database

    both = make_datasette(ds.get_database("groupsync").path, immutable=True)
    both.add_database(Database(both, path=str(other), is_mutable=False), name="other")
    response = await both.client.get("/other/posts")
    assert headers(table_body(response.text)) == ["id", "zzz", "receivedDateTime"]


# -- hostile mail in the table pages and in folded quotes ---------------------------------


@pytest.fixture(scope="module")
def hostile_ds(hostile_archive):
    return make_datasette(hostile_archive, immutable=True)


@pytest.mark.asyncio
@pytest.mark.parametrize("table", sorted(FIRST_COLUMNS))
async def test_hostile_archive_tables_render_inert(hostile_ds, hostile_archive, table):
    db = Path(hostile_archive).stem
    response = await hostile_ds.client.get(f"/{db}/{table}?_size=100")
    assert response.status_code == 200
    assert_inert(table_body(response.text))


QUOTING = [
    '<p>{x}</p><hr><div id="divRplyFwdMsg"><b>From:</b> {x}<br><b>Sent:</b> {x}</div><p>{x}</p>',
    '<div>{x}</div><div class="gmail_quote">On Tue, {x} wrote:<blockquote>{x}</blockquote></div>',
    "<p>{x}</p><blockquote>{x}<blockquote>{x}</blockquote></blockquote><p>{x}</p>",
]


@pytest.fixture(scope="module")
def quoted(sample_archive, tmp_path_factory) -> dict[str, Any]:
    """A thread whose replies quote hostile text in each way mail quotes."""
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("quoted") / "groupsync.db")
    app = make_app(SAMPLE_DATA)
    thread = app.state.threads(MARKETING)[0]
    text = "<br>".join(hostile.MARKUP + hostile.BIDI + hostile.QUOTING)
    for template in QUOTING:
        body = template.replace("{x}", text)
        app.add_post(MARKETING, thread["id"], {"body": {"contentType": "html", "content": body}})
    body = "Answer.\n\nOn Tue, Alex wrote:\n" + "\n".join("> " + t for t in hostile.STORABLE)
    app.add_post(MARKETING, thread["id"], {"body": {"contentType": "text", "content": body}})
    sync_sample(app, path)
    return {"ds": make_datasette(path, immutable=True), "thread": thread["id"]}


@pytest.mark.asyncio
async def test_hostile_quotes_fold_and_stay_inert(quoted):
    url = f"/-/groupsync/thread/{tilde_encode(MARKETING)}/{tilde_encode(quoted['thread'])}"
    response = await quoted["ds"].client.get(url)
    assert response.status_code == 200
    view = page(response.text)
    posts = view.select("article.groupsync-post")
    added = posts[-4:]
    for post in added:
        body = post.select_one(".groupsync-body")
        assert_inert(body)
        folds = body.select("details.groupsync-quote")
        assert folds and all(d.get("open") is None for d in folds)
        assert all(d.select_one("summary") is not None for d in folds)
    assert "<escaped> &" in added[0].get_text()  # escaped markup reads as text
    # a text body's quoted markup is text too, inside the fold
    folds = added[-1].select("details.groupsync-quote")
    assert any("> <script>alert(1)</script>" in d.get_text() for d in folds)


@pytest.mark.asyncio
async def test_datasettes_index_links_to_groupsyncs_home(ds):
    index = page((await ds.client.get("/")).text)
    link = index.find("a", href="/-/groupsync/")
    assert link is not None and "groupsync" in link.get_text()
    home = page((await ds.client.get(link["href"])).text)
    assert home.find("a", href="/groupsync") is not None  # and back to the tables
