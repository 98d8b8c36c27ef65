"""Untrusted mail HTML, made safe to read: plain text for the index and for snippets, and
sanitised HTML for display.

Mail bodies come from anyone who can send to a group. Text extraction runs on a real
HTML5 parser (lexbor, through selectolax): the text of paragraphs, table cells, link labels
and image alt text, never the content of ``script``, ``style`` or ``head``, and no tags.

Display goes through ``sanitise``: nh3 (the Ammonia sanitiser) keeps an allow-list of
tags, attributes, URL schemes and CSS properties; a second pass re-serialises its output
with the standard tokenizer to turn remote images into links and ``cid:`` images into the
archive's own attachment URLs, so nothing in a body loads from outside.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

import nh3
from selectolax.lexbor import LexborHTMLParser

__all__ = [
    "BIDI_CONTROLS",
    "MAX_FOLD_CHARS",
    "QUOTE_SUMMARY",
    "content_ids",
    "neutralise_bidi",
    "quote_marker",
    "same_content_id",
    "sanitise",
    "sanitise_folded",
    "split_quotes",
    "to_text",
]

# Unicode's explicit bidirectional formatting characters (ALM, LRM, RLM, LRE, RLE, PDF, LRO,
# RLO, LRI, RLI, FSI, PDI), as a regex character class. In a file name they reorder what is
# shown: "invoice\u202egpj.exe" displays as "invoiceexe.jpg".
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")

_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "svg", "math"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELL = frozenset({"td", "th"})
_SKIP_LIST = sorted(_SKIP)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scalars(text: str) -> str:
    """``text`` with lone surrogates (which JSON's ``\\ud800`` escapes let into a body, and
    which no UTF-8 parser accepts) replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def neutralise_bidi(text: str, replacement: str | None = None) -> str:
    """``text`` with each bidi control replaced: by ``replacement``, or by default by its
    code point in brackets (``invoice[U+202E]gpj.exe``), so a name reads in the order it is
    stored and shows that someone tried."""
    if replacement is None:
        return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
    return _BIDI.sub(replacement, text)


def _tag_starts(tags: frozenset[str]) -> re.Pattern[str]:
    """Matches the ``<`` of any opening or closing tag named in ``tags``: a break goes
    before each, in one regex pass over the markup instead of a walk over the tree."""
    return re.compile(r"<(?=/?(?:" + "|".join(sorted(tags)) + r")[\s/>])", re.I)


_LINE_BEFORE = _tag_starts(_BLOCK - _CELL)
_CELL_BEFORE = _tag_starts(_CELL)
_IMG = re.compile(r"<img[\s/>]", re.I)


def to_text(html: str | None, content_type: str = "html") -> str:
    """A mail body as plain text: one line per block, cells separated, whitespace folded.

    ``content_type`` is Graph's ``itemBody.contentType``; ``text`` bodies only get their
    whitespace tidied. Parsed by lexbor (through selectolax), an HTML5 parser: a sync turns
    every body into text, so this is written for speed (docs/performance.md).
    The breaks go into the markup before parsing; one inside an attribute, a comment or a
    skipped element changes no text, and whitespace is inert wherever the parser puts it.
    """
    if not html:
        return ""
    html = _scalars(html)
    if content_type != "html":
        return _tidy(html)
    tree = LexborHTMLParser(_CELL_BEFORE.sub(" <", _LINE_BEFORE.sub("\n<", html)))
    tree.strip_tags(_SKIP_LIST)
    root = tree.body or tree.root
    if root is None:
        return ""
    if _IMG.search(html):
        for node in root.css("img"):
            alt = node.attributes.get("alt")
            if alt:
                node.insert_before(f" {alt} ")
    return _tidy(root.text(strip=False))


def _tidy(text: str) -> str:
    """Runs of whitespace folded to one space, blank lines dropped, lines stripped."""
    lines = (" ".join(line.split()) for line in text.replace("\u200b", " ").split("\n"))
    return "\n".join(line for line in lines if line)


# -- sanitising for display ---------------------------------------------------------------

