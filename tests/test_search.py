"""Full-text search on the sample tenant: known answers, drift, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from groupsync import search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread
from groupsync.sync import Syncer

from .conftest import (
    ENGINEERING,
    MARKETING,
    SAMPLE_DATA,
    cli_env,
    copy_sample,
    graph_for,
    new_archive,
    rows,
    sync_sample,
)


@pytest.fixture(scope="module")
def sample(indexed_sample) -> tuple[Path, Path]:
    """The module's read-only sample archive and index (conftest's ``indexed_sample``)."""
    return indexed_sample


@pytest.fixture
def fresh(sample_archive, tmp_path) -> tuple[Path, Path, object]:
    """A sample archive of its own (to change), its index path and the simulator."""
    db, app = copy_sample(sample_archive, tmp_path / "a.db"), make_app(SAMPLE_DATA)
    yield db, search.index_path_for(db), app
    search.close_indexes()


def find(sample, query: str, **kwargs) -> search.SearchResults:
    db, index = sample
    with Archive(db, readonly=True) as archive:
        return search.search(archive, index, query, limit=100, **kwargs)


def topics(results: search.SearchResults) -> set[str]:
    return {h.topic for h in results.hits}


# -- analysis ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,terms",
    [
        ("Résumé DÉJÀ vu", ["resume", "deja", "vu"]),
        ("follow-up on 3.12", ["follow", "up", "on", "3", "12"]),
        ("日本語 receipts", ["日", "本", "語", "receipts"]),
        ("Bienvenue Zoë 🎉!", ["bienvenue", "zoe", "🎉"]),
        ("Straße Œuvre ﬁle", ["strasse", "oeuvre", "file"]),
        ("رمضان كريم", ["رمضان", "كريم"]),
        ("", []),
    ],
)
def test_terms_fold_case_accents_and_split_cjk(text, terms):
    assert search.terms_of(text) == terms


@pytest.mark.parametrize(
    "name,content_type,kind",
    [
        ("a.pdf", "application/pdf", "pdf"),
        ("a.pdf", None, "pdf"),
        ("a.html", "text/html; charset=utf-8", "html"),
        ("a.csv", "text/csv", "text"),
        ("notes.txt", "", "text"),
        ("logo.png", "image/png", None),
        ("deck.pptx", None, None),
    ],
)
def test_text_kind_of_attachments(name, content_type, kind):
    assert search.documents._text_kind(name, content_type) == kind


def test_a_broken_pdf_gives_no_text():
    assert search.documents._pdf_text(b"%PDF-1.4\nnot really a pdf") == ""
    assert search.documents._pdf_text(b"") == ""


# -- known answers on the sample tenant ----------------------------------------------------


def test_a_word_finds_its_posts_with_marked_snippets(sample):
    found = find(sample, "latency")
    assert found.total == 6 and topics(found) == {"Incident 2024-08-19: checkout latency"}
    top = found.hits[0]
    assert "<mark>" in top.snippet and "**" in top.snippet_text
    assert top.group_name == "Engineering" and top.group_id == ENGINEERING
    assert top.sender["address"].endswith("@contosooutdoor.onmicrosoft.com")
    assert top.score and top.receivedDateTime.startswith("2024-08-")
    assert [h.score for h in found.hits] == sorted((h.score for h in found.hits), reverse=True)


@pytest.mark.parametrize(
    "query,expected_topics",
    [
        ("subject:roadmap", {"Roadmap 2025 (draft)"}),
        ("topic:roadmap", {"Roadmap 2025 (draft)"}),
        ("filename:pdf", {"Q1 2025 budget (confidential)"}),
        ("file:inventaire", {"Inventaire boutique Rivoli — mars"}),
        ("category:orange", {"Security: rotate API keys before 31 Jan"}),
        ("categories:purple", {"Spring 2024 campaign kickoff"}),
    ],
)
def test_field_aliases(sample, query, expected_topics):
    assert topics(find(sample, query)) == expected_topics


def test_from_matches_sender_names_and_addresses(sample):
    db, _ = sample
    (count,) = rows(db, "SELECT count(*) FROM posts WHERE sender_name LIKE 'Priya%'")[0]
    by_name = find(sample, "from:priya")
    by_address = find(sample, "from:priya.raghunathan@contosooutdoor.onmicrosoft.com")
    assert by_name.total == by_address.total == count
    assert {h.sender["name"] for h in by_name.hits} == {"Priya Raghunathan"}
    assert find(sample, 'from:"Priya Raghunathan"').total == count


def test_to_matches_thread_recipients(sample):
    db, _ = sample
    (count,) = rows(db, "SELECT count(*) FROM posts WHERE group_id = ?", (MARKETING,))[0]
    assert find(sample, "to:marketing").total == count


@pytest.mark.parametrize("value", ["engineering", "Engineering", ENGINEERING, "engineering@"])
def test_group_by_name_or_id(sample, value):
    db, _ = sample
    (count,) = rows(db, "SELECT count(*) FROM posts WHERE group_id = ?", (ENGINEERING,))[0]
    found = find(sample, f"group:{value}")
    assert found.total == count and {h.group_id for h in found.hits} == {ENGINEERING}
    assert found.sort == "date"  # nothing to score: newest first
    dates = [h.receivedDateTime for h in found.hits]
    assert dates == sorted(dates, reverse=True)


def test_group_names_fold_accents_and_prefixes(sample):
    assert {h.group_name for h in find(sample, 'group:"Équipe Paris"').hits} == {"Équipe Paris"}
    assert {h.group_name for h in find(sample, "group:equipe").hits} == {"Équipe Paris"}
    assert find(sample, "latency", group="engineering").total == 6
    assert find(sample, "latency", group="marketing").total == 0


def test_has_attachment(sample):
    db, _ = sample
    (count,) = rows(
        db,
        "SELECT count(*) FROM posts WHERE hasAttachments = 1 OR id IN "
        "(SELECT post_id FROM attachments WHERE deleted_at IS NULL)",
    )[0]
    found = find(sample, "has:attachment")
    assert found.total == count == 12 and all(h.has_attachments for h in found.hits)
    assert find(sample, "has:attachments budget").total == 1


@pytest.mark.parametrize(
    "query,since,until",
    [
        ("after:2025-01-01 before:2025-02-01", "2025-01-01", "2025-02-01"),
        ("after:2025-01 before:2025-02", "2025-01-01", "2025-02-01"),
        ("after:2025-03-10", "2025-03-10", "9999"),
        ("before:2024-03", "0000", "2024-03-01"),
    ],
)
def test_date_ranges(sample, query, since, until):
    db, _ = sample
    (count,) = rows(
        db,
        "SELECT count(*) FROM posts WHERE receivedDateTime >= ? AND receivedDateTime < ?",
        (since, until),
    )[0]
    found = find(sample, query)
    assert found.total == count > 0
    assert all(since <= h.receivedDateTime < until for h in found.hits)


def test_dates_and_words_combine(sample):
    found = find(sample, "budget after:2025-01-01 before:2025-02")
    assert topics(found) == {"Q1 2025 budget (confidential)"}


def test_phrases(sample):
    assert topics(find(sample, '"checkout latency"')) == {"Incident 2024-08-19: checkout latency"}
    assert find(sample, '"latency checkout"').total == 0
    assert find(sample, '"Zoë Martin"').total >= 1


def test_boolean_operators(sample):
    roadmap = find(sample, "roadmap").total
    kiosk = find(sample, "roadmap kiosk").total
    assert 0 < kiosk < roadmap
    assert find(sample, "roadmap -kiosk").total == roadmap - kiosk
    assert find(sample, "roadmap AND NOT kiosk").total == roadmap - kiosk
    assert find(sample, "roadmap OR latency").total == roadmap + find(sample, "latency").total
    assert find(sample, "roadmap AND latency").total == 0
    assert find(sample, "NOT roadmap").total == 95 - roadmap


def test_prefix_and_fuzzy(sample):
    budget = find(sample, "budget").total
    assert find(sample, "budg*").total >= budget > 0
    assert find(sample, "budgit~").total >= budget
    assert find(sample, "bugdet~2").total >= budget
    assert "<mark>" in find(sample, "budg*").hits[0].snippet


def test_accents_find_both_ways(sample):
    assert find(sample, "reunion").total == find(sample, "réunion").total >= 2
    assert find(sample, "zoe").total == find(sample, "Zoë").total >= 3


@pytest.mark.parametrize(
    "query,topic",
    [
        ("日本語", "Release 2.4 — release notes"),
        ("新年", "Happy Lunar New Year / 新年快乐 / 明けましておめでとう"),
        ("明けまして", "Happy Lunar New Year / 新年快乐 / 明けましておめでとう"),
        ("رمضان", "Office closure: Ramadan & Eid hours (رمضان كريم)"),
        ("🎉", "Bienvenue à Zoë !"),
    ],
)
def test_cjk_arabic_and_emoji(sample, query, topic):
    assert topic in topics(find(sample, query))


@pytest.mark.parametrize("query", ["🏔️", "⛺ tent", "中文", "集装箱", "😬"])
def test_symbols_never_crash(sample, query):
    find(sample, query)


def test_text_inside_a_pdf_attachment(sample):
    found = find(sample, "quarterly")  # only in the PDF: "Quarterly budget 2025 — confidential"
    assert topics(found) == {"Q1 2025 budget (confidential)"} and found.total == 1
    assert found.hits[0].has_attachments
    assert find(sample, '"quarterly budget"').total == 1


def test_text_inside_text_and_html_attachments(sample):
    assert "Release 2.4 — release notes" in topics(find(sample, "attachment:release"))
    inventory = {"Inventaire boutique Rivoli — mars"}
    assert topics(find(sample, "attachment:impermeable")) == inventory  # a CSV
    assert topics(find(sample, "attachment:reference")) == inventory  # after its BOM
    invoice = {"Suspicious invoice — DO NOT OPEN (phishing sample, hostile HTML)"}
    assert topics(find(sample, "attachment:overdue")) == invoice  # an HTML file's text
    assert find(sample, "attachment:cookie").total == 0  # not its script


def test_limit_offset_and_sort(sample):
    everything = find(sample, "the", sort="date")
    dates = [h.receivedDateTime for h in everything.hits]
    assert dates == sorted(dates, reverse=True) and everything.sort == "date"
    page = find(sample, "the", sort="date", offset=5)
    assert [h.post_id for h in page.hits] == [h.post_id for h in everything.hits[5:]]
    db, index = sample
    with Archive(db, readonly=True) as archive:
        two = search.search(archive, index, "the", limit=2)
    assert len(two.hits) == 2 and two.total == find(sample, "the").total


@pytest.mark.parametrize(
    "query,message",
    [
        ('"budget', "unbalanced quotes"),
        ("(budget", r"'\('"),
        ("budget)", r"'\)'"),
        ("after:2025-13-01", "not a date"),
        ("after:yesterday", "wants a date"),
        ("has:pdf", "has:attachment"),
        ("group:nowhere", "no archived group matches"),
        ("cc:daniel", "no field cc: in search; the fields are from:"),
        ("budget AND", "needs a term"),
        ("*", "wildcard"),
        ("   ", "empty query"),
        ("a*~", None),
    ],
)
def test_malformed_queries(sample, query, message):
    if message is None:
        try:
            find(sample, query)
        except search.QueryError as ex:
            assert "\n" not in str(ex)
        return
    with pytest.raises(search.QueryError, match=message) as info:
        find(sample, query)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "query,message",
    [
        ("a" * 60_000, "60,000 characters long; at most 1,000"),
        ("budget " * 200, "1,400 characters long"),
        (" ".join(["budget"] * 51), "51 words; at most 50"),
        (" OR ".join(["budget"] * 50), None),  # operators do not count
        ("(" * 11 + "budget" + ")" * 11, "nest at most 10 deep"),
        ("(" * 10 + "budget" + ")" * 10, None),
        ("a* b* c* d* e*", "5 prefix, wildcard or fuzzy terms; at most 4"),
        ("bu* OR la~ OR r?adm* OR kiosk~2 OR zz*", "at most 4"),
        ("budget~3", "at most ~2 edits"),
        ("budget~9/1", "at most ~2 edits"),
    ],
)
def test_hostile_queries_are_refused_in_milliseconds(sample, query, message):
    started = time.process_time()
    if message is None:
        find(sample, query)
    else:
        with pytest.raises(search.QueryError, match=message):
            find(sample, query)
        assert time.process_time() - started < 0.5


def test_a_query_that_would_score_too_many_postings_is_refused(sample, monkeypatch):
    from groupsync.search import evaluator

    assert find(sample, "latency").total == 6  # a few postings: well within any budget
    monkeypatch.setattr(evaluator, "MAX_POSTINGS", 40)
    assert find(sample, "latency").total == 6
    with pytest.raises(search.QueryError, match="would take too long"):
        find(sample, "the OR budget OR roadmap OR latency")
    with pytest.raises(search.QueryError, match="would take too long"):
        find(sample, '"the budget" OR "the roadmap"')


def test_bad_sort_and_limit(sample):
    with pytest.raises(search.QueryError):
        find(sample, "budget", sort="size")
    db, index = sample
    with Archive(db, readonly=True) as archive, pytest.raises(search.QueryError):
        search.search(archive, index, "budget", limit=0)


QUERIES = [
    "budget", "budget review", '"checkout latency"', "roadmap -kiosk", "roadmap OR latency",
    "budg*", "from:priya", "group:engineering latency", "has:attachment budget",
    "after:2025-01-01 budget", "NOT roadmap", "zoe OR (latency AND NOT checkout)",
]  # fmt: skip


@pytest.mark.parametrize("query", QUERIES)
def test_bulk_evaluation_matches_whoosh(sample, query):
    """The block-at-a-time evaluator finds what Whoosh's own matchers find, same scores."""
    db, index = sample
    with Archive(db, readonly=True) as archive:
        parsed = search.parse_query(query, search.query._Resolver(archive))
    q = parsed.query if parsed.filter is None else search.Filtered(parsed.query, parsed.filter)
    from whoosh import index as windex

    ix = windex.open_dir(str(index))
    try:
        with ix.searcher() as searcher:
            ours = {}
            evaluated = search.evaluator._evaluate(searcher, q, None)
            for offset, found, _data, _reader, _words in evaluated:
                ours.update({offset + d: v for d, v in found.items()})
            theirs = dict(searcher.search(q, limit=None).items())
    finally:
        ix.close()
    assert set(ours) == set(theirs)
    if '"' not in query and "*" not in query:
        assert all(abs(ours[d] - theirs[d]) < 1e-4 for d in ours)


