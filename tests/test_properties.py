"""Property tests: hostile text of any shape through the query parser, the search and the
HTML sanitiser and text extraction. Never a traceback (only ``QueryError`` for a query),
and never slow: each example has a deadline, generous because the machine is shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from groupsync import search
from groupsync.archive import Archive
from groupsync.html import _ATTRIBUTES, _TAGS, neutralise_bidi, sanitise, to_text
from groupsync.search.query import MAX_QUERY_CHARS, QueryError, _Resolver, parse_query

from .conftest import new_archive

FAST = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# The query language's own pieces, so that examples reach deep into the parser rather than
# stopping at the first character it refuses.
_PIECES = st.sampled_from(
    [
        "budget", "Budget", "résumé", "日本語", "roadmap", "a", "the", " ", " ", "  ", "\t",
        "AND", "OR", "NOT", "ANDNOT", "ANDMAYBE", "(", ")", '"', "-", "+", "*", "?", "~", "~2",
        "~9", "/1", "^2", ":", "from:", "to:", "subject:", "topic:", "group:", "after:",
        "before:", "has:", "filename:", "category:", "nope:", "2024-05-01", "2024-13", "2024",
        "attachment", "marketing", "[", "]", "{", "}", "TO", "\\", "'", "\x00", "\u202e",
        "\ud800", "*a", "a*", "b?d", "\u3000",
    ]
)  # fmt: skip
QUERIES = st.one_of(
    st.lists(_PIECES, max_size=40).map("".join),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60).map(lambda t: t + "*"),
)


@pytest.fixture(scope="module")
def groups(tmp_path_factory) -> Iterator[_Resolver]:
    """What ``_Resolver`` reads: a real archive's ``groups`` table, with two groups."""
    with new_archive(tmp_path_factory.mktemp("groups") / "groups.db") as archive:
        with archive.atomic():
            for gid, name, nickname in [
                ("6f1e0c1a-0000-4000-8000-0000000000a1", "Marketing", "marketing"),
                ("6f1e0c1a-0000-4000-8000-0000000000a2", "Équipe Paris", "paris"),
            ]:
                archive.save_group(
                    {"id": gid, "displayName": name, "mailNickname": nickname,
                     "mail": f"{nickname}@contoso.com", "groupTypes": ["Unified"]},
                    "2025-01-01T00:00:00Z",
                )
        yield _Resolver(archive)


@pytest.fixture(scope="module")
def sample(indexed_sample) -> tuple[Path, Path]:
    """The module's read-only sample archive and index (conftest's ``indexed_sample``)."""
    return indexed_sample


@FAST
@given(QUERIES)
def test_the_parser_accepts_or_refuses_with_one_line(groups, text):
    try:
        parsed = parse_query(text, groups)
    except QueryError as ex:
        assert str(ex) and "\n" not in str(ex)
        return
    assert len(text) <= MAX_QUERY_CHARS
    assert parsed.query is not None or parsed.filter is not None


@settings(FAST, max_examples=100)
@given(QUERIES)
@example("\ud800*")  # bytes that were not UTF-8 on a command line
@example("budg* OR roadm~ -the")
def test_searching_the_sample_archive_never_fails_otherwise(sample, text):
    db, index = sample
    with Archive(db, readonly=True) as archive:
        try:
            results = search.search(archive, index, text, limit=5)
        except QueryError as ex:
            assert str(ex) and "\n" not in str(ex)
            return
    assert results.total >= len(results.hits)


@settings(FAST, max_examples=60)
@given(st.text(min_size=MAX_QUERY_CHARS + 1, max_size=5 * MAX_QUERY_CHARS))
def test_a_query_past_the_limit_is_refused(groups, text):
    with pytest.raises(QueryError, match="characters long"):
        parse_query(text, groups)


# -- HTML ---------------------------------------------------------------------------------

_HTML_PIECES = st.sampled_from(
    [
        "<", ">", "</", "/>", "<p>", "</p>", "<a href='javascript:alert(1)'>", "<a href=x>",
        "<img src=x onerror=alert(1)>", "<img src='cid:logo'>", "<script>", "</script>",
        "<svg onload=x>", "<style>", "<!--", "-->", "<![CDATA[", "]]>", "&", "&amp;", "&#0;",
        "&#x110000;", "&lt;", "<table><tr><td>", "<div style='background:url(x)'>", '"', "'",
        "=", " ", "\n", "text", "é", "\u202e", "\x00", "\ud800", "<iframe srcdoc='<b>'>",
        "<math>", "<template>", "<base href=//x>", "<meta http-equiv=refresh>", "<form>",
    ]
)  # fmt: skip
HTML = st.one_of(
    st.lists(_HTML_PIECES, max_size=60).map("".join),
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")),
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


@FAST
@given(HTML)
def test_sanitise_keeps_only_allowed_tags_and_no_handler(html):
    out = sanitise(html, attachment_url=lambda cid: f"/-/groupsync/attachment/{len(cid)}")
    parser = _Tags()
    parser.feed(out)
    parser.close()
    for tag, attrs in parser.found:
        assert tag in _TAGS, tag
        allowed = _ATTRIBUTES["*"] | _ATTRIBUTES.get(tag, set()) | {"class", "rel"}
        for name, value in attrs:
            assert name in allowed and not name.startswith("on"), (tag, name)
            assert not (value or "").strip().lower().startswith(("javascript:", "vbscript:"))


@FAST
@given(HTML, st.sampled_from(["html", "text"]))
@example("\udc80<p>a lone surrogate, as JSON's \\udc80 lets in</p>", "html")
@example("\ud800", "text")
def test_to_text_and_sanitise_always_answer(html, content_type):
    for out in (to_text(html, content_type), sanitise(html, content_type=content_type)):
        out.encode("utf-8")  # a page or an index can hold it


@FAST
@given(st.text(max_size=200))
def test_neutralised_text_has_no_bidi_control(text):
    for out in (neutralise_bidi(text), neutralise_bidi(text, "_")):
        assert not any(c in out for c in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069")  # fmt: skip
