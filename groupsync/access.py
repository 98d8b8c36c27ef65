"""The access log: one chained row per search, thread view, attachment download, export and
hold or policy change, from the command line and from Datasette.

Other parts call ``log_access``; ``iter_access_log`` reads it (``groupsync access-log``),
``check_access_log`` is what ``verify`` runs. The rows live beside the archive in
``<db>.access`` (see ``archive.access_log`` for why there and how they are chained), or in
the file ``GROUPSYNC_ACCESS_LOG`` names (for a read-only evidence copy, whose folder cannot
take the file). A compliance log must not miss an access in silence: when the log cannot be
written the access is refused (``AccessLogError``, one line), unless ``GROUPSYNC_ACCESS_LOG``
is ``off``, which every command then says on stderr.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archive import Archive, utc_now
from .archive.access_log import GENESIS, AccessLogFile, access_digest, default_access_log_path
from .errors import ArchiveError
from .files import can_write

__all__ = [
    "ACTIONS",
    "ORIGINS",
    "AccessLogError",
    "AccessProblem",
    "access_log_head",
    "access_log_path",
    "check_access_log",
    "iter_access_log",
    "log_access",
    "logging_off",
]

ENV = "GROUPSYNC_ACCESS_LOG"
OFF = "off"
# What a row's action says; ``target`` holds, in the same order: the query text, the thread
# id (group id / thread id), the attachment's SHA-256, the export's id (and folder), the
# hold's name, the policy's group (or "*").
ACTIONS = ("search", "thread", "download", "export", "hold", "policy")
ORIGINS = ("cli", "web")

_OPEN: dict[str, AccessLogFile] = {}
_OPEN_LOCK = threading.Lock()


class AccessLogError(ArchiveError):
    """The access log cannot be written (or read): the access it would record is refused."""


def logging_off() -> bool:
    """True when ``GROUPSYNC_ACCESS_LOG=off``: accesses go unrecorded (said on stderr)."""
    return os.environ.get(ENV, "").strip().lower() == OFF


def access_log_path(db: str | os.PathLike[str]) -> str:
    """The access log of archive ``db``: ``GROUPSYNC_ACCESS_LOG`` if set, else ``<db>.access``."""
    configured = os.environ.get(ENV, "").strip()
    if configured and configured.lower() != OFF:
        return configured
    return default_access_log_path(db)


def _db_path(where: Archive | str | os.PathLike[str]) -> str:
    return where.path if isinstance(where, Archive) else os.fspath(where)


def _log_file(path: str) -> AccessLogFile:
    """One open file per path and process: a server appends many rows."""
    with _OPEN_LOCK:
        found = _OPEN.get(path)
        if found is None:
            if not can_write(path) or not can_write(Path(path).resolve().parent):
                raise AccessLogError(
                    f"cannot write the access log {path} (read-only here); set {ENV} to a "
                    f"writable file to log there, or {ENV}=off to read without logging"
                )
            try:
                found = AccessLogFile(path)
            except (OSError, sqlite3.Error) as ex:
                raise AccessLogError(f"cannot write the access log {path}: {ex}") from None
            _OPEN[path] = found
        return found


def ensure_writable(where: Archive | str | os.PathLike[str]) -> None:
    """Refuse now (``AccessLogError``) if an access could not be logged: called before
    anything is read, so nothing is shown that the log does not hold."""
    if not logging_off():
        _log_file(access_log_path(_db_path(where)))


def log_access(
    where: Archive | str | os.PathLike[str],
    actor: str,
    action: str,
    target: str | None,
    count: int | None,
    origin: str,
) -> dict[str, Any] | None:
    """Append one row to the access log of the archive ``where`` (an ``Archive`` or its
    path); the row as stored, or None when logging is off.

    ``actor``: ``config.cli_actor()`` on the command line, the logged-in actor's id in
    Datasette. ``action``: one of ``ACTIONS``. ``target``: what was accessed (see
    ``ACTIONS``). ``count``: how many results (hits, posts, files); None where none apply.
    ``origin``: ``cli`` or ``web``. Raises ``AccessLogError`` when the row cannot be written.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown access action {action!r}")
    if origin not in ORIGINS:
        raise ValueError(f"unknown access origin {origin!r}")
    if logging_off():
        return None
    path = access_log_path(_db_path(where))
    log = _log_file(path)
    try:
        return log.append(utc_now(), actor, action, target, count, origin)
    except sqlite3.Error as ex:
        raise AccessLogError(f"cannot write the access log {path}: {ex}") from None


