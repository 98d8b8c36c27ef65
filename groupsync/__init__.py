"""groupsync: an offline, searchable, verifiable replica of Microsoft 365 Group mailboxes.

What a script needs: open an ``Archive``, ``connect`` to Graph, run a ``Syncer``, read
with the ``get_*``/``iter_*`` functions (the connector's JSON shapes), queue writes in the
``Outbox``, ``verify`` and ``export``; every error is a ``GroupsyncError``.

``search`` is the :mod:`groupsync.search` package, not its function of the same name: a
search needs its index kept up to date too (``update_index``), and a function bound here
would hide the package from every ``from groupsync import search``. Whoosh loads on first
use, as the command line has always done, so ``import groupsync`` stays quick.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from .archive import Archive
from .config import Settings, load_settings
from .connect import connect
from .errors import (
    AmbiguousGroupError,
    ArchiveError,
    AuthError,
    BadRequestError,
    ConfigError,
    ForbiddenError,
    GraphError,
    GroupRefError,
    GroupsyncError,
    InvalidIdError,
    NoMailboxError,
    NotFoundError,
    OutboxError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from .export import ExportError, ExportOptions, ExportReport, export
from .graph import GraphClient, TokenProvider
from .integrity import VerifyReport, verify
from .lock import LockedError
from .outbox import Outbox
from .reads import (
    get_conversation,
    get_group,
    get_post,
    get_thread,
    iter_attachments,
    iter_conversations,
    iter_groups,
    iter_post_versions,
    iter_posts,
    iter_threads,
)
from .sync import Syncer, SyncOptions, SyncReport
from .throttle import Throttle
from .version import __version__

if TYPE_CHECKING:
    from . import search

__all__ = [
    "AmbiguousGroupError",
    "Archive",
    "ArchiveError",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "ExportError",
    "ExportOptions",
    "ExportReport",
    "ForbiddenError",
    "GraphClient",
    "GraphError",
    "GroupRefError",
    "GroupsyncError",
    "InvalidIdError",
    "LockedError",
    "NoMailboxError",
    "NotFoundError",
    "Outbox",
    "OutboxError",
    "ServiceUnavailableError",
    "Settings",
    "SyncOptions",
    "SyncReport",
    "Syncer",
    "Throttle",
    "ThrottledError",
    "TokenProvider",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "VerifyReport",
    "__version__",
    "connect",
    "export",
    "get_conversation",
    "get_group",
    "get_post",
    "get_thread",
    "iter_attachments",
    "iter_conversations",
    "iter_groups",
    "iter_post_versions",
    "iter_posts",
    "iter_threads",
    "load_settings",
    "search",
    "verify",
]


def __getattr__(name: str) -> ModuleType:
    """Import :mod:`groupsync.search` (and Whoosh) when it is first asked for."""
    if name == "search":
        import importlib

        return importlib.import_module(".search", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