_TAGS = frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite",
        "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em",
        "figcaption", "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
        "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span",
        "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
        "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
    }
)  # fmt: skip
# Removed with everything inside them (the rest of the disallowed tags keep their text).
_DROP_CONTENT = frozenset(
    {"script", "style", "title", "template", "svg", "math", "noscript", "object", "applet"}
)
_CELL_ATTRS = {"align", "valign", "width", "height", "bgcolor", "colspan", "rowspan", "nowrap"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"dir", "lang", "title", "style", "align"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height", "border"},
    "font": {"face", "color", "size"},
    "table": {"border", "cellpadding", "cellspacing", "width", "bgcolor", "summary"},
    "td": _CELL_ATTRS | {"headers"},
    "th": _CELL_ATTRS | {"headers", "scope"},
    "tr": {"valign", "bgcolor"},
    "thead": {"valign"},
    "tbody": {"valign"},
    "tfoot": {"valign"},
    "col": {"span", "width", "valign"},
    "colgroup": {"span", "width", "valign"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "hr": {"width", "size", "noshade"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "time": {"datetime"},
    "details": {"open"},
}
# CSS properties that take no URL and cannot move content over the page.
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
        "text-transform", "line-height", "letter-spacing", "word-spacing", "white-space",
        "vertical-align", "direction", "width", "height", "max-width", "min-width",
        "max-height", "min-height", "margin", "margin-top", "margin-right", "margin-bottom",
        "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
        "padding-left", "border", "border-top", "border-right", "border-bottom",
        "border-left", "border-color", "border-style", "border-width", "border-radius",
        "border-collapse", "border-spacing", "list-style-type", "table-layout", "float",
        "clear",
    }
)  # fmt: skip
# A style attribute containing any of these is dropped whole: URLs, IE expressions,
# imports, escapes that could spell them, and comments that could split them.
_STYLE_DANGER = re.compile(
    r"url\(|expression|@import|javascript:|behavior|-moz-binding|\\|/\*", re.I
)
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_DATA_IMAGE = re.compile(r"^data:image/(?:png|gif|jpeg|webp);base64,[a-z0-9+/=\s]*$", re.I)
_BLOCKED = "groupsync-blocked:"  # an img src that no browser loads, for the second pass
_MISSING = "groupsync-missing:"
_OWN = "groupsync-own:"  # the archive's own URL; nh3 would drop a relative one
_VOID = frozenset({"br", "hr", "img", "col", "wbr"})
_LINK_REL = "noopener noreferrer nofollow"

AttachmentUrl = Callable[[str], str | None]


def _content_id(url: str) -> str:
    """``cid:<logo@contoso>`` → ``logo@contoso`` (RFC 2392 allows %-encoding)."""
    return unquote(url[4:]).strip().strip("<>").strip()


def _url_filter(attachment_url: AttachmentUrl | None) -> Callable[[str, str, str], str | None]:
    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute.startswith("on"):
            return None  # never reached with an allow-list; kept as a guard
        if attribute == "style":
            return None if _STYLE_DANGER.search(value) else value
        if attribute in {"href", "cite"}:
            lowered = value.strip().lower()
            return value if lowered.startswith(_LINK_SCHEMES) else None
        if attribute == "src":
            url = value.strip()
            lowered = url.lower()
            if tag != "img":
                return None
            if lowered.startswith("cid:"):
                found = attachment_url(_content_id(url)) if attachment_url else None
                return _OWN + found if found else _MISSING + _content_id(url)
            if lowered.startswith(("http:", "https:")):
                return _BLOCKED + url
            if _DATA_IMAGE.match(url):
                return url
            return None
        return value

    return keep


