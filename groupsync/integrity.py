"""``groupsync verify``: recompute every hash the archive recorded, and its digest chain.

What is recorded at write time, and checked here:

* ``post_versions.sha256``: SHA-256 of the version's canonical JSON (its ``json``), whose
  ``id`` and ``changeKey`` must be the row's;
* ``posts``: the latest version's body, dates and addresses, copied out of that JSON;
* ``blobs.sha256`` (the key) and ``size``: of the attachment bytes; every attachment's
  blob must exist;
* ``sync_runs.digest``: ``archive.chain_digest(prev_digest, run id, items)`` over the
  post versions and blobs the run stored, where ``prev_digest`` is the previous run's
  digest (``GENESIS`` for the first), so rewriting, adding or deleting any of them, or a
  run, breaks the chain from there on. Noting the head digest somewhere else (an export's
  manifest carries it) and passing it as ``anchor`` later proves history up to it intact.

And damage below the rows: SQLite's own ``PRAGMA integrity_check`` (pages, indexes)
first, since nothing read from a damaged file can be trusted (the other checks are then
skipped); FTS5's integrity check of each full-text table against its content table; and
the Whoosh index, when there is one, against the posts. Then the completeness audit
(``audit``): what a sync may have missed, reported apart, as findings.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .access import check_access_log
from .archive import GENESIS, Archive, chain_digest
from .archive.queries import governance as governance_queries
from .archive.queries import integrity as queries
from .audit import Finding, audit
from .errors import ArchiveError
from .governance import governance_digest

__all__ = ["Problem", "VerifyReport", "loose_permissions", "verify"]

# posts column -> where the same value sits in the version's Graph JSON
_POST_FIELDS = {
    "body_content": ("body", "content"),
    "body_contentType": ("body", "contentType"),
    "createdDateTime": ("createdDateTime",),
    "lastModifiedDateTime": ("lastModifiedDateTime",),
    "receivedDateTime": ("receivedDateTime",),
    "from_address": ("from", "emailAddress", "address"),
    "sender_address": ("sender", "emailAddress", "address"),
}


@dataclass
class Problem:
    """One mismatch: ``kind`` (changed-row, changed-blob, missing-blob, missing-run,
    orphan-rows, broken-chain, unsealed-run, anchor, damaged-database, damaged-fts,
    damaged-index, missing-record, changed-tombstone, access-log-changed,
    access-log-missing-rows, access-log-broken), ``where`` names the row, ``detail`` says
    what is wrong."""

    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass
class VerifyReport:
    """``problems``: what is damaged or was changed; ``findings``: what a sync missed."""

    problems: list[Problem] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    chain_head: dict[str, Any] | None = None
    purges: list[dict[str, Any]] = field(default_factory=list)
    governance_head: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def complete(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "complete": self.complete}


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def verify(
    archive: Archive,
    *,
    anchor: str | None = None,
    index_path: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> VerifyReport:
    """Check everything; each mismatch is one ``Problem``, each gap one ``Finding``.

    Reads only. ``index_path``: the search index to check, if it exists.
    """
    report = VerifyReport()
    try:
        damage = queries.integrity_check(archive, 100)
    except sqlite3.DatabaseError as ex:
        damage = [(str(ex),)]
    if damage != [("ok",)]:
        more = f" (and {len(damage) - 1}{'+' if len(damage) >= 100 else ''} more)"
        more = more if len(damage) > 1 else ""
        report.problems.append(
            Problem(
                "damaged-database",
                archive.path,
                f"SQLite's integrity check: {damage[0][0]}{more}; restore it from a backup",
            )
        )
        report.notes.append("the other checks were skipped: nothing read from it can be trusted")
        return report
    _emit(progress, "database", report)
    if "digest" not in queries.table_columns(archive, "sync_runs"):
        raise ArchiveError(
            f"{archive.path} predates the digest chain: run `groupsync sync` once to upgrade it"
        )
    bad = _check_versions(archive, report)
    _emit(progress, "post_versions", report)
    _check_posts(archive, report, bad)
    _emit(progress, "posts", report)
    _check_blobs(archive, report)
    _emit(progress, "blobs", report)
    _check_chain(archive, report, anchor)
    _emit(progress, "sync_runs", report)
    if governance_queries.has_governance(archive):
        _check_governance(archive, report)
        _emit(progress, "governance", report)
    _check_access_log(archive, report)
    _check_fts(archive, report)
    _emit(progress, "fts", report)
    if index_path is not None and Path(index_path).exists():
        _check_index(archive, Path(index_path), report)
        _emit(progress, "index", report)
    report.findings = audit(archive, report.checked)
    _emit(progress, "audit", report)
    return report


def _emit(
    progress: Callable[[dict[str, Any]], None] | None, stage: str, report: VerifyReport
) -> None:
    if progress is not None:
        progress({"stage": stage, "problems": len(report.problems), **report.checked})


def _check_versions(archive: Archive, report: VerifyReport) -> set[tuple[str, str]]:
    """Every version's hash; returns the versions found changed."""
    bad: set[tuple[str, str]] = set()
    count = unchained = 0
    for post_id, change_key, text, sha256, run_id in queries.version_rows(archive):
        count += 1
        where = f"post_versions (post {post_id}, changeKey {change_key})"
        if run_id is None:
            unchained += 1
        actual = hashlib.sha256((text or "").encode("utf-8")).hexdigest()
        problem = None
        if actual != sha256:
            problem = f"its JSON hashes to {actual}, recorded {sha256}"
        else:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                problem = "its JSON does not parse"
            elif data.get("id") != post_id or (data.get("changeKey") or "") != change_key:
                problem = "its JSON is of another post or version"
        if problem is not None:
            report.problems.append(Problem("changed-row", where, problem))
            bad.add((post_id, change_key))
    report.checked["post_versions"] = count
    if unchained:
        report.notes.append(f"{unchained} post version(s) belong to no sync run (not chained)")
    return bad


