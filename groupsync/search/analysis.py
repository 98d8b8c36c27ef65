"""Text analysis: the one tokenizer of every text field.

Words of letters and digits, single characters for CJK, single emoji and symbols; each
token lower-cased and accent-folded (:func:`fold`). :func:`terms_of` is what the index
holds and what the highlighter marks; :class:`MailTokenizer` is Whoosh's view of it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from whoosh.analysis import Token, Tokenizer

# -- text analysis ------------------------------------------------------------------------
#
# One tokenizer for every text field: words of letters and digits, single characters for
# Han, kana and Hangul (so a CJK word becomes a phrase of characters and is found without a
# dictionary), single emoji and symbols. Each token is lower-cased and accent-folded, so
# `resume` finds `résumé`. The folding of a token is cached: mail has a small vocabulary.

_CJK = (
    "\u2e80-\u2fdf\u3005\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
_SYMBOLS = "\u2190-\u21ff\u2300-\u23ff\u25a0-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
_TOKEN = re.compile(f"[{_CJK}]|[{_SYMBOLS}]|[^\\W_{_CJK}]+")
_EXTRA_FOLD = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
     "ı": "i", "ħ": "h", "ŧ": "t", "ŋ": "n", "ĸ": "k"}
)  # fmt: skip
_FOLDED: dict[str, str] = {}


def fold(token: str) -> str:
    """A token as indexed: lower case, no accents, compatibility forms unified."""
    folded = _FOLDED.get(token)
    if folded is None:
        folded = token.lower()
        if not folded.isascii():
            decomposed = unicodedata.normalize("NFKD", folded)
            folded = "".join(c for c in decomposed if not unicodedata.combining(c))
            folded = unicodedata.normalize("NFC", folded.translate(_EXTRA_FOLD))
        if len(_FOLDED) > 500_000:
            _FOLDED.clear()
        _FOLDED[token] = folded
    return folded


def _nfc(text: str) -> str:
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def terms_of(text: str) -> list[str]:
    """The index terms of a text, in order (what every text field indexes)."""
    return [fold(t) for t in _TOKEN.findall(_nfc(text))]


class MailTokenizer(Tokenizer):
    """Whoosh's view of :func:`terms_of`, with positions and character offsets."""

    # Whoosh pickles this class into the index's table of contents: it keeps the name it
    # had before search.py became a package, so indexes open with either layout.
    __module__ = "groupsync.search"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __call__(
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        **kwargs: Any,
    ) -> Iterator[Token]:
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        value = _nfc(value)
        if not tokenize:
            token.original = value
            token.text = "".join(fold(t) for t in re.split(r"(\W+)", value) if t)
            token.boost = 1.0
            token.stopped = False
            if positions:
                token.pos = start_pos
            if chars:
                token.startchar = start_char
                token.endchar = start_char + len(value)
            yield token
            return
        pos = start_pos
        for match in _TOKEN.finditer(value):
            raw = match.group()
            text = fold(raw)
            if not text:
                continue
            token.text = text
            token.boost = 1.0
            token.stopped = False
            if keeporiginal:
                token.original = raw
            if positions:
                token.pos = pos
                pos += 1
            if chars:
                token.startchar = start_char + match.start()
                token.endchar = start_char + match.end()
            yield token
