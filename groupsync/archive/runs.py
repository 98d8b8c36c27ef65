"""Sync state, sync runs and their seals: each finished run's digest chains to the one
before it, so ``verify`` can tell that no stored version or blob was changed since."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ArchiveError
from .access_log import AccessLogFile, default_access_log_path
from .connection import Connection
from .values import json_or_none, utc_now

GENESIS = "0" * 64  # what the first sync run's digest chains to
CHAIN_VERSION = "groupsync-chain/1"


def chain_digest(prev: str, run_id: int, items: Iterable[str]) -> str:
    """A sync run's digest: SHA-256 of the UTF-8 text

    ``groupsync-chain/1\n<run id>\n<previous run's digest>\n`` followed by one line per item,
    sorted, each ending in ``\n``: ``b <sha256> <size>`` per blob the run stored first and
    ``v <sha256> <post id> <changeKey>`` per post version it stored. Changing, adding or
    removing any of them, or a run in between, changes every later digest.
    """
    digest = hashlib.sha256(f"{CHAIN_VERSION}\n{run_id}\n{prev}\n".encode())
    for line in sorted(items):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


class Runs(Connection):
    """The ``_sync_state`` and ``sync_runs`` tables of an archive."""

    # -- sync state and runs --------------------------------------------------------------

    def sync_state(self, group_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT watermark, last_incremental_at, last_full_at, early_stop, missed_changes "
            "FROM _sync_state WHERE group_id = :group_id",
            {"group_id": group_id},
        ).fetchone()
        keys = ("watermark", "last_incremental_at", "last_full_at", "early_stop", "missed_changes")
        if row is None:
            return dict(zip(keys, (None, None, None, 1, 0), strict=True))
        return dict(zip(keys, row, strict=True))

    def save_sync_state(self, group_id: str, **values: Any) -> None:
        allowed = {"watermark", "last_incremental_at", "last_full_at", "early_stop"}
        unknown = set(values) - allowed - {"missed_changes"}
        if unknown:
            raise ArchiveError(f"unknown sync state {sorted(unknown)}")
        self.conn.execute(
            "INSERT INTO _sync_state (group_id) VALUES (:group_id) "
            "ON CONFLICT(group_id) DO NOTHING",
            {"group_id": group_id},
        )
        for key, value in values.items():
            self.conn.execute(
                f"UPDATE _sync_state SET {key} = :value WHERE group_id = :group_id",
                {"value": value, "group_id": group_id},
            )

    def add_missed_changes(self, group_id: str, count: int) -> None:
        """Count changes an early-stopping incremental sync missed (a full pass found them)."""
        self.conn.execute(
            "UPDATE _sync_state SET missed_changes = missed_changes + :count "
            "WHERE group_id = :group_id",
            {"count": count, "group_id": group_id},
        )

    def start_run(self, mode: str, groups: list[str], identity: str | None, now: str) -> int:
        """A new run; runs left ``running`` by a killed process are sealed as interrupted."""
        with self.atomic():
            self.conn.execute(
                "UPDATE sync_runs SET status = 'interrupted' WHERE status = 'running'"
            )
            self.seal_runs(now)
            cursor = self.conn.execute(
                "INSERT INTO sync_runs (started_at, status, mode, groups, identity) "
                "VALUES (:now, 'running', :mode, :groups, :identity)",
                {"now": now, "mode": mode, "groups": json_or_none(groups), "identity": identity},
            )
        return int(cursor.lastrowid or 0)

    def update_run(self, run_id: int, **values: Any) -> None:
        """Counters and the outcome of a run; committed at once so a kill keeps them."""
        if not values:
            return
        columns = ", ".join(f"{k} = :{k}" for k in values)
        with self.atomic():
            self.conn.execute(
                f"UPDATE sync_runs SET {columns} WHERE id = :run_id", {**values, "run_id": run_id}
            )

    def finish_run(self, run_id: int, **values: Any) -> str | None:
        """A run's outcome and counters, and its seal (digest), in one transaction."""
        if "status" in values and values["status"] == "running":
            raise ArchiveError("a finished run needs a final status")
        with self.atomic():
            self.update_run(run_id, **values)
            self.seal_runs(values.get("finished_at") or utc_now())
            self.seal_access_log(run_id, values.get("finished_at") or utc_now())
        return self._one("SELECT digest FROM sync_runs WHERE id = :id", {"id": run_id})

    def seal_access_log(self, run_id: int, now: str) -> tuple[int, str] | None:
        """Record the access log's newest row (``<db>.access``) with this run, so that
        ``verify`` notices rows, or the whole file, deleted since. Call inside a transaction."""
        if self.path == ":memory:" or not os.path.exists(default_access_log_path(self.path)):
            return None
        with AccessLogFile(default_access_log_path(self.path), readonly=True) as log:
            head = log.head()
        if head is None:
            return None
        self.conn.execute(
            "INSERT OR REPLACE INTO access_log_seals (sync_run_id, sealed_at, rows, head) "
            "VALUES (:run_id, :now, :rows, :head)",
            {"run_id": run_id, "now": now, "rows": head[0], "head": head[1]},
        )
        return head

    def access_log_seal(self) -> dict[str, Any] | None:
        """The latest seal of the access log, or None (no run sealed one; an older archive)."""
        if not self._one(
            "SELECT 1 FROM sqlite_master WHERE name = 'access_log_seals'"
        ):
            return None
        row = self.conn.execute(
            "SELECT sync_run_id, sealed_at, rows, head FROM access_log_seals "
            "ORDER BY sync_run_id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("sync_run_id", "sealed_at", "rows", "head"), row, strict=True))

    def run_items(self, run_id: int) -> Iterator[str]:
        """The lines a run's digest covers (see ``chain_digest``), unsorted: its stored
        versions and blobs, and the tombstones of those a purge removed."""
        for sha256, size in self.conn.execute(
            "SELECT sha256, size FROM blobs WHERE sync_run_id = :id", {"id": run_id}
        ):
            yield f"b {sha256} {size}"
        for sha256, post_id, change_key in self.conn.execute(
            "SELECT sha256, post_id, changeKey FROM post_versions WHERE sync_run_id = :id",
            {"id": run_id},
        ):
            yield f"v {sha256} {post_id} {change_key}"
        # What a retention purge removed is still part of the run that stored it: its
        # tombstone keeps the same hash, so the run's digest holds after a purge.
        if self._one("SELECT 1 FROM sqlite_master WHERE name = 'purged_items'"):
            for kind, sha256, post_id, key_or_size in self.conn.execute(
                "SELECT kind, sha256, coalesce(post_id, ''), CASE kind WHEN 'blob' THEN size "
                "ELSE changeKey END FROM purged_items "
                "WHERE sync_run_id = :id AND kind IN ('version', 'blob')",
                {"id": run_id},
            ):
                if kind == "blob":
                    yield f"b {sha256} {key_or_size}"
                else:
                    yield f"v {sha256} {post_id} {key_or_size}"

    def seal_runs(self, now: str) -> list[int]:
        """Give every finished run without a digest its digest, oldest first.

        A run is sealed when it finishes; one killed before that (left ``running``, then
        marked ``interrupted`` by the next run's start) is sealed over the rows it did commit.
        Call inside a transaction.
        """
        sealed = []
        unsealed = self.conn.execute(
            "SELECT id FROM sync_runs WHERE digest IS NULL AND status != 'running' ORDER BY id"
        ).fetchall()
        for (run_id,) in unsealed:
            prev = self._one(
                "SELECT digest FROM sync_runs WHERE id < :id AND digest IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                {"id": run_id},
            )
            items = list(self.run_items(run_id))
            self.conn.execute(
                "UPDATE sync_runs SET digest = :digest, prev_digest = :prev, "
                "digest_items = :items, sealed_at = :now WHERE id = :id",
                {
                    "digest": chain_digest(prev or GENESIS, run_id, items),
                    "prev": prev or GENESIS,
                    "items": len(items),
                    "now": now,
                    "id": run_id,
                },
            )
            sealed.append(run_id)
        return sealed

    def chain_head(self) -> tuple[int, str] | None:
        """The latest sealed run and its digest: what to note down to anchor ``verify``."""
        row = self.conn.execute(
            "SELECT id, digest FROM sync_runs WHERE digest IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def run(self, run_id: int) -> dict[str, Any]:
        cursor = self.conn.execute("SELECT * FROM sync_runs WHERE id = :id", {"id": run_id})
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        if row is None:
            raise ArchiveError(f"no sync run {run_id}")
        return dict(zip(names, row, strict=True))
