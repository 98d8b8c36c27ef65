"""Shards (issue 16): four shards synced separately hold exactly what one archive of the
whole tenant holds, and a search across the four ranks as that one archive does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from groupsync.archive import Archive
from groupsync.search import search, search_threads, update_index
from groupsync.search.federated import search_archives, search_threads_archives
from groupsync.shards import Shard, parse_shard, shard_of
from groupsync.simulator import SimulatorOptions, make_app
from groupsync.sync import Syncer, SyncOptions

from .conftest import generate_tenant, graph_for, new_archive, rows, run_cli

SHARDS = 4
QUERIES = [  # each matches more than 20 posts of the generated tenant
    "budget",
    "meeting OR review",
    "team please",
    '"launch retrospective"',
    "please -hello",
    "data OR support",
    "sched*",
]


def sync_all(sim, path: Path, shard: Shard | None = None) -> None:
    with graph_for(sim) as graph, new_archive(path) as archive:
        report = Syncer(archive, graph, options=SyncOptions()).run(all_groups=True, shard=shard)
        assert report.status == "complete", report.error
        update_index(archive, f"{path}.whoosh")


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> tuple[Path, list[Path]]:
    """One archive of a generated tenant and four shard archives of it, each indexed."""
    out = tmp_path_factory.mktemp("shards")
    data = generate_tenant(out / "tenant", groups=12, threads=120, posts=600, seed=16,
                           words=40)  # fmt: skip
    sim = make_app(data, SimulatorOptions(page_size=50, max_top=50, max_concurrency=0))
    whole = out / "whole.db"
    sync_all(sim, whole)
    shards = []
    for k in range(SHARDS):
        path = out / f"shard-{k}.db"
        sync_all(sim, path, Shard(k, SHARDS))
        shards.append(path)
    return whole, shards


def content(db: Path) -> dict[str, set[tuple]]:
    body = "SELECT id, group_id, thread_id, changeKey, body_content, deleted_at FROM posts"
    return {
        "groups": set(rows(db, "SELECT id, displayName, mail, deleted_at FROM groups")),
        "conversations": set(rows(db, "SELECT id, group_id, topic FROM conversations")),
        "threads": set(rows(db, "SELECT id, group_id, conversation_id, topic FROM threads")),
        "posts": {(*r[:4], hashlib.sha256((r[4] or "").encode()).hexdigest(), r[5])
                  for r in rows(db, body)},  # fmt: skip
        "attachments": set(rows(db, "SELECT post_id, id, name, sha256 FROM attachments")),
        "versions": set(rows(db, "SELECT post_id, changeKey, sha256 FROM post_versions")),
    }


def test_shards_hold_exactly_the_unsharded_archive(tenant):
    whole, shards = tenant
    expected = content(whole)
    parts = [content(path) for path in shards]
    for k, part in enumerate(parts):
        assert part["groups"], f"shard {k} holds no group: the test tenant is too small"
        assert all(shard_of(g[0], SHARDS) == k for g in part["groups"])
    for table, want in expected.items():
        union: set[tuple] = set()
        for part in parts:
            assert not union & part[table], f"{table} in two shards"
            union |= part[table]
        assert union == want, table
    assert len(expected["posts"]) == 600


def assert_same_top(got: list, want: list, total: int, n: int = 20) -> None:
    """``got`` is ``want``'s top ``n``: the same score at every rank (within float
    tolerance) and the same posts at each score. Posts of equal score come in index order,
    which differs between one index and four, so where the n-th place falls inside a run of
    equal scores, ``got`` holds some of that run (``want`` must hold all of it)."""
    got = got[:n]
    assert len(got) == min(n, len(want))
    assert [h.score for h in got] == pytest.approx([h.score for h in want[:n]], abs=1e-3)
    last = got[-1].score
    assert len(want) == total or want[-1].score < last, "fetch more of the single archive's"
    for score in {h.score for h in got}:
        mine = {h.post_id for h in got if h.score == score}
        theirs = {h.post_id for h in want if h.score == score}
        assert mine <= theirs if score == last else mine == theirs, score


@pytest.mark.parametrize("query", QUERIES)
def test_search_across_shards_ranks_as_the_whole_archive(tenant, query):
    whole, shards = tenant
    with Archive(whole, readonly=True) as archive:
        single = search(archive, f"{whole}.whoosh", query, limit=200)
    opened = [Archive(path, readonly=True) for path in shards]
    try:
        sources = [(p.name, a, f"{p}.whoosh") for p, a in zip(shards, opened, strict=True)]
        merged = search_archives(sources, query, limit=20)
        every = search_archives(sources, query, limit=200)
    finally:
        for archive in opened:
            archive.close()
    assert single.total > 20, f"{query!r} matches too few posts to test a top 20"
    assert merged.total == single.total
    assert_same_top(merged.hits, single.hits, single.total)
    assert len({h.archive for h in every.hits}) > 1  # the ranking merges several shards


@pytest.mark.parametrize("query", QUERIES)
def test_threads_across_shards_rank_as_in_the_whole_archive(tenant, query):
    """One entry per thread: a thread lives in one shard, so the merged best threads are
    the whole archive's, by the same scores."""
    whole, shards = tenant
    with Archive(whole, readonly=True) as archive:
        single = search_threads(archive, f"{whole}.whoosh", query, limit=200)
    opened = [Archive(path, readonly=True) for path in shards]
    try:
        merged = search_threads_archives(
            [(p.name, a, f"{p}.whoosh") for p, a in zip(shards, opened, strict=True)], query
        )
    finally:
        for archive in opened:
            archive.close()
    assert (merged.total, merged.posts) == (single.total, single.posts)
    assert_same_top([t.hit for t in merged.threads], [t.hit for t in single.threads],
                    single.total)  # fmt: skip
    counts = {t.hit.thread_id: t.matching_posts for t in single.threads}
    assert all(counts[t.hit.thread_id] == t.matching_posts for t in merged.threads)


