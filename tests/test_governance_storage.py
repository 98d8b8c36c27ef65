"""Storage of retention policies, legal holds, purges and the governance log, row by row, in
the style of test_archive.py: the exact rows each library call writes, and the log's digests
recomputed here with nothing but hashlib."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from groupsync import holds, retention
from groupsync.archive import GENESIS
from groupsync.purge import items_sha256, purge
from groupsync.retention import cutoff, parse_keep, parse_time

from .conftest import ENGINEERING, MARKETING, copy_sample, new_archive, rows
from .test_archive import table_rows

T1, T2, T3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"


def digest(prev: str, record_id: int, at: str, actor: str, action: str, record: str) -> str:
    text = f"groupsync-governance/1\n{record_id}\n{prev}\n{at}\n{actor}\n{action}\n{record}\n"
    return hashlib.sha256(text.encode()).hexdigest()


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def log_rows(entries: list[tuple[str, str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The governance_log rows the entries ``(at, actor, action, record)`` must make."""
    out, prev = [], GENESIS
    for n, (at, actor, action, record) in enumerate(entries, 1):
        text = canonical(record)
        row_digest = digest(prev, n, at, actor, action, text)
        out.append({"id": n, "at": at, "actor": actor, "action": action, "record": text,
                    "prev_digest": prev, "digest": row_digest})  # fmt: skip
        prev = row_digest
    return out


def test_policies_are_rows_and_records():
    with new_archive() as archive:
        archive.save_group({"id": MARKETING, "displayName": "Marketing"}, T1)
        retention.set_policy(archive, "7Y", actor="os:amy", now=lambda: T1)
        retention.set_policy(archive, "90d", actor="os:bob", group_id=MARKETING, now=lambda: T2)
        retention.set_policy(archive, "10y", actor="os:amy", now=lambda: T2)
        retention.clear_policy(archive, actor="os:cat", group_id=MARKETING, now=lambda: T3)
        assert table_rows(archive, "retention_policies") == [
            {"id": 1, "group_id": None, "keep": "7y", "set_by": "os:amy", "set_at": T1,
             "cleared_by": "os:amy", "cleared_at": T2},
            {"id": 2, "group_id": MARKETING, "keep": "90d", "set_by": "os:bob", "set_at": T2,
             "cleared_by": "os:cat", "cleared_at": T3},
            {"id": 3, "group_id": None, "keep": "10y", "set_by": "os:amy", "set_at": T2,
             "cleared_by": None, "cleared_at": None},
        ]  # fmt: skip
        assert table_rows(archive, "governance_log") == log_rows(
            [
                (T1, "os:amy", "retention-set", {"policy": 1, "group_id": None, "keep": "7y"}),
                (T2, "os:bob", "retention-set", {"policy": 2, "group_id": MARKETING,
                                                 "keep": "90d"}),  # fmt: skip
                (T2, "os:amy", "retention-clear", {"policy": 1}),
                (T2, "os:amy", "retention-set", {"policy": 3, "group_id": None, "keep": "10y"}),
                (T3, "os:cat", "retention-clear", {"policy": 2}),
            ]
        )


def test_holds_are_rows_and_records():
    with new_archive() as archive:
        holds.create_hold(archive, "Matter 7", actor="os:amy", groups=[ENGINEERING, MARKETING],
                          from_date="2024-01-01", to_date="2024-12-31",
                          custodians=["Amy@Example.com"], note="why", now=lambda: T1)  # fmt: skip
        holds.release_hold(archive, "Matter 7", actor="os:bob", now=lambda: T2)
        assert table_rows(archive, "legal_holds") == [
            {"id": 1, "name": "Matter 7", "groups": json.dumps(sorted([ENGINEERING, MARKETING])),
             "query": None, "from_date": "2024-01-01", "to_date": "2024-12-31",
             "custodians": '["amy@example.com"]', "note": "why", "created_by": "os:amy",
             "created_at": T1, "released_by": "os:bob", "released_at": T2},
        ]  # fmt: skip
        created = {"hold": 1, "name": "Matter 7", "note": "why",
                   "groups": sorted([ENGINEERING, MARKETING]), "query": None,
                   "from_date": "2024-01-01", "to_date": "2024-12-31",
                   "custodians": ["amy@example.com"]}  # fmt: skip
        assert table_rows(archive, "governance_log") == log_rows(
            [(T1, "os:amy", "hold-create", created), (T2, "os:bob", "hold-release", {"hold": 1})]
        )


@pytest.mark.parametrize("keep", ["", "7", "y", "0d", "7x", "-1y", "1.5y", "7 years", "123456d"])
def test_a_wrong_keep_is_one_clear_error(keep):
    with pytest.raises(retention.ValidationError, match="d \\(days\\), w \\(weeks\\)"):
        parse_keep(keep)


