"""Search reads text as text (issue 15): only known fields are fields, unknown ones and
ambiguous groups are one clear error, nothing found suggests words from the index, and a
match only inside an attachment says so."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupsync import search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.search.query import QueryError, _Resolver, parse_query

from . import hostile
from .conftest import ENGINEERING, run_cli

LATENCY_TOPIC = "Incident 2024-08-19: checkout latency"


@pytest.fixture(scope="module")
def sample(indexed_sample) -> tuple[Path, Path]:
    return indexed_sample


def find(sample, query: str, **kwargs) -> search.SearchResults:
    db, index = sample
    with Archive(db, readonly=True) as archive:
        return search.search(archive, index, query, limit=100, **kwargs)


def threads(sample, query: str, **kwargs) -> search.ThreadResults:
    db, index = sample
    with Archive(db, readonly=True) as archive:
        return search.search_threads(archive, index, query, limit=100, **kwargs)


def invoke(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def leaf_words(parsed: str) -> set[str]:
    """The words of a query as run, from its printed form (``body:upload``, …)."""
    found = re.findall(r'\b(?:body|topic):(\w+|"[^"]*")', parsed)
    return {word for text in found for word in text.strip('"').split()}


# -- a word with a colon is text --------------------------------------------------------------


@pytest.mark.parametrize(
    "query,words",
    [
        ("Re: upload", {"re", "upload"}),
        ("RE: upload", {"re", "upload"}),
        ("Closes: #123", {"closes", "123"}),
        ("Closes: #1024670", {"closes", "1024670"}),
        ("note: foo", {"note", "foo"}),
        ("Fwd: Re: budget", {"fwd", "re", "budget"}),
        ("from: lea", {"from", "lea"}),  # a field's name followed by a space is a word
        ("budget topic:", {"budget", "topic"}),  # … and so at the end
        ("(note: latency)", {"note", "latency"}),
        ("meeting at 10:30", {"meeting", "at", "10", "30"}),
        ("https://contoso.sharepoint.com/doc", {"https", "contoso", "sharepoint", "com", "doc"}),
    ],
)
def test_a_colon_after_a_word_and_a_space_is_text(sample, query, words):
    results = find(sample, query)
    assert leaf_words(results.parsed) == words, results.parsed


@pytest.mark.parametrize("query", ["Incident: latency", "checkout: latency", "Latency: p95"])
def test_text_with_colons_finds_its_words(sample, query):
    assert {h.topic for h in find(sample, query).hits} == {LATENCY_TOPIC}


@pytest.mark.parametrize(
    "query,field",
    [
        ("from:lea", "from"),
        ("From:Lea", "from"),  # field names in any case
        ("SUBJECT:newsletter", "topic"),
        ("file:logo", "filename"),
        ("categories:red", "category"),
        ('to:"marketing"', "to"),
        ("-from:lea budget", "from"),
    ],
)
def test_known_fields_are_fields(sample, query, field):
    assert f"{field}:" in find(sample, query).parsed


# -- an unknown field is an error naming the fields -------------------------------------------


@pytest.mark.parametrize(
    "query,name",
    [
        ("cc:daniel", "cc"),
        ("in:inbox budget", "in"),
        ("budget -cc:daniel", "cc"),
        ("(bcc:someone OR budget)", "bcc"),
        ('subjet:"budget plan"', "subjet"),
        ("Re:upload", "Re"),
    ],
)
def test_an_unknown_field_is_a_one_line_error_listing_the_fields(sample, query, name):
    with pytest.raises(QueryError) as info:
        find(sample, query)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"no field {name}: in search; the fields are ")
    for field in search.FIELDS:
        assert f"{field}:" in message
    assert "subject:" in message  # the aliases too


def test_the_field_list_is_the_one_the_docs_show():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert search.field_list() in readme


def test_cli_unknown_field_exits_2_with_one_line(sample):
    db, _ = sample
    result = run_cli("search", "cc:daniel", db=db)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1 and stderr.startswith("Error: no field cc: in search")


# -- an ambiguous group ------------------------------------------------------------------------


def test_an_ambiguous_group_prefix_is_an_error_listing_the_candidates(sample):
    with pytest.raises(QueryError) as info:
        find(sample, "group:e budget")  # Engineering and Équipe Paris
    lines = str(info.value).split("\n")
    assert "fits 2 archived groups" in lines[0]
    assert [("Engineering" in line, "Équipe Paris" in line) for line in lines[1:]] == [
        (True, False), (False, True)
    ]  # fmt: skip
    assert info.value.multiline


def test_cli_ambiguous_group_lists_candidates_escaped(sample):
    db, _ = sample
    result = invoke(db, "search", "group:e budget")
    assert result.exit_code == 2
    assert "fits 2 archived groups" in result.stderr and ENGINEERING in result.stderr
    assert "Traceback" not in result.stderr


# -- nothing found: did you mean ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query,suggestion",
    [
        ("latncy", "latency"),
        ("budgte", "budget"),
        ("latncy checkout", "latency checkout"),
        ("Latencyy", "latency"),
        ("checkuot latency", "checkout latency"),
    ],
)
def test_nothing_found_suggests_words_from_the_index(sample, query, suggestion):
    for results in (find(sample, query), threads(sample, query)):
        assert results.total == 0 and results.suggestion == suggestion
    assert find(sample, suggestion).total > 0


@pytest.mark.parametrize("query", ["latency", "zzzzqqqq", "#99999999", "from:nobodyhere"])
def test_no_suggestion_when_found_or_nothing_near(sample, query):
    assert find(sample, query).suggestion is None


def test_cli_prints_the_suggestion(sample):
    db, _ = sample
    result = invoke(db, "search", "latncy")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["No posts match.", "Did you mean: latency"]
    assert json.loads(result.stdout) == {
        "value": [], "total": 0, "posts": 0, "suggestion": "latency"
    }  # fmt: skip


# -- a match only in an attachment ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query,name,word",
    [
        ("quarterly", "Budget Q1 2025 – Marketing.pdf", "Quarterly"),  # a PDF's text
        ("impermeable", "inventaire-rivoli-2025-03.csv", "imperméable"),  # a CSV's
    ],
)
def test_a_match_only_in_an_attachment_says_so(sample, query, name, word):
    for hit in (find(sample, query).hits[0], threads(sample, query).threads[0].hit):
        assert hit.in_attachment == name
        assert hit.snippet_text.startswith(f"In attachment {name}: ")
        assert f"**{word}**" in hit.snippet_text and f"<mark>{word}</mark>" in hit.snippet


def test_a_match_in_the_body_names_no_attachment(sample):
    hit = find(sample, "latency").hits[0]
    assert hit.in_attachment is None and not hit.snippet_text.startswith("In attachment")


# -- hostile queries: parsed or one line of error, never a traceback --------------------------


@pytest.mark.parametrize("text", hostile.ALL, ids=range(len(hostile.ALL)))
def test_hostile_queries_run_or_fail_in_one_line(sample, text):
    for run in (find, threads):
        try:
            run(sample, text)
        except QueryError as ex:
            assert ex.multiline or "\n" not in str(ex)


class _NoGroups:
    def __call__(self, value: str) -> frozenset[str]:
        return frozenset([value])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(list(' :"()-+*?~^/#ABCabc019éß中\t\n') + ["AND", "OR", "NOT"]),
            st.sampled_from([f"{f}:" for f in search.FIELDS] + ["cc:", "Re: ", "https://"]),
            st.text(max_size=3),
        ),
        max_size=30,
    ).map("".join)
)
def test_any_text_parses_or_is_one_line_of_error(text):
    try:
        parse_query(text, _NoGroups())  # type: ignore[arg-type]
    except QueryError as ex:
        assert "\n" not in str(ex) or ex.multiline


def test_parse_uses_the_resolver_only_for_group(sample):
    db, _ = sample
    with Archive(db, readonly=True) as archive:
        parsed = parse_query("group:engineering budget", _Resolver(archive))
    assert parsed.filter is not None and parsed.filter.groups == frozenset([ENGINEERING])


def test_a_field_heavy_query_is_still_quick(sample):
    started = time.process_time()
    with pytest.raises(QueryError):
        find(sample, " ".join(f"x{i}:y" for i in range(40)))
    assert time.process_time() - started < 0.5


# -- the search page ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(sample):
    from groupsync.datasette_plugin.server import make_datasette

    db, _index = sample
    yield make_datasette(db, immutable=True)
    search.close_indexes()


async def _search_page(ds, q: str) -> tuple[int, Any]:
    from urllib.parse import urlencode

    from bs4 import BeautifulSoup

    response = await ds.client.get("/-/groupsync/search?" + urlencode({"q": q}))
    return response.status_code, BeautifulSoup(response.text, "html.parser")


@pytest.mark.asyncio
async def test_the_page_shows_an_unknown_field_error(page):
    status, html = await _search_page(page, "cc:<b>daniel</b>")
    assert status == 400
    error = html.select_one(".groupsync-error").get_text()
    assert error.startswith("no field cc: in search; the fields are from:")
    assert html.select_one(".groupsync-error b") is None


@pytest.mark.asyncio
async def test_the_page_suggests_corrected_words(page):
    status, html = await _search_page(page, "latncy")
    assert status == 200 and "No posts match" in html.select_one(".groupsync-count-line").text
    link = html.select_one(".groupsync-suggestion a")
    assert link.get_text() == "latency" and "q=latency" in link["href"]


@pytest.mark.asyncio
async def test_the_page_reads_text_with_colons(page):
    status, html = await _search_page(page, "Incident: latency")
    assert status == 200
    assert [a.get_text() for a in html.select("a.groupsync-hit-topic")] == [LATENCY_TOPIC]
    assert "6 matching posts" in html.select_one(".groupsync-hit-meta").get_text()
