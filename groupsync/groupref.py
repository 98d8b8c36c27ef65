"""A group named the way people name it (id, mail nickname, mail address or display name)
turned into its id, from the archive's ``groups`` table.

The rule, for the CLI's GROUP arguments and ``--group`` options and for ``group:`` in
searches alike: accents, case and runs of white space do not count; an exact match on any
of the four wins, a GUID that matches nothing exactly is taken as an id (a group not
archived yet), and otherwise a prefix of any of the four will do if it fits one group only.
Groups deleted upstream count only when no live group matches at that step, so a name
means the same group whatever the command's flags. More than one group at the deciding
step is an error that lists them: never a silent union.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .archive.queries.groups import group_names
from .errors import AmbiguousGroupError, GroupRefError, ValidationError
from .ids import is_guid, printable

if TYPE_CHECKING:
    from .archive import Archive

__all__ = ["MAX_CANDIDATES", "GroupSelection", "fold_name", "resolve_group"]

MAX_CANDIDATES = 20  # lines of an ambiguity error; "a" fits every group of a big tenant


@dataclass(frozen=True)
class _Group:
    id: str
    name: str | None
    mail: str | None
    deleted: bool
    folded: tuple[str, ...]  # id, displayName, mail, mailNickname as fold_name has them


def fold_name(text: str) -> str:
    """``text`` as names are compared: NFKD, combining marks dropped, case folded, white
    space runs as one space. (Case folding can decompose again, hence the second pass.)"""
    for _ in range(2):
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(text.split())


def resolve_group(archive: Archive | None, text: str) -> str:
    """The id of the group ``text`` names; ``archive`` None when there is none yet (then
    only a GUID will do).

    Raises :class:`GroupRefError` when nothing matches, :class:`AmbiguousGroupError` when
    several groups do, :class:`ArchiveError` when the archive cannot be read.
    """
    wanted = fold_name(text)
    groups = _groups(archive) if archive is not None and wanted else []
    exact = [g for g in groups if wanted in g.folded]
    for g in exact:
        if g.folded[0] == wanted:  # an id beats a name that happens to spell it
            return g.id
    if exact:
        return _one(text, _prefer_live(exact))
    if is_guid(text.strip()):
        return text.strip().lower()
    prefixed = [g for g in groups if any(f.startswith(wanted) for f in g.folded)]
    if prefixed:
        return _one(text, _prefer_live(prefixed))
    hint = "" if archive is not None else " (there is no archive yet: give the group's id)"
    raise GroupRefError(f"no archived group matches {printable(text)}{hint}")


def _groups(archive: Archive) -> list[_Group]:
    rows = group_names(archive)
    return [
        _Group(
            id=group_id,
            name=name,
            mail=mail,
            deleted=deleted_at is not None,
            folded=tuple(fold_name(v) for v in (group_id, name, mail, nickname) if v),
        )
        for group_id, name, mail, nickname, deleted_at in rows
    ]


def _prefer_live(groups: list[_Group]) -> list[_Group]:
    """The live groups among ``groups`` if any, else the deleted ones."""
    return [g for g in groups if not g.deleted] or groups


def _one(text: str, found: list[_Group]) -> str:
    if len(found) == 1:
        return found[0].id
    found = sorted(found, key=lambda g: (fold_name(g.name or ""), g.id))
    lines = [_candidate(g) for g in found[:MAX_CANDIDATES]]
    if len(found) > MAX_CANDIDATES:
        lines.append(f"  … and {len(found) - MAX_CANDIDATES} more")
    raise AmbiguousGroupError(
        f"{printable(text)} fits {len(found)} archived groups; "
        "give one by its id, or more of its name:\n" + "\n".join(lines),
        [g.id for g in found],
    )


def _candidate(group: _Group) -> str:
    """One line of an ambiguity error: every part of it tenant text, so escaped."""
    parts = [printable(group.id), printable(group.name or ""), printable(group.mail or "")]
    return "  " + "  ".join(parts) + ("  (deleted)" if group.deleted else "")


@dataclass(frozen=True)
class GroupSelection:
    """Which groups a sync or a watch covers, checked once for every command that asks.

    ``group_ids`` (resolved ids), ``joined`` (every group the identity is a member of,
    besides those) or ``all_groups`` (every group of the tenant). None of them: the groups
    already archived, or the joined ones when the archive is empty.
    """

    group_ids: tuple[str, ...] = ()
    joined: bool = False
    all_groups: bool = False

    def __post_init__(self) -> None:
        if self.joined and self.all_groups:
            raise ValidationError("--joined and --all do not go together")
