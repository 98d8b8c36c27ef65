"""Text printed for people never drives their terminal: ``safe_text`` on its own, and every
``--table`` read, ``search``, error and log line over the hostile archive."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from groupsync import reads
from groupsync.archive import Archive
from groupsync.cli import _log_line, cli
from groupsync.terminal import json_text, safe_text

from . import hostile
from .conftest import MARKETING, read_commands, rows

ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, exclude_categories=()),
        # controls, format characters (bidi, zero-width), separators and lone surrogates,
        # which the line above draws only rarely
        st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp"]),
    ),
    max_size=200,
)


def unsafe_in(data: bytes) -> list[str]:
    """Characters a terminal would act on (line ends aside), in printed bytes."""
    text = data.decode("utf-8")
    return sorted({c for c in text if c in hostile.TERMINAL_UNSAFE and c != "\n"})


@pytest.mark.parametrize("text", hostile.ALL, ids=range(len(hostile.ALL)))
def test_safe_text_shows_every_control_and_bidi_character(text):
    shown = safe_text(text)
    assert not any(c in hostile.TERMINAL_UNSAFE for c in shown)
    shown.encode("utf-8")  # lone surrogates too are shown, not left to crash the printing
    if not any(c in hostile.TERMINAL_UNSAFE or "\ud800" <= c <= "\udfff" for c in text):
        assert shown == text  # accents, CJK, emoji with their joiners: untouched


def test_safe_text_escapes_read_like_python():
    assert safe_text("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert safe_text("\x9b2J\r\n\t\x00") == "\\x9b2J\\x0d\\x0a\\x09\\x00"
    assert safe_text("a\u202etxt.exe \u2066x\u2069") == "a\\u202etxt.exe \\u2066x\\u2069"
    assert safe_text("lone \ud800") == "lone \\ud800"
    assert safe_text(42) == "42"


@settings(max_examples=500, deadline=None)
@given(ANY_TEXT)
def test_safe_text_never_lets_a_control_or_bidi_override_through(text):
    shown = safe_text(text)
    assert not any(c in hostile.TERMINAL_UNSAFE for c in shown)
    assert not any("\ud800" <= c <= "\udfff" for c in shown)
    assert safe_text(shown) == shown


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, st.sampled_from(hostile.ALL)))
def test_json_text_is_the_same_json_without_c1_controls(text):
    printed = json_text(json.dumps({"topic": text}, ensure_ascii=False))
    assert json.loads(printed) == {"topic": text}
    assert not any("\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff" for c in printed)
    assert not any(c < " " for c in printed)


@pytest.fixture(scope="module")
def hostile_ids(hostile_archive) -> dict[str, str]:
    """A conversation, a thread and a post (with attachments) of the hostile archive."""
    with Archive(hostile_archive, readonly=True) as archive:
        conversation = next(iter(reads.iter_conversations(archive, MARKETING)))["id"]
        thread = next(iter(reads.iter_threads(archive, MARKETING)))["id"]
        post = next(iter(reads.iter_posts(archive, MARKETING, thread)))["id"]
    return {"conversation": conversation, "thread": thread, "post": post}


def invoke(db, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args])


def test_every_table_and_search_shows_hostile_text_without_obeying_it(
    hostile_archive, hostile_ids
):
    g, c, t, p = MARKETING, *hostile_ids.values()
    commands = [
        *read_commands(g, c, t, p),
        ["events"],
        ["outbox"],
    ]
    for args in commands:
        result = invoke(hostile_archive, *args, "--table")
        assert result.exit_code == 0, (args, result.output)
        assert unsafe_in(result.stdout_bytes) == [], args
        assert unsafe_in(result.stderr_bytes) == [], args
    shown = invoke(hostile_archive, "threads", g, "--table").stdout
    assert "\\x1b" in shown or "\\u202e" in shown or "\\x0a" in shown  # shown, escaped
    for query in ("pwned", "evil", "example"):
        result = invoke(hostile_archive, "search", query, "--table", "--limit", "100")
        assert result.exit_code == 0, result.output
        assert unsafe_in(result.stdout_bytes) == [] and unsafe_in(result.stderr_bytes) == []
    assert "of" in result.stderr  # "1-N of M posts": the table had rows


def test_json_output_stays_exact(hostile_archive):
    result = invoke(hostile_archive, "threads", MARKETING)
    assert result.exit_code == 0
    assert not any("\x7f" <= c <= "\x9f" for c in result.stdout)
    topics = {t["topic"] for t in json.loads(result.stdout)["value"]}
    stored = {r[0] for r in rows(hostile_archive, "SELECT topic FROM threads WHERE group_id = ?",
                                 (MARKETING,))}  # fmt: skip
    assert topics == stored
    assert any(c in hostile.TERMINAL_UNSAFE for topic in stored for c in topic)


@pytest.mark.parametrize(
    "args",
    [
        ["thread", MARKETING, "\x1b]0;pwned\x07\u202e"],
        ["posts", "\x9b2J", "t"],
        ["export", "--format", "\x1b[2Jmbox", "--out", "x"],
        ["--no-such-option\x1b[2J", "groups"],
        ["search", "group:\x1b[31mred", "--table"],
    ],
)
def test_error_lines_show_what_they_quote_without_obeying_it(hostile_archive, args):
    result = invoke(hostile_archive, *args)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert unsafe_in(result.stderr_bytes) == [] and unsafe_in(result.stdout_bytes) == []


def test_log_lines_for_people_show_controls():
    line = _log_line({"at": "t", "event": "sync-failed", "error": "x\x1b[2J\r\ny \u202e"})
    assert line == "t info sync-failed error=x\\x1b[2J\\x0d\\x0ay \\u202e"
