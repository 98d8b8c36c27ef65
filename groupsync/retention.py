"""Retention policies, as rows of the archive: how long posts are kept, archive-wide or for
one group. A group's policy overrides the archive-wide default; with neither, nothing is
ever purged.

A post's age runs from its ``receivedDateTime`` (when the group's mailbox received it),
or its ``createdDateTime`` when Graph gave no delivery time: the delivery time is the one
Graph sets on the server for every post, and the one Exchange's own retention counts from
for mail, so it cannot be moved by a client's clock. A policy set again for the same scope
clears the previous one; a cleared policy stays, marked, as a record.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .archive import Archive, utc_now
from .archive.queries import governance as queries
from .errors import ValidationError
from .governance import append_record

__all__ = ["Policy", "clear_policy", "cutoff", "list_policies", "parse_keep", "set_policy"]

_KEEP = re.compile(r"^([1-9][0-9]{0,4})([dwmy])$")
UNITS = {"d": "day", "w": "week", "m": "month", "y": "year"}


@dataclass(frozen=True)
class Policy:
    """One policy row: ``group_id`` None is the archive-wide default."""

    id: int
    group_id: str | None
    group_name: str | None
    keep: str
    set_by: str
    set_at: str
    cleared_by: str | None = None
    cleared_at: str | None = None

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group_id": self.group_id,
            "group_name": self.group_name,
            "scope": "group" if self.group_id else "default",
            "keep": self.keep,
            "set_by": self.set_by,
            "set_at": self.set_at,
            "cleared_by": self.cleared_by,
            "cleared_at": self.cleared_at,
            "active": self.active,
        }


def parse_keep(text: str) -> tuple[int, str]:
    """``7y``, ``18m``, ``6w``, ``90d`` as ``(number, unit)``; anything else is one line."""
    match = _KEEP.match(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(
            f"--keep takes a number and a unit, d (days), w (weeks), m (months) or y "
            f"(years), as 90d or 7y; not {text!r}"
        )
    return int(match.group(1)), match.group(2)


def cutoff(keep: str, now: datetime) -> str:
    """The moment before which a post is past ``keep``, as Graph writes times.

    Months and years are calendar ones: 1m before 31 March is 28 (or 29) February.
    """
    number, unit = parse_keep(keep)
    if unit in ("d", "w"):
        moment = now - timedelta(days=number * (7 if unit == "w" else 1))
    else:
        months = now.year * 12 + (now.month - 1) - number * (12 if unit == "y" else 1)
        year, month = divmod(months, 12)
        if year < 1:
            return "0001-01-01T00:00:00Z"
        day = min(now.day, calendar.monthrange(year, month + 1)[1])
        moment = now.replace(year=year, month=month + 1, day=day)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _policy(row: dict[str, Any]) -> Policy:
    return Policy(**row)


def list_policies(archive: Archive, *, include_cleared: bool = True) -> list[Policy]:
    """Every policy, oldest first (or only the active ones)."""
    if not queries.has_governance(archive):
        return []
    return [_policy(r) for r in queries.policy_rows(archive, active_only=not include_cleared)]


def set_policy(
    archive: Archive,
    keep: str,
    *,
    actor: str,
    group_id: str | None = None,
    now: Callable[[], str] = utc_now,
) -> Policy:
    """Keep posts of ``group_id`` (or of every group without its own policy) for ``keep``.

    Clears the scope's active policy first; both changes are governance records, in one
    transaction.
    """
    number, unit = parse_keep(keep)
    keep = f"{number}{unit}"
    if group_id is not None and archive.group(group_id) is None:
        raise ValidationError(f"group {group_id} is not in the archive: sync it first")
    at = now()
    with archive.atomic():
        old = queries.active_policy_id(archive, group_id)
        if old is not None:
            queries.clear_policy(archive, old, actor, at)
            append_record(archive, "retention-clear", actor, at, {"policy": old})
        policy_id = queries.insert_policy(archive, group_id, keep, actor, at)
        append_record(
            archive,
            "retention-set",
            actor,
            at,
            {"policy": policy_id, "group_id": group_id, "keep": keep},
        )
    return next(p for p in list_policies(archive) if p.id == policy_id)


def clear_policy(
    archive: Archive,
    *,
    actor: str,
    group_id: str | None = None,
    now: Callable[[], str] = utc_now,
) -> Policy:
    """Clear the active policy of ``group_id`` (or the default); it stays as a record."""
    at = now()
    with archive.atomic():
        old = queries.active_policy_id(archive, group_id)
        if old is None:
            scope = f"group {group_id}" if group_id else "the archive (default)"
            raise ValidationError(f"no retention policy is set for {scope}")
        queries.clear_policy(archive, old, actor, at)
        append_record(archive, "retention-clear", actor, at, {"policy": old})
    return next(p for p in list_policies(archive) if p.id == old)


def parse_time(value: str) -> datetime:
    """A Graph time as an aware datetime (for ``cutoff``'s ``now``)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