# -- incremental updates and drift -----------------------------------------------------------


def test_update_index_creates_then_reports_current(fresh):
    db, index, _app = fresh
    with Archive.open_for_writing(db) as archive:
        first = search.update_index(archive, index)
        again = search.update_index(archive, index)
        check = search.check_index(archive, index)
    assert first.mode == "created" and first.indexed == 95
    assert again.mode == "current" and again.indexed == 0
    assert check.ok and check.documents == check.posts == 95
    state = json.loads((index / search.STATE_FILE).read_text())
    assert state["change_seq"] == check.archive_seq == check.index_seq


def test_an_empty_archive_then_its_first_sync(tmp_path):
    db = tmp_path / "empty.db"
    index = search.index_path_for(db)
    with new_archive(db) as archive:
        assert search.update_index(archive, index).documents == 0
        assert search.search(archive, index, "latency").total == 0
        assert search.check_index(archive, index).ok
    sync_sample(make_app(SAMPLE_DATA), db)
    with Archive.open_for_writing(db) as archive:
        assert search.update_index(archive, index).indexed == 95
        assert search.search(archive, index, "latency").total == 6
        assert search.check_index(archive, index).ok
    search.close_indexes()


def test_an_edited_post_is_found_by_its_new_words_only(fresh):
    db, index, app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index)
        old = search.search(archive, index, "latency", group=ENGINEERING)
    hit = next(h for h in old.hits if "8.4 s" in h.snippet_text)
    app.edit_post(ENGINEERING, hit.thread_id, hit.post_id, content="<p>Zebra xylophone drill</p>")
    sync_sample(app, db, full=True)
    with Archive.open_for_writing(db) as archive:
        report = search.update_index(archive, index)
        assert report.indexed == 1 and report.mode == "updated"
        new = search.search(archive, index, "xylophone")
        assert [h.post_id for h in new.hits] == [hit.post_id]
        assert "Zebra <mark>xylophone</mark> drill" in new.hits[0].snippet
        assert hit.post_id not in {h.post_id for h in search.search(archive, index, '"8.4 s"').hits}
        assert search.check_index(archive, index).ok


