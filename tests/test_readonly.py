"""Evidence copies: every reading command works on an archive on a read-only mount, and
neither writes nor creates anything there (no lock, no -shm, no index update)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from groupsync import reads, search
from groupsync.archive import Archive
from groupsync.archive.access_log import AccessLogFile

from .conftest import (
    MARKETING,
    copy_sample,
    first_with_attachments,
    new_archive,
    one_error_line,
    read_commands,
    run_cli,
)

pytestmark = pytest.mark.e2e


def state(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under ``folder``: size, mtime (ns) and mode."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns, info.st_mode)
    return found


@pytest.fixture
def evidence(sample_archive, tmp_path, mounts) -> Path:
    """A synced, indexed archive in WAL mode with no -wal or -shm beside it (as a closed
    archive is copied), bind-mounted read-only; the path of the archive on the mount."""
    source = tmp_path / "source"
    source.mkdir()
    db = copy_sample(sample_archive, source / "archive.db")
    with new_archive(db) as archive:  # the last writer to close removes -wal and -shm
        search.update_index(archive, search.index_path_for(db))
    search.close_indexes()
    assert sorted(os.listdir(source)) == ["archive.db", "archive.db.whoosh"]
    with open(db, "rb") as fp:
        assert fp.read(20)[18:20] == b"\x02\x02", "the archive is in WAL mode"
    target = tmp_path / "evidence"
    target.mkdir()
    mounts(["--bind", str(source)], target)
    mounts(["-o", "remount,bind,ro"], target)
    with pytest.raises(OSError, match="Read-only file system"):
        (target / "probe").touch()
    return target / "archive.db"


def test_every_reading_command_works_on_a_read_only_mount(tmp_path, evidence):
    with Archive(evidence, readonly=True) as archive:
        assert archive.immutable
        thread, post = first_with_attachments(archive, MARKETING)
        conversation = next(iter(reads.iter_conversations(archive, MARKETING)))["id"]
    g, t, p = MARKETING, thread, post["id"]
    before = state(evidence.parent)
    work = tmp_path / "work"
    work.mkdir()
    commands = [
        *read_commands(g, conversation, t, p),
        ["attachments", g, t, p, "--save", str(work / "saved")],
        ["search", "budget"],
        ["search", "budget", "--table"],
        ["events"],
        ["index", "--check"],
        ["verify"],
        ["export", "--format", "jsonl", "--out", str(work / "jsonl")],
        ["export", "--format", "eml", "--out", str(work / "eml"), "--query", "budget"],
    ]
    results = {}
    log = work / "evidence.access"  # the mount cannot take <db>.access
    for args in commands:
        result = run_cli(*args, db=evidence, cwd=work, env={"GROUPSYNC_ACCESS_LOG": str(log)})
        stderr = result.stderr.decode()
        assert result.returncode == 0, (args, stderr)
        assert "Traceback" not in stderr
        results[tuple(args)] = (result.stdout.decode(), stderr)
    assert json.loads(results[("conversations", g)][0])["value"]
    assert json.loads(results[("search", "budget")][0])["total"] > 0
    assert os.listdir(work / "saved")
    for fmt in ("jsonl", "eml"):
        manifest = json.loads((work / fmt / "manifest.json").read_text())
        assert manifest["export_id"] is None and manifest["counts"]["posts"] > 0
        err = results[next(k for k in results if k[:1] == ("export",) and fmt in k)][1]
        assert "is read-only: this export is not recorded in its exports table" in err
    with AccessLogFile(log, readonly=True) as logged:
        actions = {r["action"] for r in logged.rows()}
    assert actions == {
        "thread", "download", "search", "export"
    }
    assert state(evidence.parent) == before


def test_logged_reads_refuse_a_read_only_mount_without_a_log_elsewhere(tmp_path, evidence):
    """A compliance log never misses an access in silence: one line naming the way out."""
    with Archive(evidence, readonly=True) as archive:
        thread, _ = first_with_attachments(archive, MARKETING)
    for args in (["search", "budget"], ["thread", MARKETING, thread]):
        result = run_cli(*args, db=evidence, cwd=tmp_path)
        assert "cannot write the access log" in one_error_line(result)
        assert "GROUPSYNC_ACCESS_LOG" in one_error_line(result)
        assert result.stdout == b""


def test_serve_works_on_a_read_only_mount(tmp_path, evidence):
    before = state(evidence.parent)
    process = subprocess.Popen(
        [sys.executable, "-m", "groupsync", "--db", str(evidence), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "GROUPSYNC_ACCESS_LOG": str(tmp_path / "evidence.access")},
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/-/groupsync/", url), url
        with httpx.Client(base_url=url.removesuffix("-/groupsync/"), timeout=20) as client:
            page = client.get("/-/groupsync/")
            assert page.status_code == 200 and "Marketing" in page.text
            found = client.get("/-/groupsync/search", params={"q": "budget"})
            assert found.status_code == 200
            rows = client.get("/archive/posts.json", params={"_size": "1"})
            assert rows.status_code == 200 and rows.json()["rows"]
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert "read-only here: serving it immutable" in err
    assert "Traceback" not in err
    assert state(evidence.parent) == before


def test_serve_refuses_a_read_only_mount_without_a_log_elsewhere(tmp_path, evidence):
    result = run_cli("--db", str(evidence), "serve", "--port", "0", "--no-index", cwd=tmp_path,
                     timeout=60)  # fmt: skip
    assert "cannot write the access log" in one_error_line(result)


def test_writing_commands_refuse_a_read_only_mount_in_one_line(tmp_path, evidence):
    with Archive(evidence, readonly=True) as archive:
        thread, post = first_with_attachments(archive, MARKETING)
    before = state(evidence.parent)
    inside = evidence.parent / "new"
    online = {"GROUPSYNC_GRAPH_URL": "http://127.0.0.1:9/v1.0", "GROUPSYNC_ACCESS_TOKEN": "t",
              "GROUPSYNC_ACCESS_LOG": str(tmp_path / "evidence.access")}  # fmt: skip
    expected = {
        ("sync", "--group", MARKETING): "cannot create the writer lock",
        ("send",): "cannot create the writer lock",
        ("outbox",): "is read-only here",
        ("new-conversation", MARKETING, "--topic", "t", "--text", "x"): "is read-only here",
        ("index", "--rebuild"): "cannot write the search index",
        ("groups", "--live"): "cannot use the throttle file",
        ("export", "--format", "mbox", "--out", str(inside)): f"cannot create {inside}",
        ("attachments", MARKETING, thread, post["id"], "--save", str(inside)): "cannot create",
    }
    for args, words in expected.items():
        line = one_error_line(run_cli(*args, db=evidence, env=online, cwd=tmp_path))
        assert words in line, line
        assert "Read-only file system" in line or "is read-only here" in line, line
    assert state(evidence.parent) == before


def test_a_copy_with_a_wal_but_no_shm_is_refused_not_read_stale(tmp_path, evidence):
    wal = tmp_path / "source" / "archive.db-wal"  # the folder the mount shows
    wal.write_bytes(b"\x37\x7f\x06\x82" + bytes(28))
    assert (evidence.parent / "archive.db-wal").exists()
    line = one_error_line(run_cli("conversations", MARKETING, db=evidence, cwd=tmp_path))
    assert line == (
        f"Error: {evidence} is read-only here and has a -wal without its -shm, which SQLite "
        "cannot read; copy the archive again while nothing writes to it"
    )