def _check_posts(archive: Archive, report: VerifyReport, bad: set[tuple[str, str]]) -> None:
    count = 0
    purged: dict[str, tuple[str | None, int | None]] = {}
    tombstoned: set[tuple[str, str | None, int]] = set()
    if governance_queries.has_governance(archive):
        purged = {p: (k, n) for p, k, n in governance_queries.purged_posts(archive)}
        tombstoned = {
            (row[2], row[3], row[0])
            for row in governance_queries.purged_item_rows(archive)
            if row[1] == "post"
        }
    for post_id, change_key, text, *values in queries.post_rows_with_version(archive, _POST_FIELDS):
        count += 1
        where = f"posts (post {post_id})"
        if post_id in purged:
            _check_purged_post(post_id, purged[post_id], text, values, tombstoned, report)
            continue
        if text is None:
            report.problems.append(
                Problem("changed-row", where, f"no stored version has its changeKey {change_key}")
            )
            continue
        if (post_id, change_key) in bad:
            continue  # the version is what changed: reported once, there
        version = json.loads(text)
        differ = []
        for column, value in zip(_POST_FIELDS, values, strict=True):
            expected = _dig(version, _POST_FIELDS[column])
            if column.endswith("_address") and isinstance(expected, str):
                expected = expected.lower() or None
            if value != expected:
                differ.append(column)
        if differ:
            report.problems.append(
                Problem(
                    "changed-row",
                    where,
                    f"{', '.join(differ)} differ(s) from its version {change_key}",
                )
            )
    report.checked["posts"] = count


# What a purge empties in a post's row (of the columns checked against its version).
_PURGED_EMPTY = ("body_content", "body_contentType", "from_address", "sender_address")


def _check_purged_post(
    post_id: str,
    mark: tuple[str | None, int | None],
    text: str | None,
    values: list[Any],
    tombstoned: set[tuple[str, str | None, int]],
    report: VerifyReport,
) -> None:
    """A purged post: no version left, no content left, and its tombstone in its purge."""
    where = f"posts (post {post_id})"
    change_key, purge_id = mark
    if purge_id is None or (post_id, change_key, purge_id) not in tombstoned:
        report.problems.append(
            Problem(
                "changed-tombstone",
                where,
                f"marked purged by purge {purge_id}, which has no tombstone of it",
            )
        )
    if text is not None:
        report.problems.append(
            Problem("changed-row", where, "marked purged, yet its version is still stored")
        )
    full = [c for c, v in zip(_POST_FIELDS, values, strict=True) if c in _PURGED_EMPTY and v]
    if full:
        report.problems.append(
            Problem("changed-row", where, f"marked purged, yet {', '.join(full)} hold(s) data")
        )