def test_a_deleted_post_leaves_default_results(fresh):
    db, index, app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index)
        before = search.search(archive, index, "hackathon")
    thread_id = before.hits[0].thread_id
    app.delete_thread(ENGINEERING, thread_id)
    sync_sample(app, db, full=True)
    with Archive.open_for_writing(db) as archive:
        report = search.update_index(archive, index)
        assert report.removed == before.total
        assert search.search(archive, index, "hackathon").total == 0
        kept = search.search(archive, index, "hackathon", include_deleted=True)
        assert kept.total == 0  # not kept: gone from the index
        assert search.check_index(archive, index).ok


def test_deleted_posts_kept_and_marked_for_compliance(fresh):
    db, index, app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index, keep_deleted=True)
        thread_id = search.search(archive, index, "hackathon").hits[0].thread_id
    app.delete_thread(ENGINEERING, thread_id)
    sync_sample(app, db, full=True)
    with Archive.open_for_writing(db) as archive:
        report = search.update_index(archive, index)  # keeps what the index was built with
        assert report.kept_deleted == 4
        assert search.search(archive, index, "hackathon").total == 0
        kept = search.search(archive, index, "hackathon", include_deleted=True)
        assert kept.total == 4 and all(h.deleted_at for h in kept.hits)
        assert search.check_index(archive, index).ok
        dropped = search.update_index(archive, index, keep_deleted=False)
        assert dropped.removed == 4
        assert search.search(archive, index, "hackathon", include_deleted=True).total == 0
        assert search.check_index(archive, index).ok


