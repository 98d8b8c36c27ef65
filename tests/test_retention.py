"""Retention, legal holds and purge through the CLI (in-process, CliRunner) on the sample
archive the real sync built from the simulator; one real process killed mid-purge."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from groupsync import search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.simulator import make_app
from groupsync.terminal import UNSAFE

from . import hostile
from .conftest import (
    ENGINEERING,
    MARKETING,
    SAMPLE_DATA,
    copy_sample,
    generate_tenant,
    read_commands,
    rows,
    sync_archive,
    sync_sample,
)

QUERY = "budget"


@pytest.fixture(autouse=True)
def _close_indexes():
    yield
    search.close_indexes()


def invoke(db: Path, *args: str, actor: str = "os:tester"):
    return CliRunner().invoke(cli, ["--db", str(db), *args], env={"GROUPSYNC_ACTOR": actor})


def ok(db: Path, *args: str):
    result = invoke(db, *args)
    assert result.exit_code == 0, (args, result.output)
    return result


def verify(db: Path) -> dict:
    result = invoke(db, "verify", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code in (0, 4) and report["ok"], report["problems"]
    return report


def verify_problems(db: Path) -> list[dict]:
    result = invoke(db, "verify", "--json")
    assert result.exit_code == 1, result.output
    return json.loads(result.stdout)["problems"]


def dump(db: Path, *, fts: bool = True) -> list[str]:
    """Every row of the file, as SQL; without ``fts``, not FTS5's own shadow rows, which a
    writing command's opening tunes (its merge setting) whatever it then does."""
    conn = sqlite3.connect(db)
    try:
        lines = list(conn.iterdump())
    finally:
        conn.close()
    shadow = ('INSERT INTO "posts_fts_', 'INSERT INTO "threads_fts_')
    return lines if fts else [line for line in lines if not line.startswith(shadow)]


def live_post_ids(db: Path) -> set[str]:
    return {r[0] for r in rows(db, "SELECT id FROM posts WHERE purged_at IS NULL")}


@pytest.fixture
def db(sample_archive, tmp_path) -> Path:
    return copy_sample(sample_archive, tmp_path / "archive.db")


@pytest.fixture
def held(db) -> tuple[Path, set[str]]:
    """The sample archive with a default policy of one day (every post is past it), a hold
    by query and an index: ``(db, ids of the posts the hold covers)``."""
    ok(db, "retention", "set", "--keep", "1d")
    ok(db, "hold", "create", "matter-7", "--query", QUERY, "--note", "matter 7")
    ok(db, "index")
    shown = json.loads(ok(db, "hold", "show", "matter-7", "--json").stdout)
    ids = {p["post_id"] for p in shown["posts"]}
    assert shown["count"] == len(ids) > 0
    assert len(ids) < len(live_post_ids(db))
    return db, ids


def test_without_a_policy_nothing_is_purged(db):
    before = dump(db, fts=False)
    result = ok(db, "purge")
    assert "No retention policy" in result.stderr
    assert dump(db, fts=False) == before


def test_a_hold_by_query_survives_a_purge_then_purges_once_released(held):
    db, ids = held
    assert verify(db)["purges"] == []
    first = ok(db, "purge")
    assert f"{len(ids)} post(s) past retention kept under a legal hold" in first.stderr
    assert live_post_ids(db) == ids  # everything else past its retention went
    report = verify(db)
    assert [p["id"] for p in report["purges"]] == [1]
    assert report["purges"][0]["holds"] == ["matter-7"]
    text = invoke(db, "verify")
    assert text.exit_code == 0 and "Purge 1 (complete)" in text.stderr
    # held posts are still readable, whole; the index still finds them and only them
    with Archive(db, readonly=True) as archive:
        found = search.search(archive, search.index_path_for(db), QUERY, limit=1000)
        assert {h.post_id for h in found.hits} == ids
        assert search.check_index(archive, search.index_path_for(db)).documents == len(ids)
    assert invoke(db, "index", "--check").exit_code == 0
    ok(db, "hold", "release", "matter-7")
    second = ok(db, "purge")
    assert f"removed {len(ids)} post(s)" in second.stderr
    assert live_post_ids(db) == set()
    report = verify(db)
    assert [p["id"] for p in report["purges"]] == [1, 2]
    assert report["checked"]["post_versions"] == 0
    assert invoke(db, "index", "--check").exit_code == 0


