"""``groupsync purge``: remove what the retention policies no longer keep, except what a legal
hold covers, and leave a record of each thing removed.

For each post past its policy's retention and under no active hold, one transaction per
batch of posts removes its stored versions, its attachments and the attachment bytes no
remaining post (or queued outbox item) uses, and empties the post's row of its content
(body, categories, people, attachment note). The row keeps its ids, ``changeKey`` and dates,
and gets ``purged_at`` and ``purge_id``: so a sync knows the post and does not fetch it
again; only a new ``changeKey`` from Graph (the post edited upstream) stores it again, as a
new version, which the next purge removes again if the policy still says so. Each removed
post, version and blob gets a tombstone (``purged_items``: ids, SHA-256, size, the sync run
that stored it, the policy), so ``verify`` still recomputes every sync run's digest.

When the batches are done the purge gets its governance record (when, by whom, under which
policies and holds, and the SHA-256 of its sorted tombstones). A purge killed before that
is sealed by the next purge over the tombstones it committed, and the next purge removes
what is left: nothing is half-removed, since every batch is one transaction. A purge that
finds nothing to remove writes nothing at all (no purge row, no record).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .archive import Archive, utc_now
from .archive.queries import governance as queries
from .errors import GroupsyncError
from .governance import append_record
from .holds import Hold, active_holds, matching_posts
from .retention import Policy, cutoff, list_policies, parse_time

__all__ = ["PurgeReport", "items_sha256", "purge", "tombstone_lines"]

BATCH = 500  # posts per transaction


class PurgeRefusedError(GroupsyncError):
    """A purge that cannot know what is held (a query hold and no current index)."""


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove)."""

    purge_id: int | None = None
    dry_run: bool = False
    posts: int = 0
    versions: int = 0
    blobs: int = 0
    bytes: int = 0
    held: int = 0
    policies: list[dict[str, Any]] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    sealed: list[int] = field(default_factory=list)
    post_ids: list[str] = field(default_factory=list)
    stopped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tombstone_lines(rows: Iterable[tuple[Any, ...]]) -> list[str]:
    """The lines a purge's ``items_sha256`` covers, sorted: one per tombstone
    (``kind post_id changeKey sha256 size sync_run_id policy_id``, empty fields as ``-``)."""
    return sorted(" ".join("-" if v is None else str(v) for v in row[1:]) for row in rows)


def items_sha256(rows: Iterable[tuple[Any, ...]]) -> str:
    """SHA-256 of a purge's sorted tombstone lines, each ending in a newline."""
    digest = hashlib.sha256()
    for line in tombstone_lines(rows):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _rules(policies: list[Policy], now: str) -> tuple[list[tuple[int, str | None, str]], list[str]]:
    moment = parse_time(now)
    rules = [(p.id, p.group_id, cutoff(p.keep, moment)) for p in policies]
    own = sorted({p.group_id for p in policies if p.group_id is not None})
    return rules, own


def _held(
    archive: Archive, holds: list[Hold], candidates: list[str], index_path: Path | None,
    catch_up: bool,
) -> set[str]:  # fmt: skip
    """Which candidates an active hold covers; a query hold needs a current index."""
    if catch_up and any(h.query is not None for h in holds):
        from . import search as fulltext  # Whoosh only for a query hold

        path = index_path or fulltext.index_path_for(archive.path)
        if path.exists():
            fulltext.update_index(archive, path, keep_deleted=True)
    held: set[str] = set()
    for hold in holds:
        try:
            rows = matching_posts(archive, hold, index_path=index_path, among=candidates)
        except GroupsyncError as ex:
            if hold.query is None:
                raise
            from .search import IndexNotCurrentError

            if not isinstance(ex, IndexNotCurrentError):
                raise
            raise PurgeRefusedError(
                f"purge refused: the legal hold {hold.name!r} is a query, which needs a "
                f"current search index ({ex})"
            ) from None
        held.update(r[0] for r in rows)
    return held