def _check_blobs(archive: Archive, report: VerifyReport) -> None:
    count = total = unchained = 0
    for sha256, size, run_id in queries.blob_rows(archive):
        count += 1
        unchained += run_id is None
        digest = hashlib.sha256()
        length = 0
        for chunk in archive.iter_blob(sha256):
            digest.update(chunk)
            length += len(chunk)
        total += length
        if digest.hexdigest() != sha256 or length != size:
            report.problems.append(
                Problem(
                    "changed-blob",
                    f"blobs ({sha256})",
                    f"its {length} bytes hash to {digest.hexdigest()} (recorded size {size})",
                )
            )
    for post_id, attachment_id, name, sha256 in queries.attachments_without_blob(archive):
        report.problems.append(
            Problem(
                "missing-blob",
                f"attachments (post {post_id}, attachment {attachment_id})",
                f"{name!r} points at blob {sha256}, which is not in blobs",
            )
        )
    report.checked["blobs"] = count
    report.checked["blob_bytes"] = total
    report.checked["attachments"] = queries.count_attachments(archive)
    if unchained:
        report.notes.append(f"{unchained} blob(s) belong to no sync run (outbox attachments)")


def _check_chain(archive: Archive, report: VerifyReport, anchor: str | None) -> None:
    runs = queries.run_rows(archive)
    report.checked["sync_runs"] = len(runs)
    known = {r[0] for r in runs}
    for table in queries.CHAINED_TABLES:
        for run_id, rows in queries.rows_per_run(archive, table):
            if run_id not in known:
                report.problems.append(
                    Problem(
                        "orphan-rows",
                        f"{table} (sync run {run_id})",
                        f"{rows} row(s) were written by sync run {run_id}, "
                        "which is not in sync_runs",
                    )
                )
    expected_id = 1
    prev_id, prev_digest = None, GENESIS
    last_sealed = max((r[0] for r in runs if r[2] is not None), default=0)
    digests = set()
    for run_id, status, digest, stored_prev, items_count in runs:
        if run_id > expected_id:
            gap = (
                f"row {expected_id}" if run_id - expected_id == 1
                else f"rows {expected_id} to {run_id - 1}"
            )  # fmt: skip
            report.problems.append(
                Problem("missing-run", f"sync_runs {gap}", "deleted: the run ids jump there")
            )
        expected_id = run_id + 1
        where = f"sync_runs (run {run_id})"
        if digest is None:
            if run_id < last_sealed:
                report.problems.append(
                    Problem("unsealed-run", where, "has no digest, yet later runs do")
                )
            else:
                report.notes.append(
                    f"run {run_id} ({status}) is not sealed yet; the next sync seals it"
                )
            continue
        if stored_prev != prev_digest:
            after = f"run {prev_id}" if prev_id is not None else "the start of the chain"
            report.problems.append(
                Problem(
                    "broken-chain",
                    where,
                    f"does not follow {after}: its prev_digest is not that run's digest",
                )
            )
        items = list(archive.run_items(run_id))
        actual = chain_digest(stored_prev or GENESIS, run_id, items)
        if actual != digest:
            report.problems.append(
                Problem(
                    "broken-chain",
                    where,
                    f"its {len(items)} item(s) (sealed with {items_count}) no longer hash to "
                    "its digest: a post version or blob of this run was changed, added or "
                    "removed",
                )
            )
        digests.add(digest)
        prev_id, prev_digest = run_id, digest
    if prev_id is not None:
        report.chain_head = {"run_id": prev_id, "digest": prev_digest}
    if anchor is not None and anchor.strip().lower() not in digests:
        report.problems.append(
            Problem(
                "anchor",
                "sync_runs",
                f"no sealed run has the digest {anchor}: the history up to it was rewritten, "
                "or it is another archive's",
            )
        )


