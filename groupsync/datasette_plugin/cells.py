"""How the archive's cells look in Datasette's table, row and query pages.

Bodies show sanitised in a bounded box, JSON shows readable, every thread or post links to
the thread view, foreign keys show their label, and Exchange ids (about 150 characters)
show shortened, whole in the link and the ``title`` (and in JSON, which this never
touches). ``render_cell`` in Datasette 0.65 has no request, so links are built from the row.
"""

from __future__ import annotations

import json
from typing import Any

from datasette.utils import tilde_encode
from markupsafe import Markup, escape

from ..archive.queries import plugin as queries
from ..html import neutralise_bidi, sanitise
from .archives import attachment_url, thread_url

__all__ = ["FOREIGN_KEYS", "render", "short_id"]

_SHA256_COLUMNS = {("attachments", "sha256"), ("blobs", "sha256")}
# The archive's foreign keys by column name: the table each points to.
FOREIGN_KEYS = {
    "group_id": "groups",
    "conversation_id": "conversations",
    "thread_id": "threads",
    "post_id": "posts",
    "in_reply_to_id": "posts",
    "from_address": "people",
    "sender_address": "people",
}
_ID_COLUMNS = frozenset({"id", "changeKey", *FOREIGN_KEYS} - {"from_address", "sender_address"})
SHORT_ID = 24


def short_id(value: str) -> str:
    """An Exchange id as a person can scan it: its start and its end, which differ
    between items (the middle is the mailbox's, the same for every item in it)."""
    return value if len(value) <= SHORT_ID else f"{value[:4]}…{value[-12:]}"


def _id_text(value: Any) -> Markup:
    """An id for display: shortened, whole in its ``title``."""
    text = str(value)
    if len(text) <= SHORT_ID:
        return Markup(escape(text))
    return Markup(
        f'<span class="groupsync-id" title="{escape(text)}">{escape(short_id(text))}</span>'
    )


def _raw(value: Any) -> Any:
    """An expanded foreign key arrives as ``{"value": ..., "label": ...}``."""
    return value["value"] if isinstance(value, dict) and "value" in value else value


def _get(row: Any, key: str) -> Any:
    try:
        return _raw(row[key])
    except (IndexError, KeyError):
        return None


def _keys(row: Any) -> set[str]:
    try:
        return set(row.keys())
    except AttributeError:
        return set()


def _recipient(item: Any) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("emailAddress"), dict):
        return None
    email = item["emailAddress"]
    name, address = email.get("name"), email.get("address")
    if name and address:
        return f"{name} <{address}>"
    return name or address