def _seal(archive: Archive, purge_id: int, at: str, status: str) -> None:
    """A purge's totals, digest and governance record (in the caller's transaction)."""
    rows = queries.purged_item_rows(archive, purge_id)
    totals = queries.purge_totals(archive, purge_id)
    digest = items_sha256(rows)
    queries.finish_purge(
        archive,
        purge_id,
        {"finished_at": at, "status": status, "items_sha256": digest, **totals},
    )
    row = next(r for r in queries.purge_rows(archive) if r["id"] == purge_id)
    append_record(archive, "purge", row["actor"], at, _record(row))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A purge's governance record: its row, lists parsed."""
    return {
        "purge": row["id"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "status": row["status"],
        "policies": json.loads(row["policies"] or "[]"),
        "holds": json.loads(row["holds"] or "[]"),
        "posts": row["posts"],
        "versions": row["versions"],
        "blobs": row["blobs"],
        "bytes": row["bytes"],
        "items_sha256": row["items_sha256"],
    }


def purge(
    archive: Archive,
    *,
    actor: str,
    dry_run: bool = False,
    index_path: str | Path | None = None,
    batch: int = BATCH,
    now: Callable[[], str] = utc_now,
    progress: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> PurgeReport:
    """Purge posts past retention and under no active hold; see the module docstring.

    ``dry_run`` writes nothing (not even the search index) and lists what would go.
    ``index_path``: the search index, which a query hold needs current (by default
    ``<db>.whoosh``); a real purge catches it up first and removes the purged posts from it
    afterwards (``search.update_index``). ``stop``: when set, the purge ends after the
    batch being written, as a kill would, but sealed.
    """
    report = PurgeReport(dry_run=dry_run)
    path = Path(index_path) if index_path else None
    started = now()
    if not dry_run:
        with archive.atomic():
            for purge_id in queries.unsealed_purges(archive):
                _seal(archive, purge_id, started, "interrupted")
                report.sealed.append(purge_id)
    policies = list_policies(archive, include_cleared=False)
    report.policies = [p.as_dict() for p in policies]
    if not policies:
        return report
    rules, own = _rules(policies, started)
    candidates = queries.retention_candidates(archive, rules, own)
    holds = active_holds(archive)
    report.holds = [h.name for h in holds]
    ids = [post_id for post_id, _ in candidates]
    held = _held(archive, holds, ids, path, catch_up=not dry_run) if holds and ids else set()
    report.held = len(held)
    todo = [(post_id, policy) for post_id, policy in candidates if post_id not in held]
    if dry_run:
        _dry(archive, todo, report)
        return report
    if not todo:
        return report
    with archive.atomic():
        purge_id = queries.start_purge(
            archive,
            started,
            actor,
            json.dumps([{"id": p.id, "group_id": p.group_id, "keep": p.keep} for p in policies]),
            json.dumps([{"id": h.id, "name": h.name} for h in holds], ensure_ascii=False),
        )
    report.purge_id = purge_id
    for start in range(0, len(todo), batch):
        if stop is not None and stop.is_set():
            report.stopped = True
            break
        chunk = todo[start : start + batch]
        with archive.atomic():
            _remove(archive, purge_id, chunk, now(), report)
        if progress is not None:
            progress({"stage": "purge", "done": min(start + batch, len(todo)),
                      "total": len(todo)})  # fmt: skip
    with archive.atomic():
        _seal(archive, purge_id, now(), "stopped" if report.stopped else "complete")
    totals = queries.purge_totals(archive, purge_id)
    report.posts, report.versions = totals["posts"], totals["versions"]
    report.blobs, report.bytes = totals["blobs"], totals["bytes"]
    if path is None:
        from . import search as fulltext

        path = fulltext.index_path_for(archive.path)
    if path.exists():
        from . import search as fulltext

        fulltext.update_index(archive, path)
    return report


def _remove(
    archive: Archive, purge_id: int, chunk: list[tuple[str, int]], at: str, report: PurgeReport
) -> None:
    """One batch: tombstones first, then the removals, in the caller's transaction."""
    policy_of = dict(chunk)
    ids = list(policy_of)
    keys = queries.post_change_keys(archive, ids)
    items: list[tuple[Any, ...]] = []
    for post_id, change_key, sha256, size, run_id in queries.version_rows(archive, ids):
        items.append((purge_id, "version", post_id, change_key, sha256, size, run_id,
                      policy_of[post_id], at))  # fmt: skip
        if change_key == keys.get(post_id):
            items.append((purge_id, "post", post_id, change_key, sha256, size, None,
                          policy_of[post_id], at))  # fmt: skip
    shas = queries.attachment_blobs(archive, ids)
    seq = archive.change_seq()
    queries.strip_posts(
        archive, [(post_id, seq + n, at, purge_id) for n, post_id in enumerate(ids, 1)]
    )
    gone = queries.unused_blobs(archive, shas)
    for sha256, size, run_id in gone:
        items.append((purge_id, "blob", None, None, sha256, size, run_id, None, at))
    queries.insert_items(archive, items)
    queries.delete_blobs(archive, [g[0] for g in gone])
    report.post_ids.extend(ids)


def _dry(archive: Archive, todo: list[tuple[str, int]], report: PurgeReport) -> None:
    """What a purge would remove, counted without writing."""
    ids = [post_id for post_id, _ in todo]
    report.post_ids = ids
    report.posts = len(ids)
    report.versions = len(queries.version_rows(archive, ids))
    shas = queries.attachment_blobs(archive, ids)
    # A blob goes if every attachment using it belongs to a post that goes.
    report.blobs, report.bytes = queries.blobs_only_used_by(archive, shas, set(ids))