def _check_governance(archive: Archive, report: VerifyReport) -> None:
    """The governance log's chain, replayed against the policies, holds and purges it
    records, and each purge's tombstones against the digest it was sealed with."""
    from .purge import items_sha256

    records = governance_queries.records(archive)
    report.checked["governance_records"] = len(records)
    prev_digest, expected = GENESIS, 1
    policies: dict[int, dict[str, Any]] = {}
    holds: dict[int, dict[str, Any]] = {}
    purges: dict[int, dict[str, Any]] = {}
    for record_id, at, actor, action, text, stored_prev, digest in records:
        where = f"governance_log (record {record_id})"
        if record_id > expected:
            gap = f"{expected}" if record_id - expected == 1 else f"{expected} to {record_id - 1}"
            report.problems.append(
                Problem("missing-record", f"governance_log {gap}", "deleted: the ids jump there")
            )
        expected = record_id + 1
        if stored_prev != prev_digest:
            report.problems.append(
                Problem("broken-chain", where, "its prev_digest is not the previous record's")
            )
        if governance_digest(stored_prev, record_id, at, actor, action, text) != digest:
            report.problems.append(
                Problem("broken-chain", where, "no longer hashes to its digest: it was edited")
            )
        prev_digest = digest
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if action == "retention-set":
            policies[data.get("policy")] = {"group_id": data.get("group_id"),
                                            "keep": data.get("keep"), "set_by": actor,
                                            "set_at": at, "cleared_by": None,
                                            "cleared_at": None}  # fmt: skip
        elif action == "retention-clear" and data.get("policy") in policies:
            policies[data["policy"]].update(cleared_by=actor, cleared_at=at)
        elif action == "hold-create":
            holds[data.get("hold")] = {**{k: data.get(k) for k in ("name", "note", "query",
                                       "from_date", "to_date")},
                                       "groups": data.get("groups") or [],
                                       "custodians": data.get("custodians") or [],
                                       "created_by": actor, "created_at": at,
                                       "released_by": None, "released_at": None}  # fmt: skip
        elif action == "hold-release" and data.get("hold") in holds:
            holds[data["hold"]].update(released_by=actor, released_at=at)
        elif action == "purge":
            purges[data.get("purge")] = data
    if records:
        report.governance_head = {"record_id": records[-1][0], "digest": prev_digest}
    for row in governance_queries.policy_rows(archive):
        _compare(report, "retention_policies", row, policies.pop(row["id"], None))
    for row in governance_queries.hold_rows(archive):
        row = {**row, "groups": json.loads(row["groups"] or "[]"),
               "custodians": json.loads(row["custodians"] or "[]")}  # fmt: skip
        _compare(report, "legal_holds", row, holds.pop(row["id"], None))
    for kind, left in (("retention_policies", policies), ("legal_holds", holds)):
        for row_id in left:
            report.problems.append(
                Problem(
                    "changed-row",
                    f"{kind} (id {row_id})",
                    "the governance log records it, but the row is gone",
                )  # fmt: skip
            )
    _check_purges(archive, report, purges, items_sha256)


def _compare(
    report: VerifyReport, table: str, row: dict[str, Any], logged: dict[str, Any] | None
) -> None:
    where = f"{table} (id {row['id']})"
    if logged is None:
        report.problems.append(
            Problem("missing-record", where, "the governance log has no record of it")
        )
        return
    differ = [k for k, v in logged.items() if row.get(k) != v]
    if differ:
        report.problems.append(
            Problem(
                "changed-row", where, f"{', '.join(differ)} differ(s) from the governance log"
            )  # fmt: skip
        )


