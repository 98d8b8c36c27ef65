"""groupsync's Datasette plugin: the archive made for reading, never for writing.

Registered through the ``datasette`` entry point, so ``datasette groupsync.db`` picks it up;
``groupsync serve`` runs Datasette with it. Routes, all under ``/-/groupsync/``:

- ``/-/groupsync/`` the archive's groups, searches and canned queries;
- ``/-/groupsync/thread/{group}/{thread}`` a thread as a person reads it;
- ``/-/groupsync/search?q=`` ``groupsync search``'s query language and index;
- ``/-/groupsync/attachment/{sha256}`` an attachment, streamed as a download;
- ``/-/static-plugins/groupsync/groupsync.css`` the stylesheet, which Datasette serves from
  ``static/`` as it does every plugin's.

It imports ``archive``, ``search``, ``reads`` and ``html`` only: nothing here can reach
Graph or the outbox. Settings (Datasette 0.65 reads them from metadata, the 1.0 alphas from
``datasette.yaml``)::

    {"plugins": {"groupsync": {"search_index": "/path/to/groupsync.db.whoosh"}}}

It runs on Datasette 0.65 and on the 1.0 alphas: ``compat`` holds what differs.
"""

from __future__ import annotations

import json
from typing import Any

from datasette import hookimpl
from datasette.utils.asgi import Response
from jinja2 import ChoiceLoader
from markupsafe import escape

from . import accounts, cells, compat, security, views
from .archives import archive_databases, detect_archives
from .facets import MonthFacet
from .metadata import DESCRIPTION, instance_metadata
from .tables import TableTemplates, arrange

__all__ = [
    "asgi_wrapper",
    "extra_css_urls",
    "forbidden",
    "menu_links",
    "prepare_jinja2_environment",
    "register_facet_classes",
    "register_routes",
    "render_cell",
    "startup",
    "table_actions",
]

_METADATA_CACHE: dict[tuple[str, ...], str] = {}  # (home URL, *database names) -> JSON


def _metadata(datasette: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The archives' metadata; the instance description (on Datasette's index page) links
    to groupsync's home."""
    meta = instance_metadata(names)
    home = escape(datasette.urls.path("/-/groupsync/"))
    meta["description_html"] = (
        f"<p>{escape(DESCRIPTION)}</p>"
        f'<p><a href="{home}">Read the archive in groupsync: groups, threads, search</a></p>'
    )
    return meta


@hookimpl
def startup(datasette: Any) -> Any:
    async def inner() -> None:
        names = await detect_archives(datasette)
        await compat.apply_metadata(datasette, _metadata(datasette, tuple(names)) if names else {})

    return inner


@hookimpl
def prepare_jinja2_environment(env: Any, datasette: Any) -> None:
    """The archive tables' arranged template, and the hashes of every template's inline
    scripts for the Content-Security-Policy (both versions hand the environment here)."""
    env.loader = ChoiceLoader([TableTemplates(datasette), env.loader])
    env.globals["groupsync_arrange"] = arrange
    security.trust_template_scripts(env)


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    """Every response gets the Content-Security-Policy, Datasette's own pages included;
    with accounts, datasette-auth-passwords' /-/password-tool is not served."""
    return lambda app: security.with_headers(accounts.without_password_tool(datasette, app))


@hookimpl
def forbidden(datasette: Any, request: Any, message: str) -> Any:
    """With accounts, someone not logged in is sent to the login form instead of a 403."""
    if request.actor is None and accounts.login_required(datasette):
        return Response.redirect(datasette.urls.path("/-/login"))
    return None


if not compat.DATASETTE_1:  # the 1.0 alphas removed this hook: see compat.apply_metadata

    @hookimpl
    def get_metadata(datasette: Any, key: Any, database: Any, table: Any) -> dict[str, Any]:
        names = tuple(archive_databases(datasette))
        if not names:
            return {}
        key = (str(datasette.urls.path("/-/groupsync/")), *names)
        if key not in _METADATA_CACHE:
            _METADATA_CACHE[key] = json.dumps(_metadata(datasette, names))
        # A fresh copy each time: Datasette merges other metadata into what it is given.
        return json.loads(_METADATA_CACHE[key])

    __all__ += ["get_metadata"]


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    return [
        (r"^/-/groupsync/?$", views.handled(views.index)),
        (
            r"^/-/groupsync/thread/(?P<group>[^/]+)/(?P<thread>[^/]+)$",
            views.handled(views.thread),
        ),
        (r"^/-/groupsync/search$", views.handled(views.search)),
        (r"^/-/groupsync/attachment/(?P<sha256>[^/]+)$", views.handled(views.attachment)),
    ]


@hookimpl
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> Any:
    if database not in archive_databases(datasette):
        return None
    return cells.render(datasette, row, value, column, table, database)


@hookimpl
def register_facet_classes() -> list[type]:
    return [MonthFacet]


@hookimpl
def extra_css_urls(template: str, database: str | None, datasette: Any) -> list[str]:
    if template.startswith("groupsync_"):
        return []  # the plugin's own pages link it themselves
    if database is None or database not in archive_databases(datasette):
        return []
    return [views.css_url(datasette)]


@hookimpl
def menu_links(datasette: Any) -> list[dict[str, str]]:
    if not archive_databases(datasette):
        return []
    return [
        {"href": str(datasette.urls.path("/-/groupsync/")), "label": "groupsync: groups"},
        {"href": str(datasette.urls.path("/-/groupsync/search")), "label": "groupsync: search"},
    ]


@hookimpl
def table_actions(datasette: Any, database: str, table: str) -> list[dict[str, str]]:
    if database not in archive_databases(datasette) or table not in {"posts", "threads"}:
        return []
    return [
        {
            "href": str(datasette.urls.path("/-/groupsync/search")),
            "label": "Search mail (ranked, with snippets)",
        }
    ]