def test_a_group_policy_overrides_the_default(db):
    ok(db, "retention", "set", "--keep", "1d")
    ok(db, "retention", "set", "--group", "Engineering", "--keep", "99y")  # resolved by name
    shown = json.loads(ok(db, "retention", "show", "--json").stdout)
    assert [(p["scope"], p["group_id"], p["keep"]) for p in shown] == [
        ("default", None, "1d"), ("group", ENGINEERING, "99y")
    ]  # fmt: skip
    ok(db, "purge")
    left = {r[0] for r in rows(db, "SELECT DISTINCT group_id FROM posts WHERE purged_at IS NULL")}
    assert left == {ENGINEERING}
    ok(db, "retention", "clear", "--group", ENGINEERING)
    ok(db, "purge")
    assert live_post_ids(db) == set()
    policies = rows(db, "SELECT group_id, keep, cleared_by FROM retention_policies ORDER BY id")
    assert policies == [(None, "1d", None), (ENGINEERING, "99y", "os:tester")]
    verify(db)


def test_a_query_hold_without_a_current_index_refuses_the_purge(db):
    ok(db, "retention", "set", "--keep", "1d")
    ok(db, "hold", "create", "q", "--query", QUERY)
    before = dump(db, fts=False)
    result = invoke(db, "purge")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: purge refused"), result.stderr
    assert dump(db, fts=False) == before


def test_dry_run_writes_nothing(held):
    db, ids = held
    before = dump(db)
    result = ok(db, "purge", "--dry-run")
    listed = {line.split()[-1] for line in result.stdout.splitlines()}
    assert listed == {r[0] for r in rows(db, "SELECT id FROM posts")} - ids
    assert "Would remove" in result.stderr
    assert dump(db) == before


def test_purge_is_idempotent(held):
    db, _ = held
    ok(db, "purge")
    before = dump(db, fts=False)
    again = ok(db, "purge")
    assert "Nothing to purge" in again.stderr
    assert dump(db, fts=False) == before  # no new purge row, no governance record


def test_purged_posts_read_as_purged(db):
    group, conversation, thread, post = rows(
        db, "SELECT group_id, conversation_id, thread_id, id FROM posts "
            "WHERE group_id = ? AND hasAttachments = 1 LIMIT 1", (MARKETING,))[0]  # fmt: skip
    ok(db, "retention", "set", "--keep", "1d")
    ok(db, "purge")
    for command in read_commands(group, conversation, thread, post):
        result = invoke(db, *command)
        assert result.exit_code == 0, (command, result.output)
    shown = json.loads(ok(db, "post", group, thread, post).stdout)
    assert shown["body"] == {"contentType": "text", "content": ""}
    assert shown["@groupsync.purged"]["purgeId"] == 1
    table = ok(db, "posts", group, thread, "--table").stdout
    assert "[purged " in table and "by purge 1]" in table


def test_a_sync_does_not_fetch_a_purged_post_again(db, tmp_path):
    ok(db, "retention", "set", "--keep", "1d")
    ok(db, "purge")
    before = rows(db, "SELECT count(*) FROM post_versions")
    sync_sample(make_app(SAMPLE_DATA), db, full=True)
    assert rows(db, "SELECT count(*) FROM post_versions") == before == [(0,)]
    assert rows(db, "SELECT count(*) FROM posts WHERE purged_at IS NULL") == [(0,)]
    verify(db)


