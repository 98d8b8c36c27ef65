"""Which groups a tenant has, kept up to date with Graph's ``/groups/delta``.

The first ``sync --all`` walks the whole delta round (every group, all pages) and stores
the ``@odata.deltaLink`` Graph ends it with; each later one follows that link and reads
only what changed: new groups, renamed ones (their row is updated, the mail stays), and
removed ones (``@removed``: tombstoned, never erased). Graph's delta has no ``groupTypes``
filter, so the Microsoft 365 (mailbox) groups are picked here, as ``list_groups`` does.

A deltaLink Graph no longer knows (expired after 7 days for directory objects, or lost:
``syncStateNotFound``, or 410 Gone) means a full round again; that round is a complete
listing, so archived groups it does not show are tombstoned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .archive import Archive
from .archive.queries import discovery as queries
from .errors import GraphError
from .graph import GraphClient
from .models import has_mailbox, parse_group

__all__ = ["GROUP_SELECT", "Discovered", "discover_groups", "delta_expired"]

# What the archive keeps of a group (the columns of ``groups``) and what group_kind reads.
GROUP_SELECT = [
    "id",
    "displayName",
    "description",
    "mail",
    "mailNickname",
    "visibility",
    "groupTypes",
    "createdDateTime",
    "mailEnabled",
    "securityEnabled",
]
# Error codes Graph gives for a delta token it cannot continue from (directory objects
# answer 400 syncStateNotFound; other delta APIs 410 Gone, some with resyncRequired).
EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})


@dataclass
class Discovered:
    """What one discovery did. ``full``: a complete listing (first run or after expiry)."""

    full: bool = False
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def delta_expired(error: GraphError) -> bool:
    """Whether Graph refused a deltaLink as expired or unknown (so: list everything)."""
    return error.status == 410 or (error.code or "") in EXPIRED_CODES


def discover_groups(
    archive: Archive,
    graph: GraphClient,
    now: str,
    *,
    keep: Callable[[str], bool] = lambda _group_id: True,
) -> Discovered:
    """Bring the archive's ``groups`` up to date with the tenant, storing the next link.

    ``keep`` says which groups this archive holds (a shard's): others are neither added
    nor tombstoned here. Nothing is written until the delta round is complete, so a
    killed discovery starts again from the stored link.
    """
    result = Discovered()
    link = queries.delta_link(archive)
    if link is not None and _origin(link) != _origin(graph.base_url):
        # The bearer token only goes to the configured Graph; another endpoint (a moved
        # simulator, a national cloud) starts its own round.
        result.notes.append(
            f"the stored group delta link is for {_origin(link)}, not {_origin(graph.base_url)}: "
            "listing every group again"
        )
        link = None
    try:
        pages = _round(graph, link)
    except GraphError as ex:
        if link is None or not delta_expired(ex):
            raise
        result.notes.append(
            f"Graph no longer knows the stored group delta link ({ex.code or ex.status}): "
            "listing every group again"
        )
        link = None
        pages = _round(graph, None)
    result.full = link is None
    seen: dict[str, dict[str, Any] | None] = {}  # id -> the group, or None if removed
    next_link: str | None = None
    for page in pages:
        for item in page.get("value") or []:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise GraphError("Graph sent a group change without an id (group changes)")
            seen[item["id"].lower()] = None if "@removed" in item else item
        next_link = page.get("@odata.deltaLink") or next_link
    if next_link is None:
        raise GraphError("Graph ended the group delta without a deltaLink (group changes)")
    archived = {g.lower(): g for g in queries.live_group_ids(archive)}
    known = {g.lower() for g in archive.group_ids(include_deleted=True)}
    with archive.atomic():
        for key, item in seen.items():
            if item is None or not has_mailbox(item):
                continue  # removals below; groups without a mailbox are never archived
            group = parse_group({k: v for k, v in item.items() if not k.startswith("@")})
            if not keep(group["id"]):
                continue
            (result.changed if key in known else result.added).append(group["id"])
            archive.save_group(group, now)
        gone = [
            archived[key]
            for key in archived
            if (key in seen and seen[key] is None) or (result.full and key not in seen)
        ]
        for group_id in gone:
            reason = "removed" if group_id.lower() in seen else "not listed by Graph"
            if queries.tombstone_group(archive, group_id, now, f"group {reason} upstream"):
                result.removed.append(group_id)
        queries.save_delta_link(archive, next_link, now)
    return result


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _round(graph: GraphClient, link: str | None) -> list[dict[str, Any]]:
    """Every page of one delta round (read whole before anything is written)."""
    return list(graph.group_delta_pages(link, select=GROUP_SELECT if link is None else None))