class _Rewriter(HTMLParser):
    """Re-serialises sanitised HTML, replacing the images nh3 left marked.

    Everything it writes it escaped itself, from the tokens it read, so the output holds
    exactly the tags and attributes checked here.
    """

    def __init__(self, own_urls: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.own_urls = own_urls

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], close: bool) -> None:
        if tag not in _TAGS:
            return
        allowed = _ATTRIBUTES["*"] | _ATTRIBUTES.get(tag, set())
        kept = {k: v for k, v in attrs if k in allowed and not k.startswith("on")}
        if tag == "img":
            src = kept.get("src") or ""
            if src.startswith(_BLOCKED):
                url = src[len(_BLOCKED) :]
                self.out.append(
                    f'<a class="groupsync-remote-image" href="{_attr(url)}" rel="{_LINK_REL}">'
                    f"remote image blocked: {html_lib.escape(url)}</a>"
                )
                return
            if src.startswith(_MISSING):
                cid = src[len(_MISSING) :]
                self.out.append(
                    '<span class="groupsync-missing-image">'
                    f"[inline image {html_lib.escape(cid)} is not in the archive]</span>"
                )
                return
            if src.startswith(_OWN) and src[len(_OWN) :] in self.own_urls:
                kept["src"] = src[len(_OWN) :]
            elif not _DATA_IMAGE.match(src):
                alt = kept.get("alt")
                if alt:
                    self.out.append(f"[image: {html_lib.escape(alt)}]")
                return
        if tag == "a":
            href = kept.get("href")
            if href is not None and not href.strip().lower().startswith(_LINK_SCHEMES):
                kept.pop("href")
            kept["rel"] = _LINK_REL
        for name in ("cite",):
            if name in kept and not (kept[name] or "").lower().startswith(("http:", "https:")):
                kept.pop(name)
        if "style" in kept and _STYLE_DANGER.search(kept["style"] or ""):
            kept.pop("style")
        text = "".join(f" {k}" if v is None else f' {k}="{_attr(v)}"' for k, v in kept.items())
        self.out.append(f"<{tag}{text}>")
        if close and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, close=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, close=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in _TAGS and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(html_lib.escape(data, quote=False))


def _attr(value: str) -> str:
    return html_lib.escape(value, quote=True)


def sanitise(
    html: str | None,
    *,
    attachment_url: AttachmentUrl | None = None,
    content_type: str = "html",
) -> str:
    """A mail body as HTML that is safe to put in a page: nothing runs, nothing loads.

    No scripts, event handlers, ``javascript:``/``data:`` links, frames, forms, objects or
    CSS that can load or escape; remote images become links ("remote image blocked: URL");
    ``cid:`` images get ``attachment_url(content_id)`` (the archive's copy) or a note when
    it returns ``None``. ``text`` bodies are escaped and keep their line breaks.
    """
    if not html:
        return ""
    html = _scalars(html)
    if content_type != "html":
        return f'<div style="white-space:pre-wrap">{html_lib.escape(html, quote=False)}</div>'
    own: set[str] = set()

    def remember(content_id: str) -> str | None:
        url = attachment_url(content_id) if attachment_url else None
        if url:
            own.add(url)
        return url

    cleaned = nh3.clean(
        html,
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_CONTENT),
        attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
        attribute_filter=_url_filter(remember),
        url_schemes=set(_URL_SCHEMES),
        url_relative="deny",
        filter_style_properties=set(_STYLE_PROPERTIES),
        link_rel=None,
        strip_comments=True,
    )
    rewriter = _Rewriter(frozenset(own))
    rewriter.feed(cleaned)
    rewriter.close()
    return "".join(rewriter.out)


_CSS_CID = re.compile(r"""url\(\s*['"]?\s*(cid:[^'")\s]+)""", re.I)


def content_ids(html: str | None) -> list[str]:
    """Every ``cid:`` reference in an HTML body, in order, each once, as written but
    %-decoded and without ``<>``: in any attribute (``src``, ``background``, ...) or in a
    ``url()`` of an inline style, the scheme in any case. The inline parts it needs."""
    if not html or "cid:" not in html.lower():
        return []
    found: dict[str, str] = {}
    root = LexborHTMLParser(html).root
    if root is None:
        return []
    for node in root.traverse(include_text=False):
        for value in node.attributes.values():
            if not value:
                continue
            stripped = value.strip()
            urls = [stripped] if stripped[:4].lower() == "cid:" else _CSS_CID.findall(value)
            for url in urls:
                cid = _content_id(url)
                if cid:
                    found.setdefault(cid.lower(), cid)
    return list(found.values())


def same_content_id(value: str | None) -> str:
    """A Content-ID as mail clients compare them: without ``<>`` and case, so a body's
    ``cid:Logo@X`` finds the part ``<logo@x>``."""
    return (value or "").strip().strip("<>").strip().lower()


# -- folding quoted earlier text ----------------------------------------------------------

