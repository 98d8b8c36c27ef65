"""Untrusted mail HTML, made safe to read: plain text for the index and for snippets.

Mail bodies come from anyone who can send to a group. Text extraction runs on the
standard library's HTML parser (a real tokenizer, tolerant of broken markup): the text of
paragraphs, table cells and link labels, never the content of ``script``, ``style`` or
``head``, and no tags.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["to_text"]

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
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")
_LINES = re.compile(r" *\n[ \n]*")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _CELL:
            self.parts.append(" \t ")
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f" {alt} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK and tag not in _CELL:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def to_text(html: str | None, content_type: str = "html") -> str:
    """A mail body as plain text: one line per block, cells separated, whitespace folded.

    ``content_type`` is Graph's ``itemBody.contentType``; ``text`` bodies only get their
    whitespace tidied.
    """
    if not html:
        return ""
    if content_type != "html":
        text = html
    else:
        parser = _TextParser()
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    text = _SPACES.sub(" ", text.replace("\t", " "))
    return _LINES.sub("\n", text).strip()
