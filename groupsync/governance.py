"""The governance log: every retention policy set or cleared, legal hold created or released,
and purge, as one record chained to the one before by its SHA-256 digest.

A record's digest is SHA-256 of the UTF-8 text ::

    groupsync-governance/1\\n<id>\\n<previous record's digest, or 64 zeros>\\n<at>\\n<actor>\\n
    <action>\\n<record JSON>\\n

where the record JSON is canonical (keys sorted) and names the row it is about (a policy,
a hold or a purge) with that row's values. ``verify`` recomputes the chain and replays it
against the ``retention_policies``, ``legal_holds`` and ``purges`` tables, so editing or
deleting a record, or a row it describes, is reported.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .archive import GENESIS, Archive, canonical_json
from .archive.queries import governance as queries
from .errors import ArchiveError

__all__ = ["GOVERNANCE_VERSION", "append_record", "governance_digest"]

GOVERNANCE_VERSION = "groupsync-governance/1"
ACTIONS = ("retention-set", "retention-clear", "hold-create", "hold-release", "purge")


def governance_digest(
    prev: str, record_id: int, at: str, actor: str, action: str, record: str
) -> str:
    """A governance record's digest (see the module docstring)."""
    text = f"{GOVERNANCE_VERSION}\n{record_id}\n{prev}\n{at}\n{actor}\n{action}\n{record}\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def append_record(
    archive: Archive, action: str, actor: str, at: str, record: dict[str, Any]
) -> int:
    """Add a record to the log, in the caller's transaction; its id."""
    if action not in ACTIONS:
        raise ArchiveError(f"unknown governance action {action!r}")
    last = queries.last_record(archive)
    record_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    text = canonical_json(record)
    digest = governance_digest(prev, record_id, at, actor, action, text)
    queries.insert_record(archive, record_id, at, actor, action, text, prev, digest)
    return record_id


def loads(text: str | None) -> Any:
    """A JSON list column of the governance tables (None stays None)."""
    return None if text is None else json.loads(text)
