"""GROUP given by id, nickname, address or display name on every command, and ids checked
before any request or archive write (groupsync.groupref, groupsync.ids, the CLI's callbacks).

The commands run in-process (CliRunner) against the simulator served on a local port, so
its request log shows what reached "Graph"; one test runs the real `groupsync` process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread

from .conftest import BAD_IDS, ENGINEERING, MARKETING, PARIS, SAMPLE_DATA, copy_sample
from .test_cli_reads import run_all

AMBIGUOUS = "e"  # Engineering and Équipe Paris


@pytest.fixture(scope="module")
def world(sample_archive, tmp_path_factory):
    """The synced sample archive, and the simulator it came from, served on a port."""
    app = make_app(SAMPLE_DATA, SimulatorOptions(max_concurrency=0))
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("cli-names") / "archive.db")
    with serve_in_thread(app) as url:
        yield app, path, url


@pytest.fixture
def own(world, tmp_path) -> Path:
    """A copy of the synced archive that a test may write to."""
    path = tmp_path / "own.db"
    shutil.copy(world[1], path)
    return path


def invoke(world, db: Path, *args: str):
    app, _, url = world
    env = {"GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"}
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=env)


def fingerprint(db: Path) -> tuple[str, ...]:
    """The archive's bytes (its WAL too): any write changes them."""
    files = [db, db.with_name(db.name + "-wal")]
    return tuple(hashlib.sha256(f.read_bytes() if f.exists() else b"").hexdigest() for f in files)


def assert_refused(world, db: Path, args: list[str], message: str) -> None:
    """Exit 2 with one line, no traceback, nothing sent to Graph, nothing written."""
    app = world[0]
    app.log.reset()
    before = fingerprint(db) if db.exists() else None
    existed = db.exists()
    result = invoke(world, db, *args)
    assert result.exit_code == 2, (args, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0] and lines[0].isprintable(), lines[0]
    assert "Traceback" not in result.stderr
    assert app.log.count() == 0, app.log.entries
    assert db.exists() == existed
    if existed:
        assert fingerprint(db) == before


# -- ids checked before anything is sent or written -------------------------------------

COMMANDS = {
    "read": (lambda bad: ["thread", MARKETING, bad, "--live"], "thread id"),
    "read-option": (lambda bad: ["threads", MARKETING, "--conversation", bad], "conversation id"),
    "queue": (lambda bad: ["reply", MARKETING, bad, "--text", "hi"], "thread id"),
    "queue-post": (lambda bad: ["forward", MARKETING, "t", bad, "--to", "a@b.example"], "post id"),
    "sync": (lambda bad: ["sync", "--group", bad], "no archived group matches"),
    "read-group": (lambda bad: ["conversations", bad, "--live"], "no archived group matches"),
}


@pytest.mark.parametrize("kind", BAD_IDS, ids=BAD_IDS.keys())
@pytest.mark.parametrize("command", COMMANDS, ids=COMMANDS.keys())
def test_bad_ids_are_refused_before_any_request_or_write(world, own, kind, command):
    make_args, message = COMMANDS[command]
    assert_refused(world, own, make_args(BAD_IDS[kind]), message)


def test_a_bad_group_on_a_missing_archive_creates_nothing(world, tmp_path):
    missing = tmp_path / "new.db"
    assert_refused(world, missing, ["sync", "--group", "engineering"], "no archive yet")
    assert_refused(world, missing, ["sync", "--group", "../x"], "no archived group matches")


def test_the_real_process_says_one_line(world, tmp_path):
    _, db, url = world
    commands = [
        ["sync", "--group", "../etc"],
        ["thread", MARKETING, "a\x1b[2Jb", "--live"],
        ["reply", MARKETING, "a?b", "--text", "hi"],
        ["posts", MARKETING, "t\u202e", "--live"],
    ]
    world[0].log.reset()
    for result in run_all(commands, tmp_path / "none.db", url):
        assert result.returncode == 2, (result.args, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: ")
    assert world[0].log.count() == 0
    assert not (tmp_path / "none.db").exists()


# -- groups by name ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["engineering", "ENG", "Engineering@contosooutdoor", ENGINEERING])
def test_reads_take_a_name_as_well_as_an_id(world, name):
    db = world[1]
    by_id = invoke(world, db, "threads", ENGINEERING)
    by_name = invoke(world, db, "threads", name)
    assert by_name.exit_code == 0, by_name.output
    assert by_name.stdout == by_id.stdout and json.loads(by_name.stdout)["value"]


def test_group_by_display_name_with_accents_folded(world):
    result = invoke(world, world[1], "group", "equipe paris", "--offline")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == PARIS


def test_a_write_queues_for_the_group_named(world, own):
    result = invoke(world, own, "new-conversation", "Équipe", "--topic", "Bonjour", "--text", "hi")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["group_id"] == PARIS


def test_sync_by_name_syncs_that_group(world, own):
    result = invoke(world, own, "sync", "--group", "marketing", "--no-index", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["groups"] == [MARKETING]


def test_sync_by_guid_on_an_empty_archive(world, tmp_path):
    db = tmp_path / "fresh.db"
    result = invoke(world, db, "sync", "--group", ENGINEERING.upper(), "--no-index", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["groups"] == [ENGINEERING]
    with Archive(db, readonly=True) as archive:
        assert archive.group_ids() == [ENGINEERING]


def test_export_takes_names_too(world, own, tmp_path):
    out = tmp_path / "out"
    args = ["export", "--format", "jsonl", "--out", str(out), "--json"]
    result = invoke(world, own, *args, "--group", "eng", "--group", "marketing@")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["groups"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["threads", AMBIGUOUS, "--live"],
        ["post", AMBIGUOUS, "t", "p"],
        ["new-conversation", AMBIGUOUS, "--topic", "t", "--text", "x"],
        ["delete-thread", AMBIGUOUS, "t", "--yes"],
        ["sync", "--group", AMBIGUOUS],
        ["watch", "--group", AMBIGUOUS, "--once"],
        ["export", "--format", "jsonl", "--out", "x", "--group", "marketing", "--group", "E"],
        ["events", "--group", AMBIGUOUS],
        ["search", "budget", "--group", AMBIGUOUS],
        ["search", f"group:{AMBIGUOUS} budget"],
    ],
    ids=lambda args: args[0] + ("-q" if args[1].startswith("group:") else ""),
)
def test_an_ambiguous_name_is_an_error_listing_the_candidates(world, own, args):
    app = world[0]
    app.log.reset()
    before = fingerprint(own)
    result = invoke(world, own, *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and result.stdout == ""
    head, *lines = result.stderr.splitlines()
    assert head.startswith("Error: 'e' fits 2 archived groups") or head.startswith(
        "Error: 'E' fits 2 archived groups"
    ), head
    assert len(lines) == 2
    assert lines[0].startswith(f"  '{ENGINEERING}'  'Engineering'")
    assert lines[1].startswith(f"  '{PARIS}'  'Équipe Paris'")
    assert app.log.count() == 0 and fingerprint(own) == before