def test_search_of_one_shard_alone_is_not_the_global_ranking(tenant):
    """The reason for global statistics: a shard's own idf gives other scores."""
    whole, shards = tenant
    with Archive(shards[0], readonly=True) as archive:
        local = search(archive, f"{shards[0]}.whoosh", "budget", limit=5)
        scoped = search_archives([("s0", archive, f"{shards[0]}.whoosh")], "budget", limit=5)
    assert [h.score for h in local.hits] == [h.score for h in scoped.hits]
    assert [h.archive for h in scoped.hits] == ["s0"] * len(scoped.hits)


@pytest.mark.parametrize(
    "text,message",
    [
        ("4/4", "K is 0-based"),
        ("-1/4", "takes K/N"),
        ("1/0", "N must be between"),
        ("a/b", "takes K/N"),
        ("3", "takes K/N"),
    ],
)
def test_bad_shard_is_one_line(text, message):
    with pytest.raises(Exception, match=message):
        parse_shard(text)


def test_cli_shard_errors_exit_2_in_one_line(tmp_path):
    for args in (["sync", "--all", "--shard", "4/4"], ["sync", "--shard", "0/4"]):
        result = run_cli(*args, db=tmp_path / "a.db")
        assert result.returncode == 2
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), lines


def test_shard_of_is_stable_and_spread():
    assert shard_of("83231E12-1380-4fe3-b849-b614bcff5d6c", 4) == shard_of(
        "83231e12-1380-4fe3-b849-b614bcff5d6c", 4
    )
    # SHA-256, fixed for ever: a group never moves shard between releases.
    assert shard_of("83231e12-1380-4fe3-b849-b614bcff5d6c", 1000) == int.from_bytes(
        hashlib.sha256(b"83231e12-1380-4fe3-b849-b614bcff5d6c").digest()[:8], "big") % 1000
    counts = [0] * 4
    for n in range(400):
        counts[shard_of(f"{n:08d}-0000-4000-8000-000000000000", 4)] += 1
    assert min(counts) > 70


def test_cli_searches_several_archives_as_one(tenant):
    whole, shards = tenant
    args = [a for path in shards for a in ("--archive", str(path))]
    result = run_cli("search", "budget", "--limit", "5", "--posts", *args)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    opened = [Archive(path, readonly=True) for path in shards]
    try:
        merged = search_archives([(str(p), a, f"{p}.whoosh") for p, a in zip(shards, opened,
                                  strict=True)], "budget", limit=5)  # fmt: skip
    finally:
        for archive in opened:
            archive.close()
    assert [h["post_id"] for h in answer["value"]] == [h.post_id for h in merged.hits]
    assert {h["archive"] for h in answer["value"]} <= {str(p) for p in shards}
    assert answer["total"] == merged.total
    threads = json.loads(run_cli("search", "budget", "--limit", "5", *args).stdout)
    assert len(threads["value"]) == 5 and threads["posts"] == merged.total
    assert len({t["thread_id"] for t in threads["value"]}) == 5
    missing = run_cli("search", "budget", "--archive", str(shards[0]), "--archive", "nope.db")
    assert missing.returncode != 0 and len(missing.stderr.decode().strip().splitlines()) == 1


