"""What differs between Datasette 0.65 and the 1.0 alphas, in one place.

- Metadata: 0.65 asks plugins through the ``get_metadata`` hook; the 1.0 alphas removed it
  and keep metadata (titles, descriptions, column descriptions) in their internal database,
  written with ``set_*_metadata``, and table configuration (facets, sort, labels, hidden
  tables) in ``datasette.config`` (what ``datasette.yaml`` holds). Canned queries became
  stored queries (``add_query``). The plugin gives the same ``instance_metadata`` to both,
  and what the operator configured wins in both.
- Permissions: ``ensure_permissions`` (0.65) became ``allowed`` with resources (1.0).
- The Jinja environment: ``datasette.jinja_env`` (0.65) became private (1.0); the
  ``prepare_jinja2_environment`` hook, which both have, hands it over.
"""

from __future__ import annotations

import json
from typing import Any

from datasette.utils.asgi import Forbidden
from datasette.version import __version__ as DATASETTE_VERSION

__all__ = [
    "DATASETTE_1",
    "DATASETTE_VERSION",
    "apply_metadata",
    "canned_queries",
    "ensure_can_read",
]

DATASETTE_1 = not DATASETTE_VERSION.startswith("0.")


async def ensure_can_read(datasette: Any, actor: Any, database: str) -> None:
    """``Forbidden`` unless ``actor`` may read the archive's posts in ``database``."""
    if not DATASETTE_1:
        await datasette.ensure_permissions(
            actor,
            [("view-table", (database, "posts")), ("view-database", database), "view-instance"],
        )
        return
    from datasette.resources import TableResource

    resource = TableResource(database=database, table="posts")
    if not await datasette.allowed(action="view-table", resource=resource, actor=actor):
        raise Forbidden("You may not read this archive.")


async def canned_queries(datasette: Any, database: str, actor: Any) -> list[tuple[str, str]]:
    """``(name, title)`` of the canned (1.0: stored) queries ``actor`` may see."""
    if not DATASETTE_1:
        found = await datasette.get_canned_queries(database, actor)
        return [(name, q.get("title") or name) for name, q in found.items()]
    page = await datasette.list_queries(database, actor=actor, limit=100)
    return [(q.name, q.title or q.name) for q in page.queries]


def _fill(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """``theirs`` with every key of ``ours`` it lacks, recursively: the operator wins."""
    merged = dict(theirs)
    for key, value in ours.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _fill(value, merged[key])
    return merged


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


async def apply_metadata(datasette: Any, ours: dict[str, Any]) -> None:
    """Datasette 1.0: the archives' metadata (``ours``, as 0.65's ``get_metadata`` gives
    it), split into metadata, table configuration and stored queries, wherever the operator
    set none of their own. A no-op on 0.65."""
    if not DATASETTE_1 or not ours:
        return
    from datasette.utils import move_table_config

    metadata, config = move_table_config(ours, {})
    datasette.config = _fill(config, datasette.config or {})
    have = await datasette.get_instance_metadata()
    for key, value in metadata.items():
        if key != "databases" and key not in have:
            await datasette.set_instance_metadata(key, _text(value))
    for db, data in metadata.get("databases", {}).items():
        have = await datasette.get_database_metadata(db)
        for key, value in data.items():
            if key not in {"tables", "queries"} and key not in have:
                await datasette.set_database_metadata(db, key, _text(value))
        for table, info in data.get("tables", {}).items():
            have = await datasette.get_resource_metadata(db, table)
            for key, value in info.items():
                if key != "columns" and key not in have:
                    await datasette.set_resource_metadata(db, table, key, _text(value))
            for column, description in info.get("columns", {}).items():
                if "description" not in await datasette.get_column_metadata(db, table, column):
                    await datasette.set_column_metadata(
                        db, table, column, "description", description
                    )
        for name, query in data.get("queries", {}).items():
            if await datasette.get_query(db, name) is None:
                await datasette.add_query(
                    db,
                    name,
                    query["sql"],
                    title=query.get("title"),
                    description=query.get("description"),
                    source="plugin",
                    replace=False,
                )
