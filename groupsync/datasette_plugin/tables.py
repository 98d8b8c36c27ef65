"""Datasette's table pages for the archive's tables, arranged for a person at 1280 px.

Datasette shows a table's columns in schema order, and its metadata cannot reorder them
(only ``?_col=`` can). So for the archive's tables the plugin answers Datasette's per-table
template name (``_table-{database}-{table}.html``, which 0.65 and the 1.0 alphas both look
for first) with a template that puts the columns people read first (date, sender, topic, a
preview) at the left, shortens the primary key links, and then includes Datasette's own
``_table.html``: the markup stays Datasette's. JSON and CSV keep schema order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasette.utils import to_css_class
from jinja2 import BaseLoader, Environment, TemplateNotFound
from markupsafe import Markup, escape

from ..html import neutralise_bidi
from .archives import archive_databases
from .cells import short_id

__all__ = ["FIRST_COLUMNS", "TableTemplates", "arrange"]

# Per table: the columns shown first, in this order, after the primary key; the rest follow
# in schema order.
FIRST_COLUMNS: dict[str, list[str]] = {
    "posts": ["receivedDateTime", "sender_name", "thread_id", "body_text", "hasAttachments",
              "group_id", "deleted_at"],
    "threads": ["lastDeliveredDateTime", "topic", "uniqueSenders", "post_count", "preview",
                "group_id", "deleted_at"],
    "conversations": ["lastDeliveredDateTime", "topic", "uniqueSenders", "preview",
                      "group_id", "deleted_at"],
    "attachments": ["name", "contentType", "size", "post_id", "isInline", "deleted_at"],
    "post_versions": ["post_id", "first_seen_at", "lastModifiedDateTime", "changeKey"],
    "groups": ["displayName", "mail", "visibility", "description", "deleted_at"],
}  # fmt: skip
_TEMPLATE = Path(__file__).with_name("templates") / "groupsync_table.html"


def _shorten_pk(cell: dict[str, Any]) -> dict[str, Any]:
    """Datasette's primary key link with the id shortened (whole in ``title`` and href),
    and bidi controls shown as code points (1.0 puts the row's label in it)."""
    raw = str(cell.get("raw") or "")
    shown = short_id(raw)
    value = str(cell.get("value") or "")
    whole = f">{escape(raw)}</a>"
    if shown != raw and whole in value:
        short = f' title="{escape(raw)}" class="groupsync-id">{escape(shown)}</a>'
        value = value.replace(whole, short, 1)
    return {**cell, "value": Markup(neutralise_bidi(value))}


def arrange(table: str, columns: list[Any], rows: list[Any], request: Any = None) -> Any:
    """``(columns, rows)`` of Datasette's table template, reordered for ``table``.

    A request that chose its columns (``?_col=``) keeps its order. Rows are lists of cell
    dicts (0.65) or ``Row`` objects holding them (1.0 alphas); both are copied, not changed.
    """
    first = FIRST_COLUMNS.get(table)
    if not first or not columns:
        return columns, rows
    chose = request is not None and "_col" in getattr(request, "args", {})
    names = [c["name"] for c in columns]
    order = list(range(len(names)))
    if not chose:
        lead = [0] if columns[0].get("is_pk") or names[0] in {"Link", "rowid"} else []
        picked = [names.index(n) for n in first if n in names and names.index(n) not in lead]
        order = lead + picked + [i for i in order if i not in lead and i not in picked]
    new_columns = [columns[i] for i in order]

    if any(len(list(row)) != len(order) for row in rows):
        return columns, rows  # not the shape this was written for: leave Datasette's

    def cells(row: Any) -> list[dict[str, Any]]:
        found = list(row)
        arranged = [found[i] for i in order]
        if arranged and arranged[0].get("value_type") == "pk":
            arranged[0] = _shorten_pk(arranged[0])
        return arranged

    new_rows = []
    for row in rows:
        if hasattr(row, "cells"):
            twin = copy.copy(row)
            twin.cells = cells(row)
            if isinstance(getattr(row, "row_label", None), str):
                twin.row_label = neutralise_bidi(row.row_label)
            new_rows.append(twin)
        else:
            new_rows.append(cells(row))
    return new_columns, new_rows


class TableTemplates(BaseLoader):
    """Answers ``_table-{database}-{table}.html`` for the archive's tables with the
    plugin's arranging template; every other name is left to Datasette's loaders."""

    def __init__(self, datasette: Any) -> None:
        self.datasette = datasette

    def _names(self) -> set[str]:
        return {
            f"_table-{to_css_class(db)}-{to_css_class(table)}.html"
            for db in archive_databases(self.datasette)
            for table in FIRST_COLUMNS
        }

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template not in self._names():
            raise TemplateNotFound(template)
        return _TEMPLATE.read_text(encoding="utf-8"), str(_TEMPLATE), lambda: True

    def list_templates(self) -> list[str]:
        return []
