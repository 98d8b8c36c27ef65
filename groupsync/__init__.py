"""groupsync: an offline, searchable, verifiable replica of Microsoft 365 Group mailboxes."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Settings, load_settings  # noqa: E402
from .errors import GraphError, GroupsyncError  # noqa: E402
from .graph import GraphClient  # noqa: E402
from .throttle import Throttle  # noqa: E402

__all__ = [
    "GraphClient",
    "GraphError",
    "GroupsyncError",
    "Settings",
    "Throttle",
    "__version__",
    "load_settings",
]
