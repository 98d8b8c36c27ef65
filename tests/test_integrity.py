"""``verify``: clean after syncs; a flipped byte, a missing blob or a deleted run is named;
damage to SQLite's pages, FTS5 or the search index too; the audit finds what a sync missed;
an export is checked against its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

import groupsync.search
from groupsync.archive import GENESIS, Archive, chain_digest, utc_now
from groupsync.audit import Finding
from groupsync.cli import cli
from groupsync.integrity import verify
from groupsync.migrations import MIGRATIONS
from groupsync.simulator import make_app
from groupsync.sync import NOT_READABLE, Syncer, SyncOptions

from .conftest import MARKETING, SAMPLE_DATA, graph_for, rows
from .test_export import run_export, sync_into


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
    runs = rows(db, "select id, digest, prev_digest, digest_items from sync_runs order by id")
    assert runs[0][2] == GENESIS and runs[1][2] == runs[0][1] and runs[2][2] == runs[1][1]
    assert runs[0][3] >= 90 and runs[1][3] == 2 and runs[2][3] == 0  # a version and a blob
    assert report.chain_head == {"run_id": 3, "digest": runs[2][1]}


def test_chain_digest_is_exactly_as_documented(db):
    """Recomputed from the rows with nothing but hashlib: the definition in the README."""
    import hashlib

    (run_id, digest, prev), *_ = rows(
        db, "select id, digest, prev_digest from sync_runs where id = 2"
    )
    lines = [f"b {s} {n}" for s, n in rows(
        db, "select sha256, size from blobs where sync_run_id = 2")]  # fmt: skip
    lines += [
        f"v {s} {p} {k}"
        for s, p, k in rows(
            db, "select sha256, post_id, changeKey from post_versions where sync_run_id = 2"
        )
    ]
    text = f"groupsync-chain/1\n{run_id}\n{prev}\n" + "".join(f"{x}\n" for x in sorted(lines))
    assert hashlib.sha256(text.encode()).hexdigest() == digest == chain_digest(prev, 2, lines)


def test_a_byte_flipped_in_a_version_body_is_named(db):
    post_id, change_key, text = rows(
        db, "select post_id, changeKey, json from post_versions where json like '%<p>Late</p>%'"
    )[0]
    rows(
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
    post_id, body = rows(
        db, "select id, body_content from posts where body_content like '%Late%'"
    )[0]
    rows(db, "update posts set body_content = ? where id = ?", (flip(body, 4), post_id))
    report = check(db)
    assert kinds(report) == [("changed-row", f"posts (post {post_id})")]
    assert "body_content" in report.problems[0].detail


def test_a_byte_flipped_in_a_blob_is_named(db):
    sha256, rowid, size = rows(db, "select sha256, rowid, size from blobs where size > 100")[0]
    with sqlite3.connect(db) as conn, conn.blobopen("blobs", "content", rowid) as blob:
        blob.seek(size // 2)
        byte = blob.read(1)
        blob.seek(size // 2)
        blob.write(bytes([byte[0] ^ 0x01]))
    report = check(db)
    assert kinds(report) == [("changed-blob", f"blobs ({sha256})")]


def test_a_missing_blob_is_named(db):
    post_id, attachment_id, sha256 = rows(
        db, "select post_id, id, sha256 from attachments where name = 'late.bin'"
    )[0]
    rows(db, "delete from blobs where sha256 = ?", (sha256,))
    report = check(db)
    assert kinds(report) == [
        ("missing-blob", f"attachments (post {post_id}, attachment {attachment_id})"),
        ("broken-chain", "sync_runs (run 2)"),  # the blob was one of run 2's items
    ]


def test_a_deleted_sync_run_is_named(db):
    rows(db, "delete from sync_runs where id = 2")
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
    rows(db, "delete from sync_runs where id = 1")
    assert ("missing-run", "sync_runs row 1") in kinds(check(db))


def test_a_rewritten_row_with_its_hash_recomputed_breaks_the_chain(db):
    import hashlib

    post_id, text = rows(
        db, "select post_id, json from post_versions where json like '%<p>Late</p>%'"
    )[0]
    forged = text.replace("<p>Late</p>", "<p>Fake</p>")
    rows(
        db,
        "update post_versions set json = ?, sha256 = ? where post_id = ?",
        (forged, hashlib.sha256(forged.encode()).hexdigest(), post_id),
    )
    rows(db, "update posts set body_content = '<p>Fake</p>' where id = ?", (post_id,))
    report = check(db)
    assert kinds(report) == [("broken-chain", "sync_runs (run 2)")]


def test_a_forger_who_reseals_every_run_is_caught_by_an_anchor(db):
    anchor = check(db).chain_head["digest"]
    rows(db, "delete from post_versions where sync_run_id = 2")
    rows(db, "delete from posts where version_count = 1 and body_content like '%Late%'")
    rows(db, "update sync_runs set digest = null")
    with Archive.open_for_writing(db) as archive, archive.atomic():
        archive.seal_runs(utc_now())
    assert check(db).ok  # consistent again: only the anchor noted earlier tells
    report = check(db, anchor=anchor)
    assert kinds(report) == [("anchor", "sync_runs")]


def test_a_wiped_digest_before_sealed_runs_is_named(db):
    rows(db, "update sync_runs set digest = null where id = 1")
    assert ("unsealed-run", "sync_runs (run 1)") in kinds(check(db))


def test_a_killed_run_is_sealed_by_the_next_and_the_chain_verifies(db):
    """A run that died mid-way keeps what it committed; the next run seals it first."""
    app = make_app(SAMPLE_DATA)
    thread = app.state.threads(MARKETING)[1]
    with Archive.open_for_writing(db) as archive:
        run_id = archive.start_run("incremental", [MARKETING], "killed", utc_now())
        with archive.atomic():
            post = {
                "id": "AAMkADkilled", "changeKey": "CQAAA1", "conversationId": None,
                "receivedDateTime": "2025-06-01T10:00:00Z",
                "body": {"contentType": "text", "content": "written before the kill"},
            }  # fmt: skip
            archive.save_posts(MARKETING, thread["id"], [post], utc_now(), run_id=run_id)
    report = check(db)
    assert report.ok and report.notes == [f"run {run_id} (running) is not sealed yet; "
                                          "the next sync seals it"]  # fmt: skip
    with Archive.open_for_writing(db) as archive, graph_for(app, max_attempts=2) as graph:
        Syncer(archive, graph).run()
    statuses = rows(
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
    with Archive.open_for_writing(legacy) as archive:  # migrates
        assert archive.chain_head() is None
    report = check(legacy)
    assert report.ok and len(report.notes) == 3  # three runs, not sealed yet
    blobs = rows(legacy, "select count(*) from blobs where sync_run_id is null")[0][0]
    assert blobs == 0  # attributed to the run of the first version carrying them
    with (
        Archive.open_for_writing(legacy) as archive,
        graph_for(make_app(SAMPLE_DATA), max_attempts=2) as graph,
    ):
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
    rows(db, "delete from sync_runs where id = 2")
    result = runner.invoke(cli, ["verify"], env=env)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "missing-run: sync_runs row 2: deleted: the run ids jump there" in lines
    assert len(lines) == 5 and "5 problem(s)" in result.stderr
    result = runner.invoke(cli, ["verify", "--json"], env=env)
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


# -- the completeness audit ---------------------------------------------------------------

CHART_BODY = (
    '<p>See the chart:</p><p><IMG SRC=" CID:%3CChart.PNG%4001D26CD8.6C05F070%3E" alt="chart">'
    "</p><p>and the file.</p>"
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[Path, str, str]:
    """The sample tenant plus a post with an inline image (its cid %-encoded, in capitals,
    its Content-ID in another case and in <>) and a file: ``(db, thread id, post id)``."""
    db = tmp_path_factory.mktemp("audit") / "a.db"
    _, thread_id, post_id = audited_tenant(db)
    return db, thread_id, post_id


def audited_tenant(db: Path) -> tuple[Any, str, str]:
    """The simulator behind ``audited``, synced into ``db``: ``(app, thread id, post id)``."""
    app = make_app(SAMPLE_DATA)
    thread = app.state.threads(MARKETING)[0]
    post = app.add_post(MARKETING, thread["id"], {"body": {"contentType": "html",
                                                          "content": CHART_BODY}})  # fmt: skip
    app.add_attachment(MARKETING, thread["id"], post["id"], "chart.png", "image/png",
                       b"\x89PNG chart", is_inline=True,
                       content_id="<chart.png@01d26cd8.6c05f070>")  # fmt: skip
    app.add_attachment(MARKETING, thread["id"], post["id"], "data.csv", "text/csv", b"a,b\n1,2\n")
    sync_into(db, app)
    return app, thread["id"], post["id"]


@pytest.fixture
def adb(audited, tmp_path) -> Path:
    copy = tmp_path / "a.db"
    shutil.copy(audited[0], copy)
    return copy


def test_audit_is_silent_on_the_synced_sample(adb):
    """Two posts of the sample refer to cid:logo@contoso: the first carries it, the second
    is a reply quoting it (no attachment of its own, which the sync noted): neither is a
    gap."""
    report = check(adb)
    assert report.ok and report.complete, (report.problems, report.findings)
    assert report.findings == [] and report.notes == []
    assert report.checked["inline_references"] == 3
    assert report.checked["fts_tables"] == 2


def test_what_the_audit_finds_one_full_sync_repairs(tmp_path):
    """The fix line holds: a lost inline image of a post that keeps its other attachment,
    and a post that lost every attachment, both come back from one sync --full."""
    db = tmp_path / "a.db"
    app, _, post_id = audited_tenant(db)
    rows(db, "delete from attachments where name = 'chart.png'")
    lost = rows(db, "select post_id from attachments where post_id != ? limit 1", (post_id,))
    rows(db, "delete from attachments where post_id = ?", (lost[0][0],))
    assert {f.kind for f in check(db).findings} == {"missing-inline", "missing-attachment"}
    with graph_for(app, max_attempts=2) as graph, Archive.open_for_writing(db) as archive:
        Syncer(archive, graph, options=SyncOptions(full=True)).run()
    report = check(db)
    assert report.ok and report.findings == [], report.findings


def test_a_missing_inline_image_is_found(adb, audited):
    _, thread_id, post_id = audited
    rows(adb, "delete from attachments where name = 'chart.png'")
    report = check(adb)
    assert report.ok  # the rows that remain are intact: only the audit can tell
    fix = f"groupsync sync --full --group {MARKETING}"
    assert report.findings == [
        Finding("missing-inline", MARKETING, thread_id, post_id,
                {"cid": "Chart.PNG@01D26CD8.6C05F070"}, fix)
    ]  # fmt: skip
    assert str(report.findings[0]) == (
        f"missing-inline  group={MARKETING} thread={thread_id} post={post_id} "
        f"cid=Chart.PNG@01D26CD8.6C05F070  fix: {fix}"
    )


def test_a_missing_attachment_is_found_unless_noted_unreadable(adb):
    post_id, thread_id = rows(
        adb, "select p.id, p.thread_id from posts p join attachments a on a.post_id = p.id "
        "where a.name = 'leads-2025-03.csv'"
    )[0]  # fmt: skip
    rows(adb, "delete from attachments where post_id = ?", (post_id,))
    report = check(adb)
    assert report.ok
    assert [(f.kind, f.thread_id, f.post_id) for f in report.findings] == [
        ("missing-attachment", thread_id, post_id)
    ]
    rows(adb, "update posts set attachments_note = ? where id = ?", (NOT_READABLE, post_id))
    assert check(adb).findings == []


def test_a_thread_with_fewer_posts_than_graph_listed_is_found(adb):
    thread_id, listed = rows(
        adb, "select id, post_count from threads where post_count >= 3 order by id limit 1"
    )[0]
    rows(adb, "update posts set deleted_at = '2025-01-01T00:00:00Z' where id = "
                 "(select id from posts where thread_id = ? limit 1)", (thread_id,))  # fmt: skip
    report = check(adb)
    assert [(f.kind, f.thread_id, f.detail) for f in report.findings] == [
        ("post-count", thread_id, {"archived": listed - 1, "graph": listed})
    ]
    rows(adb, "update threads set possibly_truncated = 1 where id = ?", (thread_id,))
    assert check(adb).findings == []  # Graph's count may be short: nothing to compare
    rows(adb, "update threads set possibly_truncated = 0, deleted_at = '2025-01-01' "
                 "where id = ?", (thread_id,))  # fmt: skip
    assert check(adb).findings == []


def test_cli_findings_exit_4_and_mail_text_is_escaped(adb, audited):
    """A cid comes from a body: escape sequences and bidi overrides reach the terminal
    escaped, on the line and in --json."""
    _, thread_id, _ = audited
    app = make_app(SAMPLE_DATA)
    hostile = "evil%1B[2J%E2%80%AEgpj.exe@x"
    body = f'<div style="background: url(cid:{hostile})">hi</div>'
    post = app.add_post(MARKETING, thread_id, {"body": {"contentType": "html", "content": body}})
    sync_into(adb, app)
    # The sync noted that Graph lists no such image; an archive from before it did not.
    assert "lists no attachments" in rows(
        adb, "select attachments_note from posts where id = ?", (post["id"],)
    )[0][0]
    rows(adb, "update posts set attachments_note = null where id = ?", (post["id"],))
    runner = CliRunner()
    result = runner.invoke(cli, ["verify"], env={"GROUPSYNC_DB": str(adb)})
    assert result.exit_code == 4, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("missing-inline  ") and f"post={post['id']}" in line
    assert "cid=evil\\x1b[2J\\u202egpj.exe@x  fix: groupsync sync --full" in line
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "1 finding(s)" in result.stderr
    result = runner.invoke(cli, ["verify", "--json"], env={"GROUPSYNC_DB": str(adb)})
    assert result.exit_code == 4 and "\x1b" not in result.stdout
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["complete"] is False
    assert data["findings"][0]["detail"] == {"cid": "evil\x1b[2J\u202egpj.exe@x"}


# -- damage below the rows ----------------------------------------------------------------


def corrupt_index_page(db: Path, index: str) -> None:
    """Overwrite the cells of an index's root page (found by sqlite_master.rootpage)."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("pragma page_size").fetchone()[0]
        (root,) = conn.execute("select rootpage from sqlite_master where name = ?", (index,))
        conn.execute("pragma wal_checkpoint(truncate)")
    with open(db, "r+b") as f:
        f.seek((root[0] - 1) * page_size)
        page = bytearray(f.read(page_size))
        cells = int.from_bytes(page[5:7], "big") or 65536  # start of the cell content area
        assert cells < page_size
        page[cells:] = b"\xa5" * (page_size - cells)
        f.seek((root[0] - 1) * page_size)
        f.write(page)


