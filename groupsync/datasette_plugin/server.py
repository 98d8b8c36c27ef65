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

from .. import access, search
from ..archive import Archive
from ..archive.queries import plugin as queries
from ..errors import ArchiveError, ConfigError
from ..files import can_write
from .accounts import ACCESS_DATABASE, login_metadata, sql_config
from .compat import DATASETTE_1
from .metadata import ARCHIVE_TABLES

__all__ = [
    "DEFAULT_SETTINGS",
    "check_archive",
    "make_datasette",
    "register_plugin",
    "serve",
    "update_search_index",
]

PASSWORDS_PLUGIN = "auth_passwords"  # datasette-auth-passwords' entry point
DEFAULT_SETTINGS: dict[str, Any] = {
    # The canned queries aggregate the whole archive; give them room on big archives.
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 1000,
    # Suggesting facets tries every column of a 100,000-row table: seconds per page.
    "suggest_facets": False,
}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    return host in {"localhost", "::1"} or host.startswith("127.")


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
    accounts: dict[str, dict[str, str]] | None = None,
) -> Datasette:
    """A Datasette serving the archive read-only (``immutable``: also never re-read).

    Read-only connections see a sync that runs meanwhile; immutable ones are for an archive
    nothing writes to any more (SQLite then skips locking, and Datasette caches counts).
    Datasette 0.65 has no write API; no canned query here writes. Several paths (the
    shards of a tenant) become several databases, which the plugin's pages cover together.
    With ``accounts`` (``accounts.load_accounts``) nothing is shown before a login at
    ``/-/login``, and each archive's access log is served as a database (``access_log``,
    or ``access_log_<archive>`` for several), to auditors only.
    """
    register_plugin()
    paths = [str(p) for p in _paths(path)]
    files = {"immutables": paths} if immutable else {"files": paths}
    options: dict[str, Any] = dict(files)
    logs = _access_logs(paths)
    if accounts:
        metadata = login_metadata(accounts, [Path(p).stem for p in paths], logs)
        options["metadata"] = metadata
        if DATASETTE_1:  # (not the constructor's signature: tests may wrap the class)
            # The 1.0 alphas move "allow" and "plugins" from metadata into their
            # configuration, but not "allow_sql": without this, readers could run SQL.
            options["config"] = sql_config(metadata)
    ds = Datasette(settings={**DEFAULT_SETTINGS, **(settings or {})}, **options)
    if accounts and not access.logging_off():
        from datasette.database import Database

        for name, log_path in logs.items():
            if Path(log_path).exists():
                ds.add_database(Database(ds, path=log_path, is_mutable=True), name=name)
    return ds


def _access_logs(paths: list[str]) -> dict[str, str]:
    """The access-log database of each archive served, by the name Datasette shows."""
    if len(paths) == 1:
        return {ACCESS_DATABASE: str(access.access_log_path(paths[0]))}
    return {f"{ACCESS_DATABASE}_{Path(p).stem}": str(access.access_log_path(p)) for p in paths}


def _paths(path: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [path] if isinstance(path, (str, Path)) else list(path)


def serve(
    path: str | Path | Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8001,
    immutable: bool = False,
    accounts: dict[str, dict[str, str]] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted. ``port`` 0 picks a free one; ``on_ready`` gets the URL.

    Beyond the loopback addresses only with ``accounts``: anonymous visitors then see
    nothing but the login page. The access log must be writable (or turned off).
    """
    import uvicorn

    paths = _paths(path)
    for one in paths:
        check_archive(one)
    if not accounts and not is_loopback(host):
        raise ConfigError(
            f"serve binds to {host} only with accounts (anyone reaching it would read the "
            "archive): add one with `groupsync serve-user add NAME --role reader`, or bind "
            "to 127.0.0.1"
        )
    for one in paths:
        access.ensure_writable(one)
    if not accounts and pm.has_plugin(PASSWORDS_PLUGIN):
        # No accounts: its "Log in" link would lead to a form nobody can use.
        pm.set_blocked(PASSWORDS_PLUGIN)
    ds = make_datasette(path, immutable=immutable, accounts=accounts)
    asyncio.run(ds.invoke_startup())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # listening before the URL is printed: a client that connects at once waits in
        # the backlog while uvicorn starts, instead of being refused
        sock.listen(128)
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
