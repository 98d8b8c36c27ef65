"""Search results grouped by thread (issue 15): one entry per thread with its best post's
snippet, how many of its posts match and the newest match's date; in the library, the CLI
(``--posts`` for a hit per post) and the JSON of both."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from groupsync import search
from groupsync.archive import Archive
from groupsync.cli import cli

from . import hostile
from .conftest import ENGINEERING

QUERIES = ["the", "budget", "latency", "invoice OR roadmap", '"the team"', "has:attachment",
           "after:2024-06 the", "from:lea"]  # fmt: skip


@pytest.fixture(scope="module")
def sample(indexed_sample) -> tuple[Path, Path]:
    return indexed_sample


def per_post(sample, query: str, **kwargs) -> search.SearchResults:
    db, index = sample
    with Archive(db, readonly=True) as archive:
        return search.search(archive, index, query, limit=1000, **kwargs)


def per_thread(sample, query: str, **kwargs) -> search.ThreadResults:
    db, index = sample
    kwargs.setdefault("limit", 1000)
    with Archive(db, readonly=True) as archive:
        return search.search_threads(archive, index, query, **kwargs)


def invoke(db: Path, *args: str, **kwargs):
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False, **kwargs)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("sort", ["relevance", "date"])
def test_one_entry_per_thread_agrees_with_the_posts(sample, query, sort):
    posts = per_post(sample, query, sort=sort)
    threads = per_thread(sample, query, sort=sort)
    by_thread: dict[str, list[search.SearchHit]] = defaultdict(list)
    for hit in posts.hits:  # in rank order
        by_thread[hit.thread_id].append(hit)
    assert threads.posts == posts.total
    assert threads.total == len(by_thread)
    assert [t.hit.thread_id for t in threads.threads] == list(by_thread)  # ranked alike
    for entry in threads.threads:
        hits = by_thread[entry.hit.thread_id]
        assert entry.matching_posts == len(hits)
        newest = max(h.receivedDateTime or "" for h in hits)
        assert entry.newest_match == newest[:19] + "Z"
        assert entry.hit.post_id == hits[0].post_id  # the thread's best post
        assert entry.hit.snippet == hits[0].snippet


def test_sorted_by_date_newest_match_first(sample):
    threads = per_thread(sample, "the", sort="date").threads
    dates = [t.newest_match for t in threads]
    assert dates == sorted(dates, reverse=True) and len(dates) > 5


def test_a_word_in_six_posts_of_one_thread_is_one_entry(sample):
    found = per_thread(sample, "latency")
    assert (found.total, found.posts) == (1, 6)
    entry = found.threads[0]
    assert entry.matching_posts == 6 and entry.hit.topic == "Incident 2024-08-19: checkout latency"
    assert "**" in entry.hit.snippet_text and "<mark>" in entry.hit.snippet


def test_paging_counts_threads(sample):
    every = per_thread(sample, "the").threads
    assert len(every) > 10
    pages = [per_thread(sample, "the", limit=4, offset=n).threads for n in range(0, 12, 4)]
    assert [t.hit.thread_id for page in pages for t in page] == [
        t.hit.thread_id for t in every[:12]
    ]
    last = per_thread(sample, "the", limit=4, offset=len(every) - 1)
    assert len(last.threads) == 1 and last.total == len(every)


def test_group_and_deleted_filters_apply_to_threads(sample):
    found = per_thread(sample, "the", group="engineering")
    assert found.threads and {t.hit.group_id for t in found.threads} == {ENGINEERING}
    live = per_thread(sample, "roadmap")
    everything = per_thread(sample, "roadmap", include_deleted=True)
    assert everything.posts >= live.posts


def test_thread_json_shape(sample):
    entry = per_thread(sample, "latency").threads[0].as_dict()
    assert set(entry) == {"thread_id", "conversation_id", "group_id", "group_name", "topic",
                          "matching_posts", "newest_match", "best_post"}  # fmt: skip
    assert {"post_id", "sender", "receivedDateTime", "score", "snippet", "snippet_text",
            "in_attachment"} <= set(entry["best_post"])  # fmt: skip
    assert "thread_id" not in entry["best_post"]


# -- the command line ------------------------------------------------------------------------


def test_cli_search_lists_threads_by_default(sample):
    db, _ = sample
    result = invoke(db, "search", "latency")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["total"], data["posts"], len(data["value"])) == (1, 6, 1)
    assert data["value"][0]["matching_posts"] == 6


def test_cli_search_posts_lists_posts(sample):
    db, _ = sample
    data = json.loads(invoke(db, "search", "latency", "--posts").stdout)
    assert data["total"] == 6 and len(data["value"]) == 6 and "post_id" in data["value"][0]


def test_cli_search_limit_and_offset_count_threads(sample):
    db, _ = sample
    every = json.loads(invoke(db, "search", "the", "--limit", "1000").stdout)
    page = json.loads(invoke(db, "search", "the", "--limit", "3", "--offset", "2").stdout)
    assert [t["thread_id"] for t in page["value"]] == [
        t["thread_id"] for t in every["value"][2:5]
    ]


def test_cli_search_table_of_threads(sample):
    db, _ = sample
    result = invoke(db, "search", "latency", "--table")
    assert result.exit_code == 0
    head, rule, row = result.stdout.splitlines()[:3]
    assert head.split() == ["newest", "group", "posts", "topic", "snippet"]
    assert "Engineering" in row and " 6 " in row and "Incident 2024-08-19" in row
    assert result.stderr.strip() == "1-1 of 1 thread (6 matching posts)"
    posts = invoke(db, "search", "latency", "--table", "--posts")
    assert posts.stdout.splitlines()[0].split() == ["date", "group", "sender", "topic",
                                                    "snippet"]  # fmt: skip
    assert posts.stderr.strip() == "1-6 of 6 posts"


@pytest.mark.parametrize("per_post_flag", [[], ["--posts"]])
def test_cli_search_table_over_hostile_mail_is_terminal_safe(hostile_archive, tmp_path,
                                                             per_post_flag):  # fmt: skip
    db = tmp_path / "hostile.db"
    with Archive(hostile_archive, readonly=True) as source:
        source.conn.execute("VACUUM INTO ?", (str(db),))
    result = invoke(db, "search", "a OR e OR the", "--table", "--limit", "200", *per_post_flag)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert not set(result.stdout) & (hostile.TERMINAL_UNSAFE - {"\n"})
    search.close_indexes()