def test_a_crash_between_the_database_and_the_index_heals(fresh):
    db, index, app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index)
    thread_id = rows(db, "SELECT id FROM threads WHERE topic LIKE 'Hackathon%'")[0][0]
    app.add_post(
        ENGINEERING,
        thread_id,
        {"body": {"contentType": "html", "content": "<p>Quokka telemetry dashboard</p>"}},
    )
    with graph_for(app) as graph, Archive.open_for_writing(db) as archive:
        Syncer(archive, graph).run()  # the database moves on; the index is not updated
        check = search.check_index(archive, index)
        assert not check.ok and len(check.missing) == 1 and check.behind == 1
    with Archive(db, readonly=True) as archive:
        archive.readonly = True  # what a read-only opening should say (see the report)
        stale = search.search(archive, index, "quokka")
        assert stale.total == 0 and stale.behind == 1 and "behind" in stale.notes[0]
    with Archive.open_for_writing(db) as archive:
        healed = search.search(archive, index, "quokka")  # catches up first
        assert healed.total == 1 and healed.behind == 0
        assert search.check_index(archive, index).ok


def test_check_reports_stale_and_extra_documents(fresh):
    db, index, _app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index)
    post_id = rows(db, "SELECT id FROM posts ORDER BY id LIMIT 1")[0][0]
    with sqlite3.connect(db) as conn:
        (top,) = conn.execute("SELECT max(change_seq) FROM posts").fetchone()
        conn.execute("UPDATE posts SET change_seq = ? WHERE id = ?", (top + 1, post_id))
    with Archive.open_for_writing(db) as archive:
        check = search.check_index(archive, index)
        assert check.stale == [post_id] and not check.ok
        search.update_index(archive, index)
        assert search.check_index(archive, index).ok


