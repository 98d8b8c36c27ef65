"""Snippets: fragments of a post's text around the words that matched, found with the
index's own tokenizer and folding.
"""

from __future__ import annotations

import re

from .analysis import _TOKEN, _nfc, fold

SNIPPET_FRAGMENTS = 2
SNIPPET_CHARS = 200


def _lead(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


SNIPPET_CONTEXT = 60


def _snippet(text: str, terms: frozenset[str]) -> list[tuple[str, bool]]:
    """Up to two fragments of ``text`` around its first matches, as (text, matched) parts.

    Words are found with the index's own tokenizer and folding, so what is marked is what
    matched. (Whoosh's highlighter makes a token object of every word of every hit: half
    the time of a filtered search went there.)
    """
    if not terms or not text:
        return []
    text = _nfc(text)
    spans = [m.span() for m in _TOKEN.finditer(text) if fold(m.group()) in terms]
    if not spans:
        return []
    parts: list[tuple[str, bool]] = []
    i, last = 0, 0
    for n in range(SNIPPET_FRAGMENTS):
        if i >= len(spans):
            break
        first = spans[i][0]
        start = max(last, _word_start(text, first - SNIPPET_CONTEXT, first))
        limit = start + SNIPPET_CHARS
        if start > last or (n and start == last):
            parts.append((" … " if n else "…", False))
        position = start
        while i < len(spans) and (spans[i][1] <= limit or position == start):
            a, b = spans[i]
            if a > position:
                parts.append((text[position:a], False))
            parts.append((text[a:b], True))
            position = b
            i += 1
        end = _word_end(text, min(len(text), limit, position + SNIPPET_CONTEXT), position)
        if end > position:
            parts.append((text[position:end], False))
        last = end
    if last < len(text):
        parts.append(("…", False))
    return [(_SPACE.sub(" ", t), hit) for t, hit in parts if t]


def _word_start(text: str, at: int, before: int) -> int:
    """``at``, moved forward to the start of a word (but not past ``before``)."""
    if at <= 0:
        return 0
    space = text.find(" ", at, before)
    return space + 1 if space >= 0 else at


def _word_end(text: str, at: int, after: int) -> int:
    """``at``, moved back to the end of a word (but not before ``after``)."""
    if at >= len(text):
        return len(text)
    space = text.rfind(" ", after, at)
    return space if space > after else at


_SPACE = re.compile(r"\s+")
