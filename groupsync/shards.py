"""Shards of a tenant: ``sync --all --shard K/N`` keeps the groups whose stable hash falls
in shard K of N, each shard in its own archive (and index), so N machines or pods share a
tenant without talking to each other.

K is 0-based, because that is what schedulers hand out: a Kubernetes Indexed Job gives
each pod ``JOB_COMPLETION_INDEX`` from 0 to completions-1, and a systemd template unit
``groupsync-sync@0.service`` .. ``@3`` reads the same. The hash is SHA-256 of the group id
(lower case, as Graph compares ids), never Python's ``hash()``, which changes between runs;
so a group stays in its shard on every machine, release and run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import ValidationError
from .ids import printable

__all__ = ["MAX_SHARDS", "Shard", "parse_shard", "shard_of"]

MAX_SHARDS = 4096


def shard_of(group_id: str, count: int) -> int:
    """The 0-based shard of ``count`` that a group belongs to."""
    digest = hashlib.sha256(group_id.strip().lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValidationError(f"--shard: N must be between 1 and {MAX_SHARDS}")
        if not 0 <= self.index < self.count:
            raise ValidationError(
                f"--shard: K is 0-based and must be below N ({self.index}/{self.count}); "
                "a Kubernetes Indexed Job's JOB_COMPLETION_INDEX is already 0-based"
            )

    def holds(self, group_id: str) -> bool:
        return shard_of(group_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` as a :class:`Shard`; a one-line :class:`ValidationError` otherwise."""
    index, slash, count = text.strip().partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValidationError(
            f"--shard takes K/N, such as 0/4 (K from 0 to N-1), not {printable(text)}"
        )
    return Shard(int(index), int(count))
