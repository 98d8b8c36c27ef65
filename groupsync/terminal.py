"""Text for people's terminals: mail text shown, never obeyed.

A topic, a sender's name or an id in an error message can hold ESC sequences (clear the
screen, retitle the window, write the clipboard, fake a hyperlink), 8-bit C1 controls that
some terminals honour the same way, or bidi overrides that make a name ending ``exe.txt``
read as one ending ``txt.exe``. ``safe_text`` makes each such character visible as a
Python-style escape, ``\\x1b``, ``\\x9b``, ``\\u202e``, so a person sees what the text holds:

* C0 controls (U+0000-U+001F, tab and line breaks included: a table cell or a log line stays
  one line), DEL and the C1 controls (U+007F-U+009F) as ``\\xNN``;
* bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the Unicode line and
  paragraph separators (U+2028, U+2029) and lone surrogates (which no terminal encoding can
  write) as ``\\uNNNN``.

Everything else, accents, CJK, emoji and their joiners included, is left alone. A backslash
is not doubled: the escapes are for reading, not for parsing back. JSON output is not for
people and does not go through here; ``json_text`` only writes DEL, C1 controls and lone
surrogates as ``\\uNNNN`` escapes, which is the same JSON.
"""

from __future__ import annotations

import re

__all__ = ["UNSAFE", "json_text", "safe_text"]

UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)
_JSON_UNSAFE = re.compile("[\x7f-\x9f\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object) -> str:
    """``text`` (anything, as ``str()``) with every control and bidi control character
    written as a visible escape; text without them comes back unchanged."""
    value = text if isinstance(text, str) else str(text)
    if UNSAFE.search(value) is None:
        return value
    return UNSAFE.sub(_visible, value)


def json_text(text: str) -> str:
    """JSON text (``json.dumps`` with ``ensure_ascii=False``) with DEL, C1 controls and lone
    surrogates as ``\\uNNNN`` escapes: the same JSON value, nothing a terminal acts on, and
    always encodable. (``json.dumps`` escapes C0 controls already; bidi characters are left:
    they are text, and legal.)"""
    if _JSON_UNSAFE.search(text) is None:
        return text
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