# Reply headers as Outlook writes them ("From: … Sent: …"), in the languages it is most
# often set to; the header opens the quoted history, which runs to the end of the body.
_REPLY_HEADER = re.compile(
    r"^\s*(?:From|Von|De|Da|Van|Från|Fra|Od):\s.{0,300}?"
    r"\b(?:Sent|Date|Gesendet|Envoyé|Inviato|Enviado|Verzonden|Skickat|Sendt|Wysłano):",
    re.S | re.I,
)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(?:Original Message|Forwarded message)\s*-{2,}", re.I)
_ATTRIBUTION = re.compile(r"^\s*(?:On\s.{4,200}\swrote:|Am\s.{4,200}\sschrieb.{0,40}:)\s*$")
_QUOTE_LINE = re.compile(r"^\s*>")
QUOTE_SUMMARY = "Quoted text"
# Folding is a convenience: past these a body is shown whole rather than searched for quotes
# at a cost that grows with its nesting (docs/performance.md).
MAX_FOLD_CHARS = 500_000
_MAX_BLOCKS = 1_000


def _tail_start(body: Any) -> Any:
    """The node where a body's quoted history starts, or None: Outlook's ``divRplyFwdMsg``
    (from the ``<hr>`` before it), Gmail's ``gmail_quote``, or the first block whose text
    is an Outlook reply header or an "Original Message" line."""
    blocks = 0
    for node in body.traverse(include_text=False):
        tag = node.tag
        if tag not in {"div", "p", "hr", "blockquote"}:
            continue
        blocks += 1
        if blocks > _MAX_BLOCKS:
            return None
        attrs = node.attributes
        if attrs.get("id") == "divRplyFwdMsg":
            before = node.prev
            while before is not None and before.is_text_node and not (before.text() or "").strip():
                before = before.prev
            return before if before is not None and before.tag == "hr" else node
        if "gmail_quote" in (attrs.get("class") or "").split():
            return node
        if tag in {"div", "p"}:
            text = node.text(deep=True, strip=False)[:400]
            if _REPLY_HEADER.match(text) or _ORIGINAL.match(text):
                return node
    return None


def _cut_from(node: Any, stop: Any) -> list[Any]:
    """``node`` and everything after it in document order, as whole subtrees, up to
    (not including) ``stop``: its following siblings and its ancestors' following ones."""
    cut = []
    while node is not None and node.mem_id != stop.mem_id:
        sibling = node
        while sibling is not None:
            cut.append(sibling)
            sibling = sibling.next
        node = node.parent
        node = node.next if node is not None and node.mem_id != stop.mem_id else None
    return cut


def split_quotes(html: str, content_type: str = "html") -> tuple[str, list[str]]:
    """A mail body split into what the sender wrote and the earlier text it quotes.

    Returns ``(own, quotes)``: ``own`` holds a marker (``quote_marker(i)``) where quote ``i``
    was, so the two can be sanitised apart and put back together. Quotes are Outlook's
    reply header and everything after it (``divRplyFwdMsg``, "From: … Sent: …",
    "-----Original Message-----"), Gmail's ``gmail_quote``, each outermost ``<blockquote>``,
    and in text bodies each run of ``>`` lines (with the "On … wrote:" line before it).
    Nothing is dropped: own text and quotes together hold the whole body. A body that
    would be all quote is left whole (a forward with no comment reads as it is), and so is
    one longer than ``MAX_FOLD_CHARS``.
    """
    if not html or len(html) > MAX_FOLD_CHARS:
        return html or "", []
    html = _scalars(html)
    if content_type != "html":
        return _split_text_quotes(html)
    tree = LexborHTMLParser(html)
    body = tree.body
    if body is None:
        return html, []
    quotes: list[str] = []
    start = _tail_start(body)
    if start is not None:
        nodes = _cut_from(start, body)
        quotes.append("".join(n.html or "" for n in nodes))
        for n in nodes:
            n.decompose()
        body.insert_child(quote_marker(0))
    seen: dict[int, bool] = {}
    outermost = [n for n in body.css("blockquote") if not _in_blockquote(n, body, seen)]
    for node in outermost:
        quotes.append(node.html or "")
        node.replace_with(quote_marker(len(quotes) - 1))
    if not quotes:
        return html, []
    own = body.inner_html or ""
    if not _QUOTE_MARKERS.sub("", to_text(own)).strip():
        return html, []
    return own, quotes


