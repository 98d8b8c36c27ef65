"""Ids from outside (the command line, a caller) checked before they reach a URL or the
archive, and hostile text made safe to print.

Graph's group ids are GUIDs; conversation, thread and post ids are Exchange REST ids,
base64 (letters, digits, ``-``, ``_``, ``+``, ``/``, ``=``: real message ids do hold ``/``,
as Graph users report, so it is allowed and travels percent-encoded inside its one path
segment). Nothing that is a path step (``.``, ``..``), that base64 never holds and a URL
gives meaning to (``\\``, ``?``, ``#``, a percent-encoding), or that could drive a terminal
(control characters, bidi overrides) is one of them.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidIdError

__all__ = ["MAX_ID_LENGTH", "check_id", "is_guid", "printable"]

MAX_ID_LENGTH = 1024  # Exchange ids run to about 200 characters
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_SEPARATORS = {"\\": "'\\'", "?": "'?'", "#": "'#'"}
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")
# Unicode categories no id holds: controls (C0, DEL, C1), format characters (the bidi
# embeddings, overrides, isolates and marks among them), surrogates, line separators.
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def is_guid(text: str) -> bool:
    """True for a GUID such as a group's id (``8-4-4-4-12`` hex digits)."""
    return _GUID.fullmatch(text) is not None


def check_id(value: str, what: str = "id") -> str:
    """``value`` unchanged if it can be a Graph id; else :class:`InvalidIdError`.

    ``what`` names the id in the message ("thread id"). The message quotes the value
    through :func:`printable`, so it stays one harmless line whatever the value holds.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be text, not {type(value).__name__}")
    reason = _problem(value)
    if reason is not None:
        raise InvalidIdError(f"{what} {printable(value)} is not a valid id: {reason}")
    return value


def _problem(value: str) -> str | None:
    if not value:
        return "it is empty"
    if value in {".", ".."}:
        return "it is a path step"
    if len(value) > MAX_ID_LENGTH:
        return f"it is longer than {MAX_ID_LENGTH} characters"
    for char, shown in _SEPARATORS.items():
        if char in value:
            return f"it contains {shown}"
    if _PERCENT.search(value):
        return "it contains a percent-encoding"
    for char in value:
        if unicodedata.category(char) in _HIDDEN:
            return f"it contains the control or format character U+{ord(char):04X}"
    return None


def printable(text: str, limit: int = 80) -> str:
    """``text`` quoted for one line of a terminal or a page: control and format characters
    (bidi overrides too) as escapes, backslashes doubled, cut after ``limit`` characters of
    output (escapes count at their printed length)."""
    shown: list[str] = []
    used = 0
    for char in text:
        piece = _shown(char)
        if used + len(piece) > limit:
            return f"'{''.join(shown)}…'"
        shown.append(piece)
        used += len(piece)
    return f"'{''.join(shown)}'"


def _shown(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char == " " or char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