def test_verify_catches_a_tampered_tombstone(held):
    db, _ = held
    ok(db, "purge")
    rows(db, "UPDATE purged_items SET sha256 = ? WHERE id = "
             "(SELECT min(id) FROM purged_items WHERE kind = 'version')", ("0" * 64,))  # fmt: skip
    kinds = {p["kind"] for p in verify_problems(db)}
    assert {"changed-tombstone", "broken-chain"} <= kinds


def test_verify_catches_a_removed_purge_record(held):
    db, _ = held
    ok(db, "purge")
    rows(db, "DELETE FROM governance_log WHERE action = 'purge'")
    problems = verify_problems(db)
    assert any(p["kind"] == "missing-record" and "purge 1" in p["where"] for p in problems)


def test_verify_catches_a_removed_purge(held):
    db, _ = held
    ok(db, "purge")
    rows(db, "DELETE FROM purged_items WHERE purge_id = 1")
    rows(db, "DELETE FROM purges")
    kinds = {p["kind"] for p in verify_problems(db)}
    assert {"broken-chain", "changed-row", "changed-tombstone"} <= kinds


@pytest.mark.parametrize("action", ["hold-create", "retention-set"])
def test_verify_catches_a_removed_governance_record(held, action):
    db, _ = held
    rows(db, "DELETE FROM governance_log WHERE action = ?", (action,))
    kinds = {p["kind"] for p in verify_problems(db)}
    assert "missing-record" in kinds


def test_verify_catches_an_edited_hold(held):
    db, _ = held
    rows(db, "UPDATE legal_holds SET query = 'nothing at all'")
    assert any(p["where"] == "legal_holds (id 1)" for p in verify_problems(db))
    rows(db, "UPDATE legal_holds SET query = ?", (QUERY,))
    verify(db)
    rows(db, "UPDATE governance_log SET record = replace(record, 'matter 7', 'matter 8')")
    assert any(p["kind"] == "broken-chain" for p in verify_problems(db))


def printable(output: str) -> bool:
    """No control or bidi character on any line a person sees."""
    return not any(UNSAFE.search(line) for line in output.splitlines())


def test_hostile_text_prints_safely(db):
    cases = [s for s in hostile.ALL if s.strip() and "\x00" not in s][:40]
    for n, text in enumerate(cases):
        for args in (
            ["hold", "create", text[:200]],
            ["hold", "create", f"h{n}", "--note", text],
            ["hold", "create", f"q{n}", "--query", text],
            ["hold", "create", f"c{n}", "--custodian", text],
        ):
            result = invoke(db, *args)
            assert "Traceback" not in result.output, (args, result.output)
            assert printable(result.output), (args, result.output)
            if result.exit_code:
                assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    ok(db, "index")
    listing = ok(db, "hold", "list")
    assert printable(listing.output)
    names = [r[0] for r in rows(db, "SELECT name FROM legal_holds")]
    assert len(names) > len(cases)
    for name in names:
        shown = invoke(db, "hold", "show", name)
        assert shown.exit_code == 0, (name, shown.output)
        assert printable(shown.output), shown.output
    verify(db)


def test_a_policy_for_a_group_not_archived_is_one_line(db):
    result = invoke(db, "retention", "set", "--group", "11111111-2222-3333-4444-555555555555",
                    "--keep", "1y")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: group 11111111-2222-3333-4444-555555555555 is not in the archive: sync it first"
    ]


def test_a_wrong_keep_is_one_line(db):
    result = invoke(db, "retention", "set", "--keep", "7 years")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: --keep takes a number and a unit, d (days), w (weeks), m (months) or y "
        "(years), as 90d or 7y; not '7 years'"
    ]