@pytest.mark.parametrize(
    "keep, now, expected",
    [
        ("90d", "2026-03-31T12:00:00Z", "2025-12-31T12:00:00Z"),
        ("2w", "2026-03-31T12:00:00Z", "2026-03-17T12:00:00Z"),
        ("1m", "2026-03-31T12:00:00Z", "2026-02-28T12:00:00Z"),
        ("1y", "2024-02-29T00:00:00Z", "2023-02-28T00:00:00Z"),
        ("7y", "2026-12-06T01:02:03Z", "2019-12-06T01:02:03Z"),
    ],
)
def test_cutoffs_are_calendar_ones(keep, now, expected):
    assert cutoff(keep, parse_time(now)) == expected


def test_purge_rows_and_tombstones(sample_archive, tmp_path):
    """A purge of one group: the posts keep their ids, changeKey and dates, lose the rest;
    one tombstone per post, version and blob, each with the hash the run chain covers."""
    db = copy_sample(sample_archive, tmp_path / "a.db")
    before = rows(db, "SELECT p.id, p.changeKey, v.sha256, length(CAST(v.json AS BLOB)), "
                      "v.sync_run_id, p.receivedDateTime FROM posts p JOIN post_versions v "
                      "ON v.post_id = p.id WHERE p.group_id = ? ORDER BY p.id", (ENGINEERING,))
    blobs = rows(db, "SELECT b.sha256, b.size, b.sync_run_id FROM blobs b WHERE sha256 IN "
                     "(SELECT sha256 FROM attachments a JOIN posts p ON p.id = a.post_id "
                     " GROUP BY sha256 HAVING max(p.group_id != ?) = 0)", (ENGINEERING,))
    assert before and blobs  # the sample's Engineering group has mail and attachments
    with new_archive(db) as archive:
        retention.set_policy(archive, "1d", actor="os:amy", group_id=ENGINEERING,
                             now=lambda: T1)  # fmt: skip
        report = purge(archive, actor="os:amy", now=lambda: T2)
    assert report.purge_id == 1 and report.posts == len(before)
    items = rows(db, "SELECT purge_id, kind, post_id, changeKey, sha256, size, sync_run_id, "
                     "policy_id, purged_at FROM purged_items ORDER BY id")  # fmt: skip
    expected = []
    for post_id, change_key, sha256, size, run_id, _ in before:
        expected.append((1, "version", post_id, change_key, sha256, size, run_id, 1, T2))
        expected.append((1, "post", post_id, change_key, sha256, size, None, 1, T2))
    expected += [(1, "blob", None, None, sha, size, run, None, T2) for sha, size, run in blobs]
    assert sorted(items, key=repr) == sorted(expected, key=repr)
    items = [row[:-1] for row in items]  # what the purge's items_sha256 covers
    assert rows(db, "SELECT id, changeKey, receivedDateTime, body_content, body_text, "
                    "sender_address, hasAttachments, purged_at, purge_id FROM posts "
                    "WHERE group_id = ? ORDER BY id", (ENGINEERING,)) == [
        (p, k, r, None, None, None, None, T2, 1) for p, k, _s, _n, _r, r in before
    ]  # fmt: skip
    assert rows(db, "SELECT count(*) FROM post_versions v JOIN posts p ON p.id = v.post_id "
                    "WHERE p.group_id = ?", (ENGINEERING,)) == [(0,)]  # fmt: skip
    marks = ",".join("?" * len(blobs))
    assert rows(db, f"SELECT count(*) FROM blobs WHERE sha256 IN ({marks})",
                [b[0] for b in blobs]) == [(0,)]  # fmt: skip
    purge_row = rows(db, "SELECT id, started_at, finished_at, status, actor, policies, holds, "
                         "posts, versions, blobs, bytes, items_sha256 FROM purges")  # fmt: skip
    assert purge_row == [
        (1, T2, T2, "complete", "os:amy",
         json.dumps([{"id": 1, "group_id": ENGINEERING, "keep": "1d"}]), "[]",
         len(before), len(before), len(blobs), sum(b[1] for b in blobs), items_sha256(items))
    ]  # fmt: skip
    record = rows(db, "SELECT action, actor, at, record FROM governance_log WHERE id = 2")
    assert record == [("purge", "os:amy", T2, canonical({
        "purge": 1, "started_at": T2, "finished_at": T2, "status": "complete",
        "policies": [{"id": 1, "group_id": ENGINEERING, "keep": "1d"}], "holds": [],
        "posts": len(before), "versions": len(before), "blobs": len(blobs),
        "bytes": sum(b[1] for b in blobs), "items_sha256": items_sha256(items)}))]  # fmt: skip


def test_items_sha256_is_the_sorted_lines():
    items = [(1, "version", "p", "k", "ab", 10, 3, 1), (1, "blob", None, None, "cd", 5, 2, None)]
    text = "blob - - cd 5 2 -\nversion p k ab 10 3 1\n"
    assert items_sha256(items) == hashlib.sha256(text.encode()).hexdigest()
