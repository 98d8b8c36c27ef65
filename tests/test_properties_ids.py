"""Properties of the id validator and the group resolver on arbitrary text: they answer
with a value or a documented groupsync error (never anything else), in bounded time, and
what they say about a value is printable on one line per item."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupsync.errors import AmbiguousGroupError, GroupRefError, InvalidIdError
from groupsync.groupref import fold_name, resolve_group
from groupsync.ids import check_id, is_guid

from .conftest import NAMED, NAMED_GROUPS

SECONDS = 1.0  # per call, on a busy shared machine; the real cost is well under 10 ms
PROPERTY = settings(
    max_examples=300,
    deadline=None,  # timed below, with room for a loaded machine
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)

# Unicode without surrogates, weighted towards what makes trouble: controls, format
# characters (bidi), combining marks, path characters, fragments of the archive's names.
HOSTILE_CHARS = st.sampled_from(
    list("/\\?#%.:@-_ +=") + ["\x00", "\x1b", "\x7f", "\x85", "\u202e", "\u2066", "\u0301",
                              "\u200b", "\ufeff", "\u2028", "ß", "İ", "ﬁ", "Ｅ"]
)  # fmt: skip
CHARS = st.one_of(st.characters(exclude_categories=("Cs",)), HOSTILE_CHARS)
NAME_PARTS = st.sampled_from(
    [part for _, name, mail, nick, _ in NAMED_GROUPS for part in (name, mail, nick)]
    + list(NAMED.values())
)
TEXT = st.one_of(
    st.text(CHARS, max_size=60),
    st.builds(lambda part, cut, tail: part[:cut] + tail, NAME_PARTS, st.integers(0, 40),
              st.text(CHARS, max_size=3)),
    st.builds(lambda part: part.upper(), NAME_PARTS),
    st.builds(lambda chunk, times: chunk * times, st.text(CHARS, min_size=1, max_size=8),
              st.integers(1, 20_000)),
    st.uuids().map(str),
)  # fmt: skip


def timed(call, *args):
    started = time.perf_counter()
    try:
        return call(*args)
    finally:
        assert time.perf_counter() - started < SECONDS


@PROPERTY
@given(TEXT)
def test_check_id_accepts_unchanged_or_refuses_in_one_line(text):
    try:
        accepted = timed(check_id, text, "thread id")
    except InvalidIdError as ex:
        message = str(ex)
        assert message.isprintable() and len(message) < 300, message
        return
    assert accepted is text
    # what GraphClient does with it: one path segment, on Graph's host, whatever it holds
    url = httpx.URL("https://graph.test/v1.0/").join(f"groups/{quote(text, safe='')}/threads")
    assert url.host == "graph.test"
    assert url.raw_path.decode().split("/")[1:] == ["v1.0", "groups", quote(text, safe=""),
                                                     "threads"]  # fmt: skip


@PROPERTY
@given(TEXT)
def test_resolve_group_answers_an_id_or_a_documented_error(named_groups, text):
    try:
        found = timed(resolve_group, named_groups, text)
    except AmbiguousGroupError as ex:
        wanted = fold_name(text)
        folded = {g: _folded(g) for g in ex.candidates}
        assert len(ex.candidates) >= 2
        assert all(any(f.startswith(wanted) for f in folded[g]) for g in ex.candidates)
        assert all(line.isprintable() for line in str(ex).split("\n"))
        return
    except GroupRefError as ex:
        assert str(ex).isprintable() and len(str(ex)) < 300
        return
    assert isinstance(found, str)
    if found in NAMED.values():
        wanted = fold_name(text)
        assert wanted and any(f.startswith(wanted) for f in _folded(found))
    else:
        assert is_guid(found) and found == text.strip().lower()


@PROPERTY
@given(TEXT)
def test_without_an_archive_only_a_guid_resolves(text):
    try:
        found = timed(resolve_group, None, text)
    except GroupRefError as ex:
        assert not isinstance(ex, AmbiguousGroupError) and str(ex).isprintable()
        assert not is_guid(text.strip())
        return
    assert found == text.strip().lower() and is_guid(found)


def _folded(group_id: str) -> list[str]:
    for key, name, mail, nick, _ in NAMED_GROUPS:
        if NAMED[key] == group_id:
            return [fold_name(v) for v in (group_id, name, mail, nick)]
    raise AssertionError(group_id)
