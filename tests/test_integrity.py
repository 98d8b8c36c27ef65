"""``verify``: clean after syncs; a flipped byte, a missing blob or a deleted run is named."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from groupsync.archive import GENESIS, Archive, chain_digest, utc_now
from groupsync.cli import cli
from groupsync.integrity import verify
from groupsync.migrations import MIGRATIONS
from groupsync.simulator import make_app
from groupsync.sync import Syncer

from .conftest import SAMPLE_DATA
from .test_export import MARKETING, graph_for, sync_into


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Three sealed runs: the first sync, a new post and an attachment, nothing new."""
    db = tmp_path_factory.mktemp("integrity") / "a.db"
    app = make_app(SAMPLE_DATA)
    sync_into(db, app)
    thread = app.state.threads(MARKETING)[0]
    post = app.add_post(
        MARKETING, thread["id"], {"body": {"contentType": "html", "content": "<p>Late</p>"}}
    )
    app.add_attachment(MARKETING, thread["id"], post["id"], "late.bin", "application/x-data",
                       b"\x00late bytes\xff")  # fmt: skip
    sync_into(db, app, full=True)
    sync_into(db, app)
    return db


@pytest.fixture
def db(pristine, tmp_path) -> Path:
    copy = tmp_path / "a.db"
    shutil.copy(pristine, copy)
    return copy


def check(db: Path, **kw):
    with Archive(db, readonly=True) as archive:
        return verify(archive, **kw)