@pytest.mark.e2e
def test_a_killed_purge_leaves_a_verifiable_archive_and_the_next_finishes(tmp_path):
    tenant = generate_tenant(tmp_path / "tenant", groups=2, threads=40, posts=1500,
                             attachments=60, seed=3)  # fmt: skip
    db = tmp_path / "big.db"
    sync_archive(make_app(tenant), db, joined=True)
    total = rows(db, "SELECT count(*) FROM posts")[0][0]
    ok(db, "retention", "set", "--keep", "1d")
    env = {**os.environ, "GROUPSYNC_DB": str(db), "GROUPSYNC_ACTOR": "os:killer"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "groupsync", "purge", "--batch-size", "5"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = rows(db, "SELECT count(*) FROM purged_items WHERE kind = 'post'")[0][0]
        except sqlite3.OperationalError:  # locked for a moment, or the table not there yet
            continue
        if done >= 50:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 50 <= done < total, "the purge was not caught half-way"
    assert rows(db, "SELECT status FROM purges") == [("running",)]
    report = verify(db)
    assert any("purge 1 was stopped before it was sealed" in n for n in report["notes"])
    ok(db, "purge")
    assert rows(db, "SELECT id, status FROM purges ORDER BY id") == [
        (1, "interrupted"), (2, "complete")
    ]  # fmt: skip
    assert rows(db, "SELECT count(*) FROM posts WHERE purged_at IS NULL") == [(0,)]
    assert rows(db, "SELECT count(*) FROM post_versions") == [(0,)]
    report = verify(db)
    assert [p["status"] for p in report["purges"]] == ["interrupted", "complete"]
    assert sum(p["posts"] for p in report["purges"]) == total


@pytest.mark.asyncio
async def test_datasette_shows_purged_posts_as_purged_and_the_new_tables(held):
    from bs4 import BeautifulSoup
    from datasette.utils import tilde_encode

    from groupsync.datasette_plugin.archives import post_anchor
    from groupsync.datasette_plugin.server import make_datasette

    db, ids = held
    post_text = {r[0]: r[1] for r in rows(db, "SELECT id, body_text FROM posts")}
    ok(db, "purge")
    group, thread, post = rows(
        db, "SELECT group_id, thread_id, id FROM posts WHERE purged_at IS NOT NULL "
            "AND body_text IS NULL ORDER BY id LIMIT 1")[0]  # fmt: skip
    ds = make_datasette(db, immutable=True)
    page = await ds.client.get(f"/-/groupsync/thread/{tilde_encode(group)}/{tilde_encode(thread)}")
    assert page.status_code == 200
    html = BeautifulSoup(page.text, "html.parser")
    article = html.find(id=post_anchor(post))
    assert article is not None and "Removed by retention purge 1" in article.get_text()
    gone = (post_text[post] or "").strip()[:40]
    assert not gone or gone not in article.get_text()
    name = db.stem
    for table in ("retention_policies", "legal_holds", "purges", "purged_items",
                  "governance_log"):  # fmt: skip
        listing = await ds.client.get(f"/{name}/{table}.json?_shape=array")
        assert listing.status_code == 200 and listing.json(), table
    search.close_indexes()


def _addresses(text: str | None) -> set[str]:
    people = json.loads(text) if text else []
    return {(p.get("emailAddress") or {}).get("address", "").lower() for p in people}


def test_hold_criteria_combine_with_and_groups_and_custodians_with_or(db):
    """The posts a hold covers, against the same criteria worked out here in Python: groups
    any of, custodians any of (author, sender, new participant, the thread's To or Cc),
    both dates inclusive."""
    lea = "lea.fontaine@contosooutdoor.onmicrosoft.com"
    omar = "Omar.Haddad@contosooutdoor.onmicrosoft.com"
    ok(db, "hold", "create", "mix", "--group", "Marketing", "--group", ENGINEERING,
       "--custodian", lea, "--custodian", omar, "--from", "2024-01-01", "--to", "2025-03-20")
    shown = json.loads(ok(db, "hold", "show", "mix", "--json").stdout)
    custodians = {lea, omar.lower()}
    expected = set()
    for post_id, group, received, author, sender, new, to, cc in rows(
        db, "SELECT p.id, p.group_id, p.receivedDateTime, p.from_address, p.sender_address, "
            "p.newParticipants, t.toRecipients, t.ccRecipients FROM posts p "
            "JOIN threads t ON t.id = p.thread_id"):  # fmt: skip
        people = {author, sender} | _addresses(new) | _addresses(to) | _addresses(cc)
        if (group in (MARKETING, ENGINEERING) and "2024-01-01" <= received[:10] <= "2025-03-20"
                and people & custodians):  # fmt: skip
            expected.add(post_id)
    assert expected and {p["post_id"] for p in shown["posts"]} == expected
    assert shown["count"] == len(expected)
    assert shown["groups"] == sorted([MARKETING, ENGINEERING])


def test_a_purged_post_edited_upstream_is_stored_again_then_purged_again(db, sim):
    """Only a new changeKey brings a purged post back: a new version, which the next purge
    removes again (its receivedDateTime has not moved)."""
    group, thread, post = rows(db, "SELECT group_id, thread_id, id FROM posts "
                                   "WHERE group_id = ? LIMIT 1", (MARKETING,))[0]  # fmt: skip
    ok(db, "retention", "set", "--keep", "1d")
    ok(db, "purge")
    sim.edit_post(group, thread, post, content="<p>Edited after the purge</p>")
    sync_sample(sim, db, full=True)
    assert rows(db, "SELECT purged_at, purge_id, body_text FROM posts WHERE id = ?", (post,)) == [
        (None, None, "Edited after the purge")
    ]
    assert rows(db, "SELECT count(*) FROM post_versions") == [(1,)]
    verify(db)
    again = ok(db, "purge")
    assert "Purge 2: removed 1 post(s), 1 version(s)" in again.stderr
    assert rows(db, "SELECT purge_id, body_text FROM posts WHERE id = ?", (post,)) == [(2, None)]
    report = verify(db)
    assert [p["posts"] for p in report["purges"]] == [len(rows(db, "SELECT id FROM posts")), 1]


def test_a_production_of_a_hold_loads_back_with_its_posts_families_and_hashes(held, tmp_path):
    """Issue 14's done-when: the hold's posts, each a family, every native's hash true; and
    what a purge leaves of the hold is still produced whole after it."""
    import hashlib

    from .test_production import load_dat

    db, ids = held
    ok(db, "purge")
    out = tmp_path / "production"
    ok(db, "export", "--format", "production", "--hold", "matter-7", "--out", str(out),
       "--prefix", "MAT")  # fmt: skip
    docs = load_dat(out)
    emails = [d for d in docs if d["DOCTYPE"] == "EMAIL"]
    assert {d["POSTID"] for d in emails} == ids
    attachments = rows(
        db, f"SELECT count(*) FROM attachments WHERE post_id IN ({','.join('?' * len(ids))})",
        sorted(ids),
    )[0][0]  # fmt: skip
    assert len(docs) == len(ids) + attachments
    assert {d["FAMILYID"] for d in docs} == {d["BEGBATES"] for d in emails}
    for doc in docs:
        if doc["NATIVEPATH"]:
            data = (out / doc["NATIVEPATH"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == doc["SHA256"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters"]["hold"] == "matter-7"
    for entry in manifest["files"]:
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert invoke(db, "verify", "--export", str(out)).exit_code == 0


def test_hold_is_for_productions_and_not_with_a_query(held, tmp_path):
    db, _ids = held
    for args in (
        ["--format", "jsonl", "--hold", "matter-7"],
        ["--format", "production", "--hold", "matter-7", "--query", "x"],
    ):
        result = invoke(db, "export", "--out", str(tmp_path / "o"), *args)
        assert result.exit_code == 2 and "--hold" in result.output
    result = invoke(db, "export", "--format", "production", "--hold", "nope",
                    "--out", str(tmp_path / "p"))  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