def _in_blockquote(node: Any, stop: Any, seen: dict[int, bool]) -> bool:
    """Whether ``node`` is inside a ``<blockquote>`` (below ``stop``); ``seen`` remembers
    each ancestor's answer, so a whole body is answered in one pass however deep it nests."""
    chain = []
    parent = node.parent
    found = False
    while parent is not None and parent.mem_id != stop.mem_id:
        key = parent.mem_id
        if key in seen:
            found = seen[key]
            break
        if parent.tag == "blockquote":
            found = True
            break
        chain.append(key)
        parent = parent.parent
    for key in chain:
        seen[key] = found
    return found


def _split_text_quotes(text: str) -> tuple[str, list[str]]:
    lines = text.split("\n")
    own: list[str] = []
    quotes: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _ORIGINAL.match(line) or (
            _REPLY_HEADER.match("\n".join(lines[i : i + 4])) and line.strip()
        ):
            quotes.append("\n".join(lines[i:]))
            own.append(quote_marker(len(quotes) - 1))
            break
        if _QUOTE_LINE.match(line):
            start = i
            while i < len(lines) and (_QUOTE_LINE.match(lines[i]) or (
                not lines[i].strip() and i + 1 < len(lines) and _QUOTE_LINE.match(lines[i + 1])
            )):  # fmt: skip
                i += 1
            block = lines[start:i]
            if own and _ATTRIBUTION.match(own[-1]):
                block.insert(0, own.pop())
            quotes.append("\n".join(block))
            own.append(quote_marker(len(quotes) - 1))
            continue
        own.append(line)
        i += 1
    if not quotes or not _QUOTE_MARKERS.sub("", "\n".join(own)).strip():
        return text, []
    return "\n".join(own), quotes


# A marker no mail contains: private-use characters, which fold_quotes removes from bodies.
_MARK_CHAR = "\ue000"
_QUOTE_MARKERS = re.compile(f"{_MARK_CHAR}groupsync-quote-\\d+{_MARK_CHAR}")


def quote_marker(n: int) -> str:
    return f"{_MARK_CHAR}groupsync-quote-{n}{_MARK_CHAR}"


def _summary(quote: str, content_type: str) -> str:
    first = next((line for line in to_text(quote, content_type).split("\n") if line), "")
    first = first.lstrip("> ").strip()
    if len(first) > 90:
        first = first[:89] + "…"
    label = f"{QUOTE_SUMMARY}: {first}" if first else QUOTE_SUMMARY
    return html_lib.escape(label, quote=False)


def sanitise_folded(
    html: str | None,
    *,
    attachment_url: AttachmentUrl | None = None,
    content_type: str = "html",
) -> str:
    """``sanitise``, with quoted earlier text folded into ``<details>`` (closed; a click on
    its summary opens it, no script needed). The body and each quote are sanitised apart,
    so a quote cannot reach outside its fold; a quote whose place the sanitiser removed is
    shown at the end rather than lost."""
    if not html:
        return ""
    html = html.replace(_MARK_CHAR, "\ufffd")
    own, quotes = split_quotes(html, content_type)
    if not quotes:
        return sanitise(html, attachment_url=attachment_url, content_type=content_type)
    out = sanitise(own, attachment_url=attachment_url, content_type=content_type)
    placed = set()

    def fold(n: int) -> str:
        inner = sanitise(quotes[n], attachment_url=attachment_url, content_type=content_type)
        return (
            f'<details class="groupsync-quote"><summary>{_summary(quotes[n], content_type)}'
            f"</summary>{inner}</details>"
        )

    def put(match: re.Match[str]) -> str:
        n = int(match.group()[len(_MARK_CHAR) + len("groupsync-quote-") : -len(_MARK_CHAR)])
        if n >= len(quotes) or n in placed:
            return ""
        placed.add(n)
        return fold(n)

    out = _QUOTE_MARKERS.sub(put, out)
    return out + "".join(fold(n) for n in range(len(quotes)) if n not in placed)