def execute(db: Path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        return conn.execute(sql, params).fetchall()


def kinds(report) -> list[tuple[str, str]]:
    return [(p.kind, p.where) for p in report.problems]


def flip(text: str, at: int) -> str:
    """The same text with one character changed (one byte, for ASCII)."""
    return text[:at] + ("X" if text[at] != "X" else "Y") + text[at + 1 :]


def test_clean_after_sync(db):
    report = check(db)
    assert report.ok, report.problems
    assert report.notes == []
    assert report.checked["post_versions"] == report.checked["posts"] >= 87
    assert report.checked["blobs"] >= 8 and report.checked["sync_runs"] == 3
    runs = execute(db, "select id, digest, prev_digest, digest_items from sync_runs order by id")
    assert runs[0][2] == GENESIS and runs[1][2] == runs[0][1] and runs[2][2] == runs[1][1]
    assert runs[0][3] >= 90 and runs[1][3] == 2 and runs[2][3] == 0  # a version and a blob
    assert report.chain_head == {"run_id": 3, "digest": runs[2][1]}


def test_chain_digest_is_exactly_as_documented(db):
    """Recomputed from the rows with nothing but hashlib: the definition in the README."""
    import hashlib

    (run_id, digest, prev), *_ = execute(
        db, "select id, digest, prev_digest from sync_runs where id = 2"
    )
    lines = [f"b {s} {n}" for s, n in execute(
        db, "select sha256, size from blobs where sync_run_id = 2")]  # fmt: skip
    lines += [
        f"v {s} {p} {k}"
        for s, p, k in execute(
            db, "select sha256, post_id, changeKey from post_versions where sync_run_id = 2"
        )
    ]
    text = f"groupsync-chain/1\n{run_id}\n{prev}\n" + "".join(f"{x}\n" for x in sorted(lines))
    assert hashlib.sha256(text.encode()).hexdigest() == digest == chain_digest(prev, 2, lines)


def test_a_byte_flipped_in_a_version_body_is_named(db):
    post_id, change_key, text = execute(
        db, "select post_id, changeKey, json from post_versions where json like '%<p>Late</p>%'"
    )[0]
    execute(
        db,
        "update post_versions set json = ? where post_id = ?",
        (text.replace("<p>Late</p>", "<p>Lame</p>"), post_id),
    )
    report = check(db)
    assert kinds(report) == [
        ("changed-row", f"post_versions (post {post_id}, changeKey {change_key})")
    ]
    assert "hashes to" in report.problems[0].detail


def test_a_byte_flipped_in_a_post_body_is_named(db):
    post_id, body = execute(
        db, "select id, body_content from posts where body_content like '%Late%'"
    )[0]
    execute(db, "update posts set body_content = ? where id = ?", (flip(body, 4), post_id))
    report = check(db)
    assert kinds(report) == [("changed-row", f"posts (post {post_id})")]
    assert "body_content" in report.problems[0].detail


def test_a_byte_flipped_in_a_blob_is_named(db):
    sha256, rowid, size = execute(db, "select sha256, rowid, size from blobs where size > 100")[0]
    with sqlite3.connect(db) as conn, conn.blobopen("blobs", "content", rowid) as blob:
        blob.seek(size // 2)
        byte = blob.read(1)
        blob.seek(size // 2)
        blob.write(bytes([byte[0] ^ 0x01]))
    report = check(db)
    assert kinds(report) == [("changed-blob", f"blobs ({sha256})")]


def test_a_missing_blob_is_named(db):
    post_id, attachment_id, sha256 = execute(
        db, "select post_id, id, sha256 from attachments where name = 'late.bin'"
    )[0]
    execute(db, "delete from blobs where sha256 = ?", (sha256,))
    report = check(db)
    assert kinds(report) == [
        ("missing-blob", f"attachments (post {post_id}, attachment {attachment_id})"),
        ("broken-chain", "sync_runs (run 2)"),  # the blob was one of run 2's items
    ]


def test_a_deleted_sync_run_is_named(db):
    execute(db, "delete from sync_runs where id = 2")
    report = check(db)
    assert kinds(report) == [
        ("orphan-rows", "post_versions (sync run 2)"),
        ("orphan-rows", "blobs (sync run 2)"),
        ("orphan-rows", "events (sync run 2)"),  # the new post's event
        ("missing-run", "sync_runs row 2"),
        ("broken-chain", "sync_runs (run 3)"),
    ]
    assert "does not follow run 1" in report.problems[-1].detail


def test_a_deleted_first_run_is_named(db):
    execute(db, "delete from sync_runs where id = 1")
    assert ("missing-run", "sync_runs row 1") in kinds(check(db))


def test_a_rewritten_row_with_its_hash_recomputed_breaks_the_chain(db):
    import hashlib

    post_id, text = execute(
        db, "select post_id, json from post_versions where json like '%<p>Late</p>%'"
    )[0]
    forged = text.replace("<p>Late</p>", "<p>Fake</p>")
    execute(
        db,
        "update post_versions set json = ?, sha256 = ? where post_id = ?",
        (forged, hashlib.sha256(forged.encode()).hexdigest(), post_id),
    )
    execute(db, "update posts set body_content = '<p>Fake</p>' where id = ?", (post_id,))
    report = check(db)
    assert kinds(report) == [("broken-chain", "sync_runs (run 2)")]


def test_a_forger_who_reseals_every_run_is_caught_by_an_anchor(db):
    anchor = check(db).chain_head["digest"]
    execute(db, "delete from post_versions where sync_run_id = 2")
    execute(db, "delete from posts where version_count = 1 and body_content like '%Late%'")
    execute(db, "update sync_runs set digest = null")
    with Archive(db) as archive, archive.atomic():
        archive.seal_runs(utc_now())
    assert check(db).ok  # consistent again: only the anchor noted earlier tells
    report = check(db, anchor=anchor)
    assert kinds(report) == [("anchor", "sync_runs")]


def test_a_wiped_digest_before_sealed_runs_is_named(db):
    execute(db, "update sync_runs set digest = null where id = 1")
    assert ("unsealed-run", "sync_runs (run 1)") in kinds(check(db))


def test_a_killed_run_is_sealed_by_the_next_and_the_chain_verifies(db):
    """A run that died mid-way keeps what it committed; the next run seals it first."""
    app = make_app(SAMPLE_DATA)
    thread = app.state.threads(MARKETING)[1]
    with Archive(db) as archive:
        run_id = archive.start_run("incremental", [MARKETING], "killed", utc_now())
        with archive.atomic():
            post = {
                "id": "AAMkADkilled", "changeKey": "CQAAA1", "conversationId": None,
                "receivedDateTime": "2025-06-01T10:00:00Z",
                "body": {"contentType": "text", "content": "written before the kill"},
            }  # fmt: skip
            archive.save_post(MARKETING, thread["id"], post, utc_now(), run_id=run_id)
    report = check(db)
    assert report.ok and report.notes == [f"run {run_id} (running) is not sealed yet; "
                                          "the next sync seals it"]  # fmt: skip
    with Archive(db) as archive, graph_for(app) as graph:
        Syncer(archive, graph).run()
    statuses = execute(
        db, "select id, status, digest_items from sync_runs where id >= ?", (run_id,)
    )
    assert statuses[0] == (run_id, "interrupted", 1)
    assert statuses[1][1] == "complete"
    report = check(db)
    assert report.ok, report.problems
    assert report.chain_head["run_id"] == run_id + 1


def test_an_archive_from_before_the_chain_is_upgraded_and_sealed(db, tmp_path):
    """Migration 004 on an archive synced by an earlier groupsync: the next sync seals it."""
    legacy = tmp_path / "legacy.db"
    old = Database(legacy)
    MIGRATIONS.apply(old, stop_before="004_integrity_events_exports")
    old.execute("ATTACH DATABASE ? AS src", (str(db),))
    for table in ("groups", "conversations", "threads", "people", "sync_runs", "posts",
                  "post_versions", "blobs", "attachments", "_sync_state"):  # fmt: skip
        columns = ", ".join(old[table].columns_dict)
        old.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM src.{table}")
    old.conn.commit()
    old.execute("DETACH DATABASE src")
    old.close()
    with Archive(legacy) as archive:  # migrates
        assert archive.chain_head() is None
    report = check(legacy)
    assert report.ok and len(report.notes) == 3  # three runs, not sealed yet
    blobs = execute(legacy, "select count(*) from blobs where sync_run_id is null")[0][0]
    assert blobs == 0  # attributed to the run of the first version carrying them
    with Archive(legacy) as archive, graph_for(make_app(SAMPLE_DATA)) as graph:
        Syncer(archive, graph).run()
    report = check(legacy)
    assert report.ok and report.notes == [], report
    assert report.chain_head["run_id"] == 4


def test_cli_verify_exit_codes_and_lines(db):
    runner = CliRunner()
    env = {"GROUPSYNC_DB": str(db)}
    result = runner.invoke(cli, ["verify"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "OK" in result.stderr and "chain head run 3" in result.stderr
    execute(db, "delete from sync_runs where id = 2")
    result = runner.invoke(cli, ["verify"], env=env)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "missing-run: sync_runs row 2: deleted: the run ids jump there" in lines
    assert len(lines) == 5 and "5 problem(s)" in result.stderr
    result = runner.invoke(cli, ["verify", "--json"], env=env)
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False