def test_rebuild_replaces_the_index(fresh):
    db, index, _app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index)
        assert search.search(archive, index, "latency").total == 6
        events = []
        report = search.rebuild_index(archive, index, procs=1, progress=events.append)
        assert report.mode == "rebuilt" and report.documents == 95
        assert events and events[-1]["stage"] == "done"
        assert search.search(archive, index, "latency").total == 6  # the searcher reopened
        assert not list(index.parent.glob("*.tmp-*"))


def test_rebuild_in_two_processes(fresh, monkeypatch):
    db, index, _app = fresh
    monkeypatch.setattr(search.indexer, "BATCH", 8)  # enough batches for both builders
    with Archive.open_for_writing(db) as archive:
        report = search.rebuild_index(archive, index, procs=2)
        assert report.documents == 95
        assert search.check_index(archive, index).ok
        assert search.search(archive, index, "latency").total == 6


def test_a_schema_change_rebuilds_the_index(fresh):
    db, index, _app = fresh
    with Archive.open_for_writing(db) as archive:
        search.update_index(archive, index)
        state = json.loads((index / search.STATE_FILE).read_text())
        state["format"] = 0
        (index / search.STATE_FILE).write_text(json.dumps(state))
        assert search.update_index(archive, index).mode == "rebuilt"


# -- the command line ------------------------------------------------------------------------


def invoke(db: Path, *args: str, **kwargs):
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False, **kwargs)


