"""Legal holds, as rows of the archive: posts a hold covers are never purged, whatever the
retention policy says.

A hold names criteria, and the posts it covers are found when asked (``hold show``,
``purge``, a production export), so mail that arrives after the hold was created is
covered too. Criteria combine with AND: the groups (any of them), the query, the delivery
time (``from_date`` inclusive, ``to_date`` inclusive: the whole day), and the custodians
(any of them, as sender, author or recipient). A hold with no criteria covers every post.

A query hold is evaluated by the search index, with groupsync's search syntax. So that a
stale index cannot let held mail be purged, ``all_matching_posts`` refuses an index that
is behind the archive, missing, or built without the posts deleted upstream (which the
archive still holds and a hold must cover); writing commands catch the index up first.

For other modules (the production export's ``--hold``): ``held_post_ids(archive, name)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .archive import Archive, utc_now
from .archive.queries import governance as queries
from .errors import GroupsyncError, ValidationError
from .governance import append_record

__all__ = [
    "Hold",
    "HoldError",
    "active_holds",
    "create_hold",
    "get_hold",
    "held_post_ids",
    "list_holds",
    "matching_posts",
    "release_hold",
]

MAX_NAME = 200


class HoldError(GroupsyncError):
    """No such hold, or a hold that cannot be created or released as asked."""

    exit_code = 2


@dataclass(frozen=True)
class Hold:
    """One hold row; ``groups`` are group ids, ``custodians`` lower-case addresses."""

    id: int
    name: str
    groups: list[str] = field(default_factory=list)
    query: str | None = None
    from_date: str | None = None
    to_date: str | None = None
    custodians: list[str] = field(default_factory=list)
    note: str | None = None
    created_by: str = ""
    created_at: str = ""
    released_by: str | None = None
    released_at: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def criteria(self) -> dict[str, Any]:
        """What the governance record and ``hold show`` state the hold covers."""
        return {
            "groups": self.groups,
            "query": self.query,
            "from_date": self.from_date,
            "to_date": self.to_date,
            "custodians": self.custodians,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


def _hold(row: dict[str, Any]) -> Hold:
    values = dict(row)
    for key in ("groups", "custodians"):
        values[key] = json.loads(values[key]) if values[key] else []
    return Hold(**values)


def _day(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValidationError(f"{what} takes a date as YYYY-MM-DD, not {value!r}") from None


def _address(value: str) -> str:
    address = value.strip().lower()
    if "@" not in address or any(c.isspace() or ord(c) < 32 for c in address):
        raise ValidationError(f"--custodian takes an email address, not {value!r}")
    return address


def list_holds(archive: Archive, *, include_released: bool = True) -> list[Hold]:
    """Every hold, oldest first (or only the active ones)."""
    if not queries.has_governance(archive):
        return []
    return [_hold(r) for r in queries.hold_rows(archive, active_only=not include_released)]


def active_holds(archive: Archive) -> list[Hold]:
    return list_holds(archive, include_released=False)


def get_hold(archive: Archive, name: str) -> Hold:
    row = queries.hold_row(archive, name) if queries.has_governance(archive) else None
    if row is None:
        raise HoldError(f"no legal hold named {name!r}")
    return _hold(row)


def create_hold(
    archive: Archive,
    name: str,
    *,
    actor: str,
    groups: Iterable[str] = (),
    query: str | None = None,
    from_date: str | None = None,
    to_date: str | None = None,
    custodians: Iterable[str] = (),
    note: str | None = None,
    now: Callable[[], str] = utc_now,
) -> Hold:
    """Record a new hold (and its governance record) in one transaction.

    ``groups`` are group ids (resolve names first, ``groupref.resolve_group``); the query
    is parsed first, so a wrong one is refused before anything is written. Names are unique
    for ever: a released hold keeps its name as a record.
    """
    if not name or not name.strip() or len(name) > MAX_NAME:
        raise ValidationError(f"a hold needs a name of 1 to {MAX_NAME} characters")
    since, until = _day(from_date, "--from"), _day(to_date, "--to")
    if since and until and since > until:
        raise ValidationError(f"--from {since} is after --to {until}")
    if query is not None and not query.strip():
        raise ValidationError("--query is empty")
    if query is not None:
        from .search import check_query  # Whoosh's parser, only for a query hold

        check_query(archive, query)
    group_ids = sorted(set(groups))
    addresses = sorted({_address(c) for c in custodians})
    at = now()
    with archive.atomic():
        if queries.hold_row(archive, name) is not None:
            raise HoldError(f"a legal hold named {name!r} already exists (names are kept)")
        values = {
            "name": name,
            "groups": json.dumps(group_ids) if group_ids else None,
            "query": query,
            "from_date": since,
            "to_date": until,
            "custodians": json.dumps(addresses) if addresses else None,
            "note": note,
            "created_by": actor,
            "created_at": at,
        }
        hold_id = queries.insert_hold(archive, values)
        hold = get_hold(archive, name)
        append_record(
            archive,
            "hold-create",
            actor,
            at,
            {"hold": hold_id, "name": name, "note": note, **hold.criteria()},
        )
    return hold


def release_hold(
    archive: Archive, name: str, *, actor: str, now: Callable[[], str] = utc_now
) -> Hold:
    """Release a hold: its posts follow the retention policy again from the next purge."""
    at = now()
    with archive.atomic():
        hold = get_hold(archive, name)
        if not hold.active:
            raise HoldError(f"the legal hold {name!r} was released at {hold.released_at}")
        queries.release_hold(archive, hold.id, actor, at)
        append_record(archive, "hold-release", actor, at, {"hold": hold.id})
    return get_hold(archive, name)


def _query_matches(archive: Archive, hold: Hold, index_path: str | Path | None) -> set[str]:
    from . import search as fulltext  # Whoosh is loaded only for a query hold

    path = Path(index_path) if index_path else fulltext.index_path_for(archive.path)
    assert hold.query is not None
    return set(fulltext.all_matching_posts(archive, path, hold.query))


def matching_posts(
    archive: Archive,
    hold: Hold,
    *,
    index_path: str | Path | None = None,
    among: Iterable[str] | None = None,
) -> list[tuple[str, str, str, str | None, str | None]]:
    """The posts ``hold`` covers now, oldest first: ``(post_id, group_id, thread_id,
    received, deleted_at)``; ``among`` narrows the answer to those post ids.

    A query hold needs a current search index (``index_path``, by default
    ``<db>.whoosh``): ``search.IndexNotCurrentError`` otherwise. Purged posts are
    never matched (there is nothing left of them to hold).
    """
    wanted = set(among) if among is not None else None
    if hold.query is not None:
        found = _query_matches(archive, hold, index_path)
        wanted = found if wanted is None else wanted & found
    until = None
    if hold.to_date is not None:
        until = (date.fromisoformat(hold.to_date) + timedelta(days=1)).isoformat()
    return queries.matching_post_rows(
        archive,
        groups=hold.groups or None,
        since=hold.from_date,
        until=until,
        custodians=hold.custodians or None,
        among=wanted,
    )


def held_post_ids(archive: Archive, name: str, *, index_path: str | Path | None = None) -> set[str]:
    """The ids of the posts the hold ``name`` covers now (released or not): what a
    production of a hold exports. ``HoldError`` if there is no such hold; a query hold
    needs a current search index (see ``matching_posts``)."""
    return {row[0] for row in matching_posts(archive, get_hold(archive, name),
                                             index_path=index_path)}  # fmt: skip
