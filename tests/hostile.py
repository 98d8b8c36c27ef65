"""Hostile mail text, in one place: what an attacker (or a broken mail client) can put in a
topic, a name, an address, an attachment's name or type, a body or a group's name.

Plain data, imported by tests (``tests/conftest.py`` writes it into the ``hostile_archive``
fixture). One list per kind; ``ALL`` is every string. To add a case, append it to the list
of its kind (or add a list and name it in ``KINDS``): every test that walks ``ALL`` or a
kind picks it up.
"""

from __future__ import annotations

# Line breaks: CR/LF, lone CR, lone LF, and Unicode's own line and paragraph separators.
LINE_BREAKS = [
    "two\r\nlines",
    "lone\rcarriage return",
    "lone\nline feed",
    "trailing newline\n",
    "\r\n",
    "next line\x85(NEL)",
    "line\u2028separator",
    "paragraph\u2029separator",
]

# Header injection: a line break followed by what would be a new header or a new body.
HEADER_INJECTION = [
    "x\r\nBcc: evil@example.com",
    "x\nBcc: evil@example.com",
    "x\rBcc: evil@example.com",
    "x\r\n\r\n<html>a body of its own</html>",
    "x\r\n Subject: folded continuation",
    "x\r\nContent-Type: text/html",
    "From evil@example.com Mon Jan  1 00:00:00 2024",
]

# C0 controls other than line breaks: NUL, BEL, backspace, tab, vertical tab, form feed, DEL.
C0 = [
    "nul\x00byte",
    "\x00",
    "bell\x07",
    "back\x08\x08\x08space",
    "tab\there",
    "vertical\x0btab and form\x0cfeed",
    "delete\x7f",
]

# Terminal escape sequences: ESC alone, CSI (clear screen, colours, cursor moves), OSC (window
# title, hyperlinks, clipboard), and their 8-bit C1 forms.
ESCAPES = [
    "\x1b]0;pwned\x07",
    "\x1b[2J",
    "\x1b[31mred\x1b[0m",
    "\x1b[1A\x1b[2Kerased line",
    "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\",
    "\x1b]52;c;cHduZWQ=\x07",
    "\x1bP+q\x1b\\",
    "lone \x1b escape",
]

# C1 controls (U+0080-U+009F): CSI (U+009B) and OSC (U+009D) act like ESC [ and ESC ] on
# terminals that honour 8-bit controls.
C1 = [
    "\x9b2J",
    "\x9d0;pwned\x07",
    "\x85",
    "c1 \x80 to \x9f",
]

# Bidi overrides, embeddings, isolates and marks: text that displays in another order than it
# reads ("Trojan Source"), e.g. an .exe shown as .txt.
BIDI = [
    "invoice\u202etxt.exe",
    "\u202dleft-to-right override",
    "\u202aembed\u202c and \u202bembed\u202c",
    "\u2066isolate\u2069 \u2067rtl\u2069 \u2068first\u2069",
    "mark\u200e\u200f\u061c",
]

# Invisible characters: zero-width space, non-joiner, joiner, word joiner, BOM, soft hyphen.
ZERO_WIDTH = [
    "zero\u200bwidth",
    "non\u200cjoiner and\u200djoiner",
    "word\u2060joiner",
    "\ufeffbyte order mark",
    "soft\u00adhyphen",
]

# Names a file system treats specially: dot names, traversal, absolute paths, Windows devices.
PATHS = [
    ".",
    "..",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/passwd",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "\\\\server\\share\\file",
    "CON",
    "con.txt",
    "NUL",
    "COM1",
    "LPT1.doc",
    "aux",
    ".hidden",
    "trailing dot.",
    "trailing space ",
    "a/b/c.txt",
    "",
    " ",
]

# Very long: a 10,000-character name, a long word, long non-ASCII.
LONG = [
    "n" * 10_000,
    ("word " * 2_000).strip(),
    "é" * 5_000,
    "漢" * 3_000 + ".pdf",
    "a" * 300 + ".txt",
]

# Non-ASCII that is perfectly legitimate and must survive: accents, CJK, RTL scripts, emoji
# (with joiners and variation selectors), combining marks.
NON_ASCII = [
    "Résumé – naïve café",
    "会议纪要.docx",
    "見積書（最終版）.xlsx",
    "Привет мир",
    "مرحبا بالعالم",
    "שלום",
    "👨‍👩‍👧 family 🎉",
    "❤️ flag 🇫🇷",
    "e\u0301 combining",
    "Ǆ ligature ﬁ",
]

