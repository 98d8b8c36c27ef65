"""Which of a Datasette's databases are groupsync archives, and the plugin's URLs."""

from __future__ import annotations

import hashlib
import weakref
from typing import Any
from urllib.parse import urlencode

from datasette.utils import tilde_encode
from datasette.utils.asgi import NotFound

from .metadata import ARCHIVE_TABLES

__all__ = [
    "archive_databases",
    "attachment_url",
    "detect_archives",
    "find_archive",
    "post_anchor",
    "thread_url",
]

# datasette instance -> {database name: archive?}; weak, so test instances go away
_SEEN: weakref.WeakKeyDictionary[Any, dict[str, bool]] = weakref.WeakKeyDictionary()


async def detect_archives(datasette: Any) -> list[str]:
    """Check every database not checked yet; the names of those that are archives."""
    seen = _SEEN.setdefault(datasette, {})
    for name, db in list(datasette.databases.items()):
        if name in seen:
            continue
        if name == "_internal" or db.is_memory:
            seen[name] = False
            continue
        seen[name] = set(await db.table_names()) >= ARCHIVE_TABLES
    return archive_databases(datasette)


def archive_databases(datasette: Any) -> list[str]:
    """Archive databases found so far, in Datasette's order (sync, for metadata hooks)."""
    seen = _SEEN.get(datasette) or {}
    return [name for name in datasette.databases if seen.get(name)]


async def find_archive(datasette: Any, wanted: str | None) -> list[str]:
    """The archive databases a request may mean: ``?db=`` or all of them."""
    names = await detect_archives(datasette)
    if wanted:
        if wanted not in names:
            raise NotFound(f"No groupsync archive called {wanted!r} here.")
        return [wanted]
    if not names:
        raise NotFound("This Datasette serves no groupsync archive.")
    return names


def post_anchor(post_id: str) -> str:
    """A short, URL- and id-safe anchor for a post inside the thread view."""
    return "post-" + hashlib.sha1(post_id.encode("utf-8")).hexdigest()[:12]


def thread_url(
    datasette: Any,
    group_id: str,
    thread_id: str,
    *,
    post_id: str | None = None,
    database: str | None = None,
) -> str:
    path = f"/-/groupsync/thread/{tilde_encode(group_id)}/{tilde_encode(thread_id)}"
    if database is not None and len(archive_databases(datasette)) > 1:
        path += "?" + urlencode({"db": database})
    if post_id is not None:
        path += "#" + post_anchor(post_id)
    return str(datasette.urls.path(path))


def attachment_url(datasette: Any, sha256: str, *, post_id: str | None = None) -> str:
    path = f"/-/groupsync/attachment/{sha256}"
    if post_id is not None:
        path += "?" + urlencode({"post": post_id})
    return str(datasette.urls.path(path))