def close_access_logs() -> None:
    """Close the files ``log_access`` opened (tests, and a server shutting down)."""
    with _OPEN_LOCK:
        for log in _OPEN.values():
            log.close()
        _OPEN.clear()


def iter_access_log(
    db: str | os.PathLike[str],
    *,
    since: str | None = None,
    actor: str | None = None,
    action: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows, oldest first, filtered; nothing if there is no log yet."""
    path = access_log_path(db)
    if not os.path.exists(path):
        return
    try:
        with AccessLogFile(path, readonly=True) as log:
            yield from log.rows(since=since, actor=actor, action=action)
    except sqlite3.Error as ex:
        raise AccessLogError(f"cannot read the access log {path}: {ex}") from None


def access_log_head(db: str | os.PathLike[str]) -> tuple[int, str] | None:
    """The newest row's id and digest: what to note down to anchor the log elsewhere."""
    path = access_log_path(db)
    if not os.path.exists(path):
        return None
    with AccessLogFile(path, readonly=True) as log:
        return log.head()


@dataclass
class AccessProblem:
    """One way the access log differs from its chain or from the archive's seal."""

    kind: str  # access-log-changed, access-log-missing-rows, access-log-broken
    where: str
    detail: str


def check_access_log(archive: Archive) -> tuple[list[AccessProblem], int, str | None]:
    """Recompute the chain of the archive's access log and compare its newest rows with
    the latest seal a sync run recorded. Problems, rows checked, and the head digest."""
    path = access_log_path(archive.path)
    seal = archive.access_log_seal()
    problems: list[AccessProblem] = []
    if not os.path.exists(path):
        if seal is not None:
            problems.append(AccessProblem(
                "access-log-missing-rows", path,
                f"the file is gone; sync run {seal['sync_run_id']} sealed {seal['rows']} "
                "row(s) of it",
            ))  # fmt: skip
        return problems, 0, None
    try:
        with AccessLogFile(path, readonly=True) as log:
            rows = list(log.rows())
    except sqlite3.Error as ex:
        return [AccessProblem("access-log-broken", path, f"unreadable: {ex}")], 0, None
    expected, prev = 1, GENESIS
    for row in rows:
        where = f"{path} (row {row['id']})"
        if row["id"] != expected:
            gap = f"row {expected}" if row["id"] - expected == 1 else (
                f"rows {expected} to {row['id'] - 1}")  # fmt: skip
            problems.append(AccessProblem("access-log-missing-rows", f"{path} ({gap})",
                                          "deleted: the row ids jump there"))  # fmt: skip
        if row["prev_digest"] != prev:
            problems.append(AccessProblem(
                "access-log-changed", where, "its prev_digest is not the previous row's digest"
            ))  # fmt: skip
        if access_digest(row["prev_digest"], row) != row["digest"]:
            problems.append(AccessProblem(
                "access-log-changed", where, "its content no longer hashes to its digest"
            ))  # fmt: skip
        expected, prev = row["id"] + 1, row["digest"]
    if seal is not None:
        sealed = next((r for r in rows if r["id"] == seal["rows"]), None)
        if sealed is None:
            problems.append(AccessProblem(
                "access-log-missing-rows", path,
                f"sync run {seal['sync_run_id']} sealed {seal['rows']} row(s); the log has "
                f"{len(rows)}: its newest rows were deleted",
            ))  # fmt: skip
        elif sealed["digest"] != seal["head"]:
            problems.append(AccessProblem(
                "access-log-changed", f"{path} (row {seal['rows']})",
                f"is not the row sync run {seal['sync_run_id']} sealed",
            ))  # fmt: skip
    return problems, len(rows), (rows[-1]["digest"] if rows else None)
