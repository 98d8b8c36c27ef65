"""Mail text made into header text that any name, address or topic survives.

Topics, names, addresses and attachment names come from mail, so from anyone. Python's
``email`` package refuses a header value with a line break (one hostile attachment name
aborted a whole export) and writes ASCII text as it is, so a topic that merely looks like an
RFC 2047 encoded word (``=?utf-8?q?=0D=0ABcc:...?=``) decodes into something else. Here:

* ``header_text`` neutralises what no header may carry: each line break (CR LF, CR, LF and
  what ``str.splitlines`` splits on) becomes a space, tab a space, other ASCII controls their
  visible Unicode "control picture" (NUL -> U+2400, ESC -> U+241B, DEL -> U+2421), and a
  lone surrogate U+FFFD. Everything else, C1 controls and bidi marks included, is kept: it
  is the mail's text, and it is encoded below, so it never reaches the file raw;
* ``encoded_words`` writes text as RFC 2047 encoded words (UTF-8, base64), each at most 75
  characters, unless it is plain ASCII words that cannot be mistaken for encoding;
* ``filename_params`` writes a file name as an RFC 2231 parameter (``filename*=utf-8''...``,
  with ``*0*``, ``*1*`` continuations when long) unless it is a short plain name.

The last three return ASCII pieces, each at most 78 characters (a mailbox, ``<address>``, at
most 256); the caller joins them with a line end and a space (folding), so no raw CR or LF
from mail ever reaches a header and no line is longer than RFC 5322's 998.
"""

from __future__ import annotations

import base64
import functools
import re
from urllib.parse import quote

__all__ = [
    "address_pieces",
    "encoded_words",
    "filename_params",
    "header_text",
]

# What str.splitlines() splits on, which is what email.policy refuses in a header value.
_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NEUTRALISE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]|\u2028|\u2029|\x85")
_PLAIN_WORDS = re.compile(r"[!-~]{1,60}(?: [!-~]{1,60})*")
_ATOMS = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]{1,60}(?: [\w!#$%&'*+/=?^`{|}~-]{1,60})*", re.ASCII)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._()+,-]{0,59}")
_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*"
)
# An encoded word is at most 75 characters: "=?utf-8?b?" + base64 + "?=" leaves 63, so 45
# bytes; 39 keeps "Subject: " and the first word under 78.
_WORD_BYTES = 39
_PARAM_CHARS = 56  # percent-encoded characters per RFC 2231 continuation line
_ATTR_SAFE = "!#$&+-.^_`|~"  # RFC 2231 attribute-char besides letters and digits


def _neutral(match: re.Match[str]) -> str:
    char = match.group()
    if char in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\t":
        return " "
    if char == "\x7f":
        return "\u2421"
    if char < " ":
        return chr(0x2400 + ord(char))
    return "\ufffd"


def header_text(text: str | None) -> str:
    """``text`` as a header may carry it (see the module): no line break, no ASCII control,
    no lone surrogate. Text without them comes back as it is."""
    if not text:
        return ""
    if _NEUTRALISE.search(text) is None:
        return text
    return _NEUTRALISE.sub(_neutral, _BREAKS.sub(" ", text))


def _chunks(text: str, limit: int) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        n = len(char.encode("utf-8"))
        if size + n > limit and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += n
    if current:
        pieces.append("".join(current))
    return pieces


@functools.lru_cache(maxsize=8192)
def encoded_words(text: str | None, *, phrase: bool = False) -> tuple[str, ...]:
    """Header text (``Subject``, or a display name with ``phrase``) as pieces to fold.

    Plain ASCII words that hold no ``=?`` go as they are (in a ``phrase``, only atoms, so
    nothing needs quoting); anything else goes whole as encoded words, which decoders join
    back without the folding space, so spaces, accents, emoji and controls all survive.
    """
    value = header_text(text)
    if not value:
        return ("",)
    plain = _ATOMS if phrase else _PLAIN_WORDS
    if "=?" not in value and plain.fullmatch(value):
        return _fold_words(value.split(" "))
    return tuple(
        f"=?utf-8?b?{base64.b64encode(piece.encode('utf-8')).decode('ascii')}?="
        for piece in _chunks(value, _WORD_BYTES)
    )


def _fold_words(words: list[str], width: int = 68) -> tuple[str, ...]:
    lines, current = [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return tuple(lines)


@functools.lru_cache(maxsize=8192)
def address_pieces(name: str | None, address: str | None) -> tuple[str, ...]:
    """One mailbox, ``name <address>``, as pieces to fold.

    An address that is not a plain ASCII ``local@domain`` (a line break, a second address,
    a non-ASCII one that would need SMTPUTF8) is not written as an address: it joins the
    display name, and the mailbox is ``unknown@groupsync.invalid``, so nothing is lost and
    nothing is sent anywhere.
    """
    name_text, address_text = header_text(name).strip(), header_text(address).strip()
    if address_text and not (len(address_text) <= 254 and _ADDR_SPEC.fullmatch(address_text)):
        name_text = f"{name_text} ({address_text})" if name_text else address_text
        address_text = ""
    mailbox = f"<{address_text or 'unknown@groupsync.invalid'}>"
    if not name_text:
        return (mailbox[1:-1],) if address_text else (mailbox,)
    return (*encoded_words(name_text, phrase=True), mailbox)


@functools.lru_cache(maxsize=8192)
def filename_params(name: str | None) -> tuple[str, ...]:
    """``filename=...`` for Content-Disposition, as pieces to fold (each but the last ends
    with ``;``). A short plain name is quoted as it is; any other is RFC 2231 UTF-8,
    percent-encoded, continued over lines when long."""
    value = header_text(name)
    if _PLAIN_NAME.fullmatch(value) and "=?" not in value:
        return (f'filename="{value}"',)
    encoded = [quote(char, safe=_ATTR_SAFE, encoding="utf-8") for char in value]
    segments, current = [], ""
    for piece in encoded:
        if current and len(current) + len(piece) > _PARAM_CHARS:
            segments.append(current)
            current = ""
        current += piece
    segments.append(current)
    if len(segments) == 1:
        return (f"filename*=utf-8''{segments[0]}",)
    pieces = [f"filename*0*=utf-8''{segments[0]};"]
    pieces += [f"filename*{n}*={segment};" for n, segment in enumerate(segments[1:], 1)]
    pieces[-1] = pieces[-1][:-1]
    return tuple(pieces)