def test_cli_search_json(sample):
    db, index = sample
    result = invoke(db, "search", "latency", "--limit", "2", "--posts")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 6 and len(data["value"]) == 2
    hit = data["value"][0]
    assert {"post_id", "thread_id", "group_id", "group_name", "topic", "sender",
            "receivedDateTime", "score", "snippet", "snippet_text"} <= set(hit)  # fmt: skip


def test_cli_search_table_marks_matches_in_bold(sample):
    db, _ = sample
    result = invoke(db, "search", "latency", "--table", "--posts", color=True)
    assert result.exit_code == 0
    assert "\x1b[1m" in result.stdout and "Incident 2024-08-19" in result.stdout
    plain = invoke(db, "search", "latency", "--table", "--posts")
    assert "\x1b[" not in plain.stdout and "latency" in plain.stdout.lower()


def test_cli_search_no_hits(sample):
    db, _ = sample
    result = invoke(db, "search", "nothingmatchesthis")
    assert result.exit_code == 0 and result.stderr.strip() == "No posts match."
    assert json.loads(result.stdout) == {"value": [], "total": 0, "posts": 0}


def test_cli_search_malformed(sample):
    db, _ = sample
    result = invoke(db, "search", '"budget')
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "unbalanced" in result.stderr


def test_cli_search_refuses_a_huge_query_quickly(sample):
    db, _ = sample
    started = time.monotonic()
    result = invoke(db, "search", "x" * 60_000)
    assert time.monotonic() - started < 2
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: the query is 60,000 characters long; at most 1,000 are allowed"
    )


def test_cli_search_options(sample):
    db, _ = sample
    result = invoke(db, "search", "the", "--group", "engineering", "--sort", "date",
                    "--limit", "3", "--offset", "1", "--posts")  # fmt: skip
    data = json.loads(result.stdout)
    assert len(data["value"]) == 3 and {h["group_id"] for h in data["value"]} == {ENGINEERING}


def test_cli_index_check_rebuild_and_catch_up(fresh):
    db, index, app = fresh
    result = invoke(db, "index")
    assert result.exit_code == 0, result.output
    assert invoke(db, "index", "--check").exit_code == 0
    thread_id = rows(db, "SELECT id FROM threads WHERE topic LIKE 'Hackathon%'")[0][0]
    app.add_post(ENGINEERING, thread_id, {"body": {"contentType": "text", "content": "wombat"}})
    with graph_for(app) as graph, Archive.open_for_writing(db) as archive:
        Syncer(archive, graph).run()
    check = invoke(db, "index", "--check")
    assert check.exit_code == 1 and "missing" in check.stdout
    assert invoke(db, "index").exit_code == 0
    assert invoke(db, "index", "--check").exit_code == 0
    assert invoke(db, "index", "--rebuild").exit_code == 0
    assert invoke(db, "index", "--check", "--index", str(index)).exit_code == 0


# -- a real sync, killed -----------------------------------------------------------------------


@pytest.mark.e2e
def test_index_check_is_clean_after_a_killed_sync_and_a_rerun(tmp_path):
    db = tmp_path / "killed.db"
    app = make_app(SAMPLE_DATA, SimulatorOptions(latency_ms=40, max_concurrency=4))
    with serve_in_thread(app) as url:
        env = cli_env(url, db)
        command = [sys.executable, "-m", "groupsync", "sync", "--quiet", "--joined"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        for n in range(3):  # new mail arrives, then a sync is killed while storing it
            app.add_post(ENGINEERING, _thread(db, "Hackathon%"),
                         {"body": {"contentType": "text", "content": f"kangaroo {n}"}})  # fmt: skip
            app.add_post(MARKETING, _thread(db, "Photo shoot%"),
                         {"body": {"contentType": "text", "content": f"kangaroo {n}"}})  # fmt: skip
            proc = subprocess.Popen(
                command + ["--full"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(0.3 + 0.25 * n)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
    check = subprocess.run(
        [sys.executable, "-m", "groupsync", "index", "--check"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    with Archive(db, readonly=True) as archive:
        assert search.search(archive, search.index_path_for(db), "kangaroo").total == 6
    search.close_indexes()


def _thread(db: Path, pattern: str) -> str:
    return rows(db, "SELECT id FROM threads WHERE topic LIKE ?", (pattern,))[0][0]