# Text that looks like encoding syntax: RFC 2047 encoded-words and RFC 2231 continuations,
# which a decoder must not turn into something else.
ENCODED_LOOKALIKES = [
    "=?utf-8?q?=0D=0ABcc:_evil@example.com?=",
    "=?utf-8?b?DQpCY2M6IGV2aWxAZXhhbXBsZS5jb20=?=",
    "=?iso-8859-1?q?caf=E9?=",
    "=?utf-8?q?unterminated",
    "?= =?",
    'name*0="a"; name*1="b"',
    "utf-8''%0D%0ABcc",
]

# Quotes, semicolons, backslashes, angle brackets and commas: what breaks a parameter value
# (RFC 2231) or an address (RFC 5322) when written without quoting.
QUOTING = [
    'quote"in name.txt',
    "semi;colon.txt",
    'x.txt"; filename="evil.exe',
    "back\\slash.txt",
    "<angle@brackets>",
    "Last, First",
    "comment (in) parens",
    "'single quotes'",
    "colon: in name",
    "a@b@c",
    '""',
    ";",
    "\\",
]

# HTML and script: harmless in a header, a file name or a terminal; dangerous where rendered.
MARKUP = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "</title><svg onload=alert(1)>",
    "&lt;escaped&gt; &amp;",
    "javascript:alert(1)",
]

# Lone surrogates: Python strings may hold them (Graph's JSON "\ud800" parses to one), UTF-8
# cannot encode them. Only for code that takes str; an archive cannot store them as text.
SURROGATES = [
    "lone \ud800 high",
    "lone \udfff low",
    "\udcff\udcfe surrogateescape'd bytes",
]

# Bytes that are not UTF-8 (attachment contents, names read from disk), and how such bytes
# look once mis-decoded as Latin-1.
NON_UTF8_BYTES = [
    b"\xff\xfe\x00b\x00a\x00d",
    b"caf\xe9",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\x80\x81\xfe\xff",
]
MOJIBAKE = [raw.decode("latin-1") for raw in NON_UTF8_BYTES]

# Addresses that are not addresses.
ADDRESSES = [
    "evil@example.com\r\nBcc: victim@example.com",
    "not an address",
    "",
    "@",
    "a@",
    "@b",
    "<evil@example.com>",
    '"quoted local"@example.com',
    "ünïcode@exämple.com",
    "a" * 500 + "@example.com",
    "x@example.com, y@example.com",
    "evil@example.com\x1b]0;pwned\x07",
]

# Content types that are not content types.
CONTENT_TYPES = [
    "text/plain\r\nBcc: evil@example.com",
    'text/html; charset="utf-8\r\nX: y"',
    "multipart/mixed; boundary=evil",
    "message/rfc822",
    "../../etc/passwd",
    "not a type",
    "",
    "application/x-\x1b[2J",
    'image/png; name="evil.exe"',
    "TEXT/PLAIN",
    "a" * 1_000 + "/b",
]

KINDS = {
    "line_breaks": LINE_BREAKS,
    "header_injection": HEADER_INJECTION,
    "c0": C0,
    "escapes": ESCAPES,
    "c1": C1,
    "bidi": BIDI,
    "zero_width": ZERO_WIDTH,
    "paths": PATHS,
    "long": LONG,
    "non_ascii": NON_ASCII,
    "encoded_lookalikes": ENCODED_LOOKALIKES,
    "quoting": QUOTING,
    "markup": MARKUP,
    "surrogates": SURROGATES,
    "mojibake": MOJIBAKE,
    "addresses": ADDRESSES,
    "content_types": CONTENT_TYPES,
}

# Every hostile string, each once, in a stable order.
ALL: list[str] = list(dict.fromkeys(s for kind in KINDS.values() for s in kind))

# What UTF-8 text (a SQLite archive, JSON) can hold: everything but lone surrogates.
STORABLE: list[str] = [s for s in ALL if not any("\ud800" <= c <= "\udfff" for c in s)]

# Characters that must never reach a terminal as they are: C0 and C1 controls, DEL, and the
# bidi controls (embeddings, overrides, isolates, marks).
TERMINAL_UNSAFE = frozenset(
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)

# Ids from outside that the CLI and GraphClient refuse before any request (groupsync.ids):
# one of each kind. Graph's own ids may hold '/' and '+', so those are not here.
BAD_IDS = {
    "empty": "",
    "dot": ".",
    "dotdot": "..",
    "backslash": "a\\b",
    "question": "a?b",
    "hash": "a#b",
    "encoded-slash": "a%2Fb",
    "encoded-backslash": "a%5cb",
    "encoded-question": "a%3Fb",
    "encoded-hash": "a%23b",
    "encoded-dots": "%2E%2E",
    "nul": "a\x00b",
    "escape": "a\x1b[2Jb",
    "newline": "a\nb",
    "del": "a\x7fb",
    "c1": "a\x85b",
    "bidi-override": "a\u202eb",
    "bidi-isolate": "a\u2066b",
    "too-long": "A" * 1025,  # groupsync.ids.MAX_ID_LENGTH + 1
}