def readable_json(value: str) -> Markup | None:
    """JSON text as a person reads it: a list of names, or indented JSON."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if isinstance(data, list):
        if not data:
            return Markup('<span class="groupsync-empty">(none)</span>')
        if all(isinstance(v, str | int | float) for v in data):
            return Markup(escape(", ".join(str(v) for v in data)))
        people = [_recipient(v) for v in data]
        if all(people):
            return Markup(escape(", ".join(p for p in people if p)))
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return Markup(f'<pre class="groupsync-json">{escape(text)}</pre>')


def _link(href: str, text: Any, css: str = "", title: str | None = None) -> Markup:
    cls = f' class="{css}"' if css else ""
    tip = f' title="{escape(title)}"' if title else ""
    return Markup(f'<a href="{escape(href)}"{cls}{tip}>{escape(text)}</a>')


def _id_link(href: str, value: str) -> Markup:
    shown = short_id(value)
    return _link(href, shown, title=value if shown != value else None)


async def _post_location(datasette: Any, database: str, post_id: str) -> tuple[str, str] | None:
    db = datasette.get_database(database)
    rows = await db.execute(queries.POST_LOCATION, {"post_id": post_id})
    row = rows.first()
    return (row[0], row[1]) if row else None


async def _body(datasette: Any, database: str, row: Any, value: str) -> Markup:
    post_id = _get(row, "id")
    urls: dict[str, str] = {}
    if "cid:" in value and post_id:
        db = datasette.get_database(database)
        found = await db.execute(queries.POST_CONTENT_IDS, {"post_id": post_id})
        urls = {
            r[0].strip("<>").lower(): attachment_url(datasette, r[1], post_id=post_id)
            for r in found.rows
        }
    content_type = _get(row, "body_contentType") or "html"
    html = sanitise(
        value, attachment_url=lambda cid: urls.get(cid.lower()), content_type=content_type
    )
    return Markup(f'<div class="groupsync-cell-body">{html}</div>')


async def render(
    datasette: Any, row: Any, value: Any, column: str, table: str | None, database: str
) -> Markup | None:
    """The cell's HTML, or ``None`` to leave it to Datasette."""
    raw = _raw(value)
    keys = _keys(row)
    if column == "body_content" and isinstance(raw, str):
        return await _body(datasette, database, row, raw)
    if table == "threads" and column in {"topic", "id"} and raw is not None:
        group_id, thread_id = _get(row, "group_id"), _get(row, "id")
        if group_id and thread_id:
            label = raw if column == "topic" else "read thread"
            link = _link(thread_url(datasette, group_id, thread_id, database=database), label)
            return link if column == "topic" else Markup(f"{_id_text(raw)} · {link}")
    if column == "thread_id" and raw and "group_id" in keys:
        post_id = _get(row, "id") if table == "posts" else _get(row, "post_id")
        href = thread_url(datasette, _get(row, "group_id"), raw, post_id=post_id, database=database)
        label = value.get("label") if isinstance(value, dict) else None
        return _link(href, label, title=raw) if label and label != raw else _id_link(href, raw)
    if column == "id" and table == "posts" and raw and {"group_id", "thread_id"} <= keys:
        href = thread_url(
            datasette, _get(row, "group_id"), _get(row, "thread_id"), post_id=raw,
            database=database,
        )  # fmt: skip
        return Markup(f"{_id_text(raw)} · {_link(href, 'read in thread')}")
    if column == "post_id" and raw and table in {"attachments", "post_versions", "events", None}:
        where = None
        if {"group_id", "thread_id"} <= keys:
            where = (_get(row, "group_id"), _get(row, "thread_id"))
        elif table is not None:
            where = await _post_location(datasette, database, raw)
        if where and where[0] and where[1]:
            href = thread_url(datasette, where[0], where[1], post_id=raw, database=database)
            return _id_link(href, raw)
    if (table, column) in _SHA256_COLUMNS and isinstance(raw, str) and len(raw) == 64:
        post_id = _get(row, "post_id") if table == "attachments" else None
        return _link(attachment_url(datasette, raw, post_id=post_id), raw)
    if table == "blobs" and column == "content" and isinstance(raw, bytes):
        sha256 = _get(row, "sha256")
        if sha256:
            return _link(attachment_url(datasette, sha256), f"download ({len(raw):,} bytes)")
    if table == "attachments" and column == "name" and isinstance(raw, str):
        shown = neutralise_bidi(raw)
        return Markup(escape(shown)) if shown != raw else None
    if column == "body_text" and isinstance(raw, str):
        return Markup(f'<div class="groupsync-cell-text">{escape(raw)}</div>')
    if isinstance(raw, str) and raw[:1] in "[{" and raw[-1:] in "]}":
        return readable_json(raw)
    if column in FOREIGN_KEYS and raw is not None:
        href = datasette.urls.row(database, FOREIGN_KEYS[column], tilde_encode(str(raw)))
        label = value.get("label") if isinstance(value, dict) else None
        if label and label != raw:
            return _link(href, label, title=str(raw))
        return _id_link(href, str(raw)) if len(str(raw)) > SHORT_ID else None
    if column in _ID_COLUMNS and isinstance(raw, str) and len(raw) > SHORT_ID:
        return _id_text(raw)
    return None