def _check_purges(
    archive: Archive,
    report: VerifyReport,
    logged: dict[int, dict[str, Any]],
    items_sha256: Callable[[list[tuple[Any, ...]]], str],
) -> None:
    tombstones: dict[int, list[tuple[Any, ...]]] = {}
    for item in governance_queries.purged_item_rows(archive):
        tombstones.setdefault(item[0], []).append(item)
    rows = governance_queries.purge_rows(archive)
    report.checked["purges"] = len(rows)
    report.checked["tombstones"] = sum(len(v) for v in tombstones.values())
    for row in rows:
        purge_id = row["id"]
        where = f"purges (purge {purge_id})"
        items = tombstones.pop(purge_id, [])
        if row["status"] == "running":
            report.notes.append(
                f"purge {purge_id} was stopped before it was sealed; the next purge seals it "
                "and finishes its work"
            )
            continue
        record = logged.pop(purge_id, None)
        if record is None:
            report.problems.append(
                Problem("missing-record", where, "the governance log has no record of it")
            )
        else:
            fields = ("started_at", "finished_at", "status", "posts", "versions", "blobs",
                      "bytes", "items_sha256")  # fmt: skip
            differ = [f for f in fields if record.get(f) != row[f]]
            if differ:
                report.problems.append(
                    Problem("changed-row", where,
                            f"{', '.join(differ)} differ(s) from its governance record")
                )  # fmt: skip
        actual = items_sha256(items)
        if actual != row["items_sha256"]:
            report.problems.append(
                Problem(
                    "changed-tombstone",
                    where,
                    f"its {len(items)} tombstone(s) hash to {actual}, sealed as "
                    f"{row['items_sha256']}: a tombstone was changed, added or removed",
                )
            )
        report.purges.append(
            {k: row[k] for k in ("id", "started_at", "finished_at", "status", "actor",
                                 "posts", "versions", "blobs", "bytes", "items_sha256")}
            | {"policies": json.loads(row["policies"] or "[]"),
               "holds": [h.get("name") for h in json.loads(row["holds"] or "[]")]}
        )  # fmt: skip
    for purge_id in logged:
        report.problems.append(
            Problem(
                "changed-row",
                f"purges (purge {purge_id})",
                "the governance log records it, but the row is gone",
            )  # fmt: skip
        )
    for purge_id, items in tombstones.items():
        report.problems.append(
            Problem("orphan-rows", f"purged_items (purge {purge_id})",
                    f"{len(items)} tombstone(s) of purge {purge_id}, which is not in purges")
        )  # fmt: skip


def _check_access_log(archive: Archive, report: VerifyReport) -> None:
    """The access log's chain, and its newest rows against the last sync run's seal."""
    problems, checked, head = check_access_log(archive)
    report.problems.extend(Problem(p.kind, p.where, p.detail) for p in problems)
    report.checked["access_log"] = checked
    if head is not None:
        report.notes.append(f"access log: {checked} row(s), head {head}")


def _check_fts(archive: Archive, report: VerifyReport) -> None:
    """FTS5's own integrity check of each full-text table (see ``queries.fts_checks``)."""
    if archive.path == ":memory:":
        return
    count = 0
    for name, indexed, error in queries.fts_checks(archive):
        count += 1
        if error is not None:
            report.problems.append(
                Problem(
                    "damaged-fts",
                    f"{name} (full-text index of {indexed})",
                    f"FTS5's integrity check: {error}; rebuild it with "
                    f"INSERT INTO {name}({name}) VALUES('rebuild')",
                )
            )
    report.checked["fts_tables"] = count


def _check_index(archive: Archive, index_path: Path, report: VerifyReport) -> None:
    """The search index against the posts: only what an update would not heal is damage."""
    from .search import check_index  # Whoosh is loaded only when there is an index

    check = check_index(archive, index_path)
    report.checked["index_documents"] = check.documents
    if not check.exists:
        report.problems.append(
            Problem(
                "damaged-index",
                str(index_path),
                "not a search index (no state file or no Whoosh table of contents); "
                "run groupsync index --rebuild",
            )
        )
    elif check.damaged:
        if check.error is not None:
            detail = f"cannot be read: {check.error}"
        else:
            counts = [
                f"{len(ids)} {name}"
                for name, ids in (("missing", check.missing), ("stale", check.stale),
                                  ("extra", check.extra), ("duplicated", check.duplicates))
                if ids
            ]  # fmt: skip
            detail = (
                f"{check.documents} documents for {check.posts} posts"
                + (f" ({', '.join(counts)})" if counts else "")
                + f"; index at change {check.index_seq}, archive at {check.archive_seq}"
            )
        report.problems.append(
            Problem("damaged-index", str(index_path), f"{detail}; run groupsync index --rebuild")
        )
    elif check.pending:
        report.notes.append(
            f"the search index is {len(check.pending)} post(s) behind the archive; "
            "the next sync or groupsync index catches up"
        )


def loose_permissions(db_path: str | Path) -> list[tuple[str, int]]:
    """The archive's files (database, -wal, -shm) that group or others may read or write:
    ``(path, mode)`` each. Mail is private; so is its archive."""
    found = []
    for suffix in ("", "-wal", "-shm"):
        path = f"{db_path}{suffix}"
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue
        if mode & 0o066:
            found.append((path, mode))
    return found