@pytest.mark.asyncio
async def test_serve_opens_every_shard_and_searches_them_as_one(tenant):
    from bs4 import BeautifulSoup

    from groupsync.datasette_plugin.server import make_datasette

    whole, shards = tenant
    ds = make_datasette(shards, immutable=True)
    try:
        databases = await ds.client.get("/.json")
        assert {p.stem for p in shards} <= set(databases.json())
        index = await ds.client.get("/-/groupsync/")
        assert index.status_code == 200
        with Archive(whole, readonly=True) as archive:
            names = [r[0] for r in archive.conn.execute("SELECT displayName FROM groups")]
            single = search(archive, f"{whole}.whoosh", "budget", limit=200)
        page = BeautifulSoup(index.text, "html.parser").get_text()
        assert all(name in page for name in names)  # the group list covers every shard
        found = await ds.client.get("/-/groupsync/search?q=budget")
        assert found.status_code == 200
        links = [a["href"] for a in BeautifulSoup(found.text, "html.parser").select("a[href]")
                 if "/-/groupsync/thread/" in a["href"]]  # fmt: skip
        dbs = {href.split("db=")[1].split("#")[0] for href in links if "db=" in href}
        assert len(dbs) > 1 and dbs <= {p.stem for p in shards}
        assert str(single.total) in BeautifulSoup(found.text, "html.parser").get_text()
        first = await ds.client.get(links[0])
        assert first.status_code == 200  # the thread opens from its own shard
    finally:
        search_close()


def search_close() -> None:
    from groupsync.search import close_indexes

    close_indexes()


def test_verify_and_export_take_several_archives(tenant, tmp_path):
    import shutil

    _whole, shards = tenant
    copies = []
    for path in shards:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        shutil.copytree(f"{path}.whoosh", f"{copy}.whoosh")
        copies.append(copy)
    args = [a for path in copies for a in ("--archive", str(path))]
    verified = run_cli("verify", "--json", *args)
    assert verified.returncode == 0, verified.stderr
    exported = run_cli("export", "--format", "jsonl", "--out", str(tmp_path / "out"), *args)
    assert exported.returncode == 0, exported.stderr
    posts = 0
    for path in copies:
        manifest = json.loads((tmp_path / "out" / path.stem / "manifest.json").read_text())
        assert manifest
        posts += rows(path, "SELECT count(*) FROM posts")[0][0]
    lines = sum(len(p.read_text().splitlines()) for p in (tmp_path / "out").rglob("*.jsonl"))
    assert lines == posts == 600
    damaged = copies[1]
    rows(damaged, "UPDATE posts SET body_content = 'x' WHERE rowid = 1")
    again = run_cli("verify", *args)
    assert again.returncode == 1
    assert f"== {damaged}" in again.stdout.decode()
    both = run_cli("verify", "--archive", str(copies[0]), "--anchor", "abc")
    assert both.returncode == 2 and len(both.stderr.decode().strip().splitlines()) == 1


@pytest.mark.asyncio
async def test_hostile_mail_across_archives_stays_text(hostile_archive, sample_archive, tmp_path):
    """Search across archives renders hostile mail as the one-archive pages do: on a page,
    no active markup; on a terminal, no control characters."""
    import shutil

    from bs4 import BeautifulSoup

    from groupsync.datasette_plugin.server import make_datasette
    from groupsync.search import close_indexes

    from . import hostile

    paths = [tmp_path / "hostile.db", tmp_path / "plain.db"]
    shutil.copy(hostile_archive, paths[0])
    shutil.copy(sample_archive, paths[1])
    args = [a for path in paths for a in ("--archive", str(path))]
    table = run_cli("search", "alert OR script", "--table", *args)
    assert table.returncode == 0, table.stderr
    shown = table.stdout.decode("utf-8")
    assert "alert" in shown
    assert not set(shown) & (hostile.TERMINAL_UNSAFE - {"\n"})
    ds = make_datasette(paths, immutable=True)
    try:
        page = await ds.client.get("/-/groupsync/search?q=alert")
        assert page.status_code == 200
        soup = BeautifulSoup(page.text, "html.parser")
        assert "alert" in soup.get_text()
        hits = soup.select('a[href*="/-/groupsync/thread/"]')
        assert {h["href"].split("db=")[1].split("#")[0] for h in hits} == {"hostile", "plain"}
        assert not [t for t in soup.find_all(True) if any(k.startswith("on") for k in t.attrs)]
        assert not [t for t in soup.find_all("script") if "alert" in t.text or t.get("src")
                    and not t["src"].startswith("/")]  # fmt: skip
        assert not soup.find_all("iframe")
        assert "<script>alert(1)" not in page.text
    finally:
        close_indexes()
