"""Datasette on one archive, with this plugin: what ``groupsync serve`` runs."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasette.app import Datasette
from datasette.plugins import pm

from .. import search
from ..archive import Archive
from ..archive.queries import plugin as queries
from ..errors import ArchiveError, ConfigError
from ..files import can_write
from .metadata import ARCHIVE_TABLES

__all__ = [
    "DEFAULT_SETTINGS",
    "check_archive",
    "make_datasette",
    "register_plugin",
    "serve",
    "update_search_index",
]

DEFAULT_SETTINGS: dict[str, Any] = {
    # The canned queries aggregate the whole archive; give them room on big archives.
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 1000,
    # Suggesting facets tries every column of a 100,000-row table: seconds per page.
    "suggest_facets": False,
}


def register_plugin() -> None:
    """Make sure Datasette has this plugin, even where its entry point is not installed."""
    module = sys.modules[__package__]
    if not pm.is_registered(module):
        pm.register(module, name="groupsync")


def check_archive(path: str | Path) -> None:
    """An ``ArchiveError`` unless ``path`` is an existing groupsync archive."""
    with Archive(path, readonly=True) as archive:
        try:
            tables = queries.table_names(archive)
        except Exception as ex:  # noqa: BLE001 - sqlite3.DatabaseError on a non-database
            raise ArchiveError(f"{path} is not a SQLite database: {ex}") from None
    if not tables >= ARCHIVE_TABLES:
        raise ArchiveError(f"{path} is not a groupsync archive; run `groupsync sync` first")


def update_search_index(path: str | Path) -> search.IndexReport:
    """Catch the search index up with the archive (it lives beside it, ``<db>.whoosh``).

    The search page itself never writes; this is for ``groupsync serve`` to run first.
    An index whose folder cannot be written (an evidence copy) is left as it is.
    """
    check_archive(path)
    index_path = search.index_path_for(path)
    if not can_write(index_path):
        raise search.IndexWriteError(f"the search index {index_path} is read-only here")
    try:
        with Archive(path, readonly=True) as archive:
            return search.update_index(archive, index_path)
    finally:
        search.close_indexes()


def make_datasette(
    path: str | Path | Sequence[str | Path],
    *,
    immutable: bool = False,
    settings: dict[str, Any] | None = None,
) -> Datasette:
    """A Datasette serving the archive read-only (``immutable``: also never re-read).

    Read-only connections see a sync that runs meanwhile; immutable ones are for an archive
    nothing writes to any more (SQLite then skips locking, and Datasette caches counts).
    Datasette 0.65 has no write API; no canned query here writes. Several paths (the
    shards of a tenant) become several databases, which the plugin's pages cover together.
    """
    register_plugin()
    paths = [str(p) for p in _paths(path)]
    files = {"immutables": paths} if immutable else {"files": paths}
    return Datasette(settings={**DEFAULT_SETTINGS, **(settings or {})}, **files)


def _paths(path: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [path] if isinstance(path, (str, Path)) else list(path)


def serve(
    path: str | Path | Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8001,
    immutable: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted. ``port`` 0 picks a free one; ``on_ready`` gets the URL."""
    import uvicorn

    for one in _paths(path):
        check_archive(one)
    ds = make_datasette(path, immutable=immutable)
    asyncio.run(ds.invoke_startup())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as ex:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {ex.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(ds.app(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{shown}:{bound}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
