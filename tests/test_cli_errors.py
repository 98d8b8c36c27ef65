"""One line on stderr and a non-zero exit, never a traceback: unusable files, settings out
of range, bytes that are not UTF-8, and a disk that fills during a sync."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from groupsync.simulator import make_app, serve_in_thread

from .conftest import MARKETING, copy_sample, generate_tenant, one_error_line, run_cli

pytestmark = pytest.mark.e2e

DEAD = "http://127.0.0.1:9/v1.0"  # nothing listens on the discard port
ONLINE = {"GROUPSYNC_GRAPH_URL": DEAD, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"}

# Commands that open the archive: reading ones, and writing ones (sync, the outbox).
ARCHIVE_COMMANDS = [
    ["groups", "--offline"],
    ["conversations", MARKETING],
    ["verify"],
    ["search", "budget"],
    ["export", "--format", "jsonl", "--out", "{tmp}/out"],
    ["outbox"],
    ["sync", "--group", MARKETING],
    ["serve", "--port", "0"],
]


@pytest.fixture(scope="module")
def synced(sample_archive, tmp_path_factory) -> Path:
    return copy_sample(sample_archive, tmp_path_factory.mktemp("errors") / "archive.db")


def each_command(db: Path, tmp_path: Path) -> list[tuple[list[str], str]]:
    found = []
    for command in ARCHIVE_COMMANDS:
        args = [a.replace("{tmp}", str(tmp_path)) for a in command]
        result = run_cli(*args, db=db, env=ONLINE, cwd=tmp_path)
        found.append((args, one_error_line(result)))
    assert not (tmp_path / "out").exists(), "an export began from an unusable archive"
    return found


def test_a_text_file_is_not_an_archive(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("these are notes, not a database\n" * 40)
    for args, line in each_command(db, tmp_path):
        assert line == f"Error: {db} is not a SQLite database (a groupsync archive is one)", args
    assert db.read_text().startswith("these are notes")


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_a_truncated_archive_is_named_damaged(tmp_path, synced, keep):
    db = tmp_path / "archive.db"
    shutil.copy(synced, db)
    with open(db, "r+b") as fp:
        fp.truncate(int(db.stat().st_size * keep))
    for args, line in each_command(db, tmp_path):
        assert line.startswith(f"Error: {db} is damaged ("), (args, line)
        assert "restore it from a backup" in line


def test_a_sqlite_file_of_something_else_is_not_an_archive(tmp_path):
    db = tmp_path / "other.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (x)")
    for args in (["conversations", MARKETING], ["verify"], ["search", "x"]):
        line = one_error_line(run_cli(*args, db=db, cwd=tmp_path))
        assert line == f"Error: {db} is not a groupsync archive; run `groupsync sync` first"


def test_an_archive_from_a_newer_groupsync_is_refused(tmp_path, synced):
    db = tmp_path / "archive.db"
    shutil.copy(synced, db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('groupsync', '999_from_the_future', '2030-01-01')"
        )
    before = db.read_bytes()
    for args, line in each_command(db, tmp_path):
        assert line == (
            f"Error: {db} was written by a newer groupsync (it has migration "
            "999_from_the_future, unknown here); upgrade groupsync to use it"
        ), args
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("GROUPSYNC_TIMEOUT", "-1", "timeout must be a number of seconds from 0.001 to 3,600"),
        ("GROUPSYNC_TIMEOUT", "abc", "timeout must be a number of seconds"),
        ("GROUPSYNC_TIMEOUT", "nan", "timeout must be a number of seconds"),
        ("GROUPSYNC_TIMEOUT", "inf", "timeout must be a number of seconds"),
        ("GROUPSYNC_RATE", "1/inf", "rate must look like CALLS/SECONDS"),
        ("GROUPSYNC_RATE", "1/0", "rate must look like CALLS/SECONDS"),
        ("GROUPSYNC_RATE", "-5/60", "rate must look like CALLS/SECONDS"),
        ("GROUPSYNC_RATE", "1/nan", "rate must look like CALLS/SECONDS"),
        ("GROUPSYNC_RATE", "nan", "rate must look like CALLS/SECONDS"),
        ("GROUPSYNC_MAX_CONCURRENCY", "0", "max_concurrency must be at least 1"),
        ("GROUPSYNC_MAX_CONCURRENCY", "1000", "max_concurrency must be a whole number from 1"),
        ("GROUPSYNC_MAX_CONCURRENCY", "2.5", "max_concurrency must be a whole number"),
    ],
)
def test_settings_out_of_range(tmp_path, name, value, message):
    for args in (["config", "show"], ["groups", "--offline"]):
        line = one_error_line(run_cli(*args, env={name: value}, cwd=tmp_path))
        assert line.startswith(f"Error: {name}: {message}"), line
        assert line.endswith(f"not {value!r}"), line


def test_a_flag_out_of_range_names_the_flag(tmp_path):
    line = one_error_line(run_cli("--rate", "5/inf", "config", "show", cwd=tmp_path))
    assert line.startswith("Error: --rate: rate must look like CALLS/SECONDS"), line


@pytest.mark.parametrize(
    "args",
    [
        [b"conversations", b"\xff"],
        [b"--db", b"arch\xe9.db", b"verify"],
        [b"search", b"caf\xe9"],
        [b"new-conversation", MARKETING.encode(), b"--topic", b"\xfe\xff", b"--text", b"x"],
        [b"config", b"show", b"--\xff"],
    ],
)
def test_arguments_that_are_not_utf8(tmp_path, args):
    line = one_error_line(run_cli(*args, cwd=tmp_path))
    assert "is not UTF-8 text: b'" in line and "\\x" in line, line
    assert not list(tmp_path.iterdir()), "nothing may be created"


def test_an_environment_variable_that_is_not_utf8(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "groupsync", "groups", "--offline"],
        env={"PATH": "/usr/bin:/bin", "GROUPSYNC_DB": os.fsdecode(b"\xffarchive.db")},
        cwd=tmp_path,
        capture_output=True,
    )
    line = one_error_line(result)
    assert line == "Error: GROUPSYNC_DB: db is not UTF-8 text: b'\\xffarchive.db'"


def test_a_config_file_that_is_not_utf8(tmp_path):
    config = tmp_path / "groupsync.toml"
    config.write_bytes(b'db = "caf\xe9.db"\n')
    for args in (["config", "show"], ["--config", str(config), "groups", "--offline"]):
        line = one_error_line(run_cli(*args, cwd=tmp_path))
        assert "is not UTF-8 text (TOML must be)" in line, line


def test_a_content_file_that_is_not_utf8(tmp_path, synced):
    db = tmp_path / "archive.db"
    shutil.copy(synced, db)
    body = tmp_path / "body.html"
    body.write_bytes(b"<p>Caf\xe9 at noon</p>")
    for action in (["new-conversation", MARKETING, "--topic", "t"], ["reply", MARKETING, "x"]):
        result = run_cli(*action, "--content-file", str(body), db=db, env=ONLINE, cwd=tmp_path)
        line = one_error_line(result)
        assert line.startswith(f"Error: cannot read {body}: 'utf-8' codec can't decode"), line
        assert result.returncode == 2
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM _outbox").fetchone()[0] == 0


# -- a disk that fills during a sync ------------------------------------------------------


@pytest.fixture(scope="module")
def big_tenant(tmp_path_factory) -> Path:
    return generate_tenant(tmp_path_factory.mktemp("full") / "tenant",
                           groups=2, threads=60, posts=400, attachments=40, seed=5)  # fmt: skip


def test_a_disk_that_fills_during_sync(tmp_path, big_tenant, mounts):
    """ENOSPC mid-sync: one line, exit 1, an archive whose integrity check is ok; with room
    again the next sync completes and equals an uninterrupted sync's archive."""
    from .test_sync_kill import differences, fts_problems, snapshot

    reference = tmp_path / "reference" / "archive.db"
    reference.parent.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    with serve_in_thread(make_app(big_tenant)) as url:
        env = {"GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"}
        done = run_cli("sync", "--quiet", "--joined", db=reference, env=env)
        assert done.returncode == 0, done.stderr
        needed = sum(f.stat().st_size for f in reference.parent.rglob("*") if f.is_file())
        mounts(["-t", "tmpfs", "-o", f"size={needed * 2 // 3}", "tmpfs"], disk)
        db = disk / "archive.db"
        failed = run_cli("sync", "--quiet", "--joined", db=db, env=env)
        line = one_error_line(failed)
        assert failed.returncode == 1
        assert line == (
            f"Error: the disk holding {db} is full; free some space and run the command "
            "again (the archive keeps every whole thread written so far)"
        )
        with closing(sqlite3.connect(reference)) as conn:
            (total,) = conn.execute("SELECT count(*) FROM posts").fetchone()
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert 0 < conn.execute("SELECT count(*) FROM posts").fetchone()[0] < total
        mounts(["-o", f"remount,size={needed * 4}"], disk)
        again = run_cli("sync", "--quiet", "--joined", db=db, env=env)
        assert again.returncode == 0, again.stderr
    assert differences(snapshot(reference), snapshot(db)) == []
    assert fts_problems(db) == []
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