def test_a_damaged_index_page_fails_verify_in_one_line(db):
    corrupt_index_page(db, "posts_thread")
    result = CliRunner().invoke(cli, ["verify"], env={"GROUPSYNC_DB": str(db)})
    assert result.exit_code == 1
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"damaged-database: {db}: SQLite's integrity check: ")
    assert "Traceback" not in result.output and "skipped" in result.stderr


def test_a_damaged_header_is_one_line(db):
    with open(db, "r+b") as f:
        f.write(b"not SQLite" * 10)
    result = CliRunner().invoke(cli, ["verify"], env={"GROUPSYNC_DB": str(db)})
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"Error: {db} is not a SQLite database (a groupsync archive is one)"
    )


def test_a_damaged_fts_segment_is_named(db):
    rowid, block = rows(db, "select id, block from posts_fts_data where id > 10 order by id")[1]
    rows(db, "update posts_fts_data set block = ? where id = ?", (block[: len(block) // 2],
                                                                    rowid))  # fmt: skip
    assert kinds(check(db)) == [("damaged-fts", "posts_fts (full-text index of posts)")]


def test_fts_out_of_step_with_its_content_is_named(db):
    """A body_text changed with FTS5 left behind (its trigger gone): no hash covers
    body_text, FTS5's check against the content table does."""
    rows(db, "drop trigger posts_au")
    rows(db, "update posts set body_text = 'zebra quagga' where rowid = 5")
    assert kinds(check(db)) == [("damaged-fts", "posts_fts (full-text index of posts)")]


def test_verify_writes_nothing(db):
    """Read-only, FTS5's INSERT-shaped check included: the database's bytes are the same."""
    with sqlite3.connect(db) as conn:
        conn.execute("pragma wal_checkpoint(truncate)")
    before = hashlib.sha256(db.read_bytes()).hexdigest(), os.stat(db).st_mtime_ns
    files = sorted(os.listdir(db.parent))
    result = CliRunner().invoke(cli, ["verify", "--json"], env={"GROUPSYNC_DB": str(db)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checked"]["fts_tables"] == 2  # both were checked
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), os.stat(db).st_mtime_ns) == before
    assert sorted(os.listdir(db.parent)) == files
    assert os.path.getsize(f"{db}-wal") == 0


def test_the_search_index_is_checked_against_the_archive(db, tmp_path):
    index = tmp_path / "ix"
    with Archive.open_for_writing(db) as archive:
        groupsync.search.update_index(archive, index)
    report = check(db, index_path=index)
    assert report.ok and report.notes == [] and report.checked["index_documents"] >= 87
    # a post changed after the index's last update: the next update heals it, not damage
    rows(db, "update posts set change_seq = 1000000 where rowid = 3")
    report = check(db, index_path=index)
    assert report.ok and report.notes == [
        "the search index is 1 post(s) behind the archive; the next sync or groupsync index "
        "catches up"
    ]
    # a document the index says is current but is not: damage
    rows(db, "update posts set change_seq = 1 where rowid = 3")
    assert kinds(check(db, index_path=index)) == [("damaged-index", str(index))]
    rows(db, "update posts set change_seq = 1000000 where rowid = 3")
    for path in index.glob("*.col"):
        path.write_bytes(b"")  # zeroed columns: every document has the same key
    assert kinds(check(db, index_path=index)) == [("damaged-index", str(index))]
    for path in index.glob("*.trm"):
        path.unlink()  # a segment's terms
    report = check(db, index_path=index)
    assert kinds(report) == [("damaged-index", str(index))]
    assert "cannot be read" in report.problems[0].detail
    shutil.rmtree(index)
    index.mkdir()
    report = check(db, index_path=index)
    assert kinds(report) == [("damaged-index", str(index))]
    assert "not a search index" in report.problems[0].detail


def test_permissions_warning(db):
    env = {"GROUPSYNC_DB": str(db)}
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            path.chmod(0o600)
    result = CliRunner().invoke(cli, ["verify"], env=env)
    assert result.exit_code == 0 and "Warning" not in result.stderr
    db.chmod(0o640)
    result = CliRunner().invoke(cli, ["verify"], env=env)
    assert result.exit_code == 0
    (warning,) = [x for x in result.stderr.splitlines() if x.startswith("Warning")]
    assert f"{db} (0640)" in warning and "chmod 600" in warning


# -- an export against its manifest -------------------------------------------------------


@pytest.fixture
def exported(db, tmp_path) -> Path:
    out = tmp_path / "export"
    run_export(db, out, "eml")
    return out


def verify_export(db: Path, out: Path, *args: str):
    return CliRunner().invoke(
        cli, ["verify", "--export", str(out), *args], env={"GROUPSYNC_DB": str(db)}
    )


def test_a_clean_export_passes(db, exported):
    result = verify_export(db, exported)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "against its manifest: OK" in result.stderr
    data = json.loads(verify_export(db, exported, "--json").stdout)
    assert data["ok"] and data["files"] == len(list(exported.rglob("*.eml"))) >= 87


def test_a_changed_byte_in_an_export_is_named(db, exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    victim = manifest["files"][3]["path"]
    data = bytearray((exported / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (exported / victim).write_bytes(bytes(data))
    result = verify_export(db, exported)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"changed-file: {victim}: {len(data)} bytes hashing to "
        f"{hashlib.sha256(data).hexdigest()}; the manifest says {len(data)} bytes, "
        f"{manifest['files'][3]['sha256']}"
    ]


def test_a_deleted_and_an_extra_file_are_named(db, exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    victim = manifest["files"][0]["path"]
    (exported / victim).unlink()
    result = verify_export(db, exported)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"missing-file: {victim}: is missing"]
    (exported / victim).write_bytes(b"")  # back, but empty
    (exported / "notes\x1b[2J.txt").write_text("added later")
    result = verify_export(db, exported)
    assert result.exit_code == 1
    first, extra = result.stdout.splitlines()
    assert first.startswith(f"changed-file: {victim}: 0 bytes hashing to ")
    assert extra == "extra-file: notes\\x1b[2J.txt: is not in the manifest"


def test_an_export_checked_without_its_archive_ignores_unknown_manifest_keys(db, exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    manifest["failures"] = [{"post_id": "AAMk...", "error": "bytes not readable"}]
    (exported / "manifest.json").write_text(json.dumps(manifest))
    result = verify_export(db.parent / "none.db", exported)
    assert result.exit_code == 0, result.output
    assert "chain head was not looked for" in result.stderr
    # with the archive at hand, the edited manifest no longer hashes as recorded
    result = verify_export(db, exported)
    assert result.exit_code == 1
    assert result.stdout.startswith("changed-manifest: manifest.json: hashes to ")


def test_an_export_whose_chain_head_was_rewritten_away_is_named(db, exported):
    rows(db, "delete from post_versions where sync_run_id = 2")
    rows(db, "delete from posts where version_count = 1 and body_content like '%Late%'")
    rows(db, "update sync_runs set digest = null")
    with Archive.open_for_writing(db) as archive, archive.atomic():
        archive.seal_runs(utc_now())
    result = verify_export(db, exported)
    assert result.exit_code == 1
    assert result.stdout.startswith("anchor: manifest.json: its chain head ")


def test_an_export_without_a_manifest_is_one_line(db, tmp_path):
    result = verify_export(db, tmp_path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: cannot read ")
    assert "Traceback" not in result.output


def test_an_export_checked_with_an_archive_from_before_the_chain(db, exported, tmp_path):
    legacy = tmp_path / "legacy.db"
    old = Database(legacy)
    MIGRATIONS.apply(old, stop_before="004_integrity_events_exports")
    old.close()
    result = verify_export(legacy, exported)
    assert result.exit_code == 0, result.output
    assert "predates the digest chain" in result.stderr and "Traceback" not in result.output
