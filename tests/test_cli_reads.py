"""The read commands as the real ``groupsync`` subprocess, against a synced archive.

Commands of one test run side by side (each is its own process), so the file stays fast.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from groupsync import reads
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread

from .conftest import (
    ANNOUNCEMENTS,
    LEADERSHIP,
    MARKETING,
    SAMPLE_DATA,
    cli_env,
    copy_sample,
    first_with_attachments,
    sync_sample,
)

pytestmark = pytest.mark.e2e

DEAD = "http://127.0.0.1:9/v1.0"  # nothing listens on the discard port


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, (self.args, self.stderr)
        return json.loads(self.stdout)


def spawn(args: list[str], db: Path, url: str = DEAD) -> tuple[list[str], subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "groupsync", *args],
        env=cli_env(url, db),
        cwd=db.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    return args, proc


def collect(started: list[tuple[list[str], subprocess.Popen]]) -> list[Result]:
    results = []
    for args, proc in started:
        out, err = proc.communicate(timeout=60)
        results.append(Result(args, proc.returncode, out, err))
    return results


def run_all(commands: list[list[str]], db: Path, url: str = DEAD) -> list[Result]:
    """Run ``groupsync`` once per command, all at once; results in the same order."""
    return collect([spawn(args, db, url) for args in commands])


@pytest.fixture(scope="module")
def world(sample_archive, tmp_path_factory):
    app = make_app(SAMPLE_DATA, SimulatorOptions(max_concurrency=0))
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("cli-reads") / "archive.db")
    return app, path


@pytest.fixture(scope="module")
def ids(world) -> dict[str, str]:
    with Archive(world[1], readonly=True) as archive:
        thread, post = first_with_attachments(archive, MARKETING)
        conversation = next(iter(reads.iter_conversations(archive, MARKETING)))["id"]
    return {"thread": thread, "post": post["id"], "conversation": conversation}


def expected_answers(db: Path, ids: dict[str, str]) -> dict[tuple[str, ...], Any]:
    """What each command must print, computed in-process from the same archive."""
    g, c, t, p = MARKETING, ids["conversation"], ids["thread"], ids["post"]
    with Archive(db, readonly=True) as a:
        return {
            ("conversations", g): {"value": list(reads.iter_conversations(a, g))},
            ("conversation", g, c): reads.get_conversation(a, g, c),
            ("threads", g): {"value": list(reads.iter_threads(a, g))},
            ("threads", g, "--conversation", c): {
                "value": list(reads.iter_threads(a, g, conversation_id=c))
            },
            ("thread", g, t): reads.get_thread(a, g, t),
            ("posts", g, t): {"value": list(reads.iter_posts(a, g, t))},
            ("post", g, t, p): reads.get_post(a, g, t, p),
            ("post", g, t, p, "--versions"): {"value": list(reads.iter_post_versions(a, g, t, p))},
            ("attachments", g, t, p): {"value": list(reads.iter_attachments(a, g, t, p))},
            ("groups", "--offline"): {"value": list(reads.iter_groups(a))},
            ("group", ANNOUNCEMENTS, "--offline"): reads.get_group(a, ANNOUNCEMENTS),
        }


def test_every_read_prints_the_connector_json(world, ids):
    expected = expected_answers(world[1], ids)
    results = run_all([list(k) for k in expected], world[1])
    for result, want in zip(results, expected.values(), strict=True):
        assert result.json() == want, result.args
        assert result.stderr == ""
    key = ("attachments", MARKETING, ids["thread"], ids["post"])
    streamed = results[list(expected).index(key)].stdout
    # Written item by item, yet exactly what echo_json would have printed.
    assert streamed == json.dumps(expected[key], indent=2, ensure_ascii=False) + "\n"
    assert base64.b64decode(expected[key]["value"][0]["contentBytes"])


def test_tables_are_for_people_and_keep_ids_whole(world, ids):
    g, c, t, p = MARKETING, ids["conversation"], ids["thread"], ids["post"]
    commands = {
        ("conversations", g): ["lastDeliveredDateTime", "topic", "uniqueSenders", c],
        ("conversation", g, c): ["topic", c],
        ("threads", g): ["isLocked", t],
        ("thread", g, t): ["isLocked", t],
        ("posts", g, t): ["receivedDateTime", "sender", "text", "Dear customer", p],
        ("post", g, t, p): ["sender", "text", p],
        ("post", g, t, p, "--versions"): ["changeKey", "sha256"],
        ("attachments", g, t, p): ["name", "contentType", "stored", "Invoice_88412.html"],
        ("groups", "--offline"): ["displayName", "Équipe Paris"],
    }
    results = run_all([[*k, "--table"] for k in commands], world[1])
    for result, wanted in zip(results, commands.values(), strict=True):
        assert result.returncode == 0, (result.args, result.stderr)
        assert not result.stdout.lstrip().startswith(("{", "["))
        for text in wanted:
            assert text in result.stdout, (result.args, text, result.stdout)


def test_errors_are_one_line_and_groups_fall_back_to_the_archive(world, ids, tmp_path):
    """Unknown ids, a missing archive, and Graph out of reach (all in one batch, because
    the client spends ~3 s retrying a dead network before the fallback)."""
    db, g, t = world[1], MARKETING, ids["thread"]
    missing = tmp_path / "none.db"
    with Archive(db, readonly=True) as archive:
        groups = list(reads.iter_groups(archive))
        public = reads.get_group(archive, ANNOUNCEMENTS)
    offline = [
        spawn(["groups", "--live"], db),
        spawn(["group", ANNOUNCEMENTS, "--live"], db),
        spawn(["groups", "--live"], missing),
    ]
    cases = {
        ("conversations", LEADERSHIP): f"{LEADERSHIP} not found",
        ("conversation", g, "c-nope"): "c-nope not found",
        ("threads", g, "--conversation", "c-nope"): "c-nope not found",
        ("thread", g, "t-nope"): "t-nope not found",
        ("posts", g, "t-nope"): "t-nope not found",
        ("post", g, t, "p-nope", "--versions"): "p-nope not found",
        ("attachments", g, t, "p-nope"): "p-nope not found",
        ("group", LEADERSHIP, "--offline"): f"{LEADERSHIP} not found",
    }
    results = collect([spawn(list(k), db) for k in cases] + [spawn(["post", g, t, "p"], missing)])
    messages = [*cases.values(), f"no archive at {missing}; run `groupsync sync` first"]
    for result, message in zip(results, messages, strict=True):
        assert result.returncode == 1, result.args
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert message in lines[0], (result.args, lines[0])

    listed, one, unreachable = collect(offline)
    assert listed.json() == {"value": groups}
    assert listed.stderr == f"offline: groups from the archive {db}\n"
    assert one.json() == public
    assert one.stderr == f"offline: group from the archive {db}\n"
    assert unreachable.returncode == 1 and "no answer from Graph" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,flag",
    [
        (["posts", MARKETING, "t", "--live", "--include-deleted"], "--include-deleted"),
        (["post", MARKETING, "t", "p", "--live", "--versions"], "--versions"),
        (["attachments", MARKETING, "t", "p", "--live", "--save", "out"], "--save"),
        (["groups", "--live", "--include-deleted"], "--include-deleted"),
        (["group", MARKETING, "--live", "--include-deleted"], "--include-deleted"),
    ],
)
def test_archive_only_options_refuse_live(args, flag, tmp_path):
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "a.db"), *args])
    assert result.exit_code == 2 and flag in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_live_reads_answer_like_the_archive(world, ids):
    app, db = world
    expected = {
        k: v
        for k, v in expected_answers(db, ids).items()
        if k[0] not in ("groups", "group") and "--versions" not in k
    }
    with serve_in_thread(app) as url:
        results = run_all([[*k, "--live"] for k in expected], db, url)
    for result, want in zip(results, expected.values(), strict=True):
        assert result.json() == want, result.args


def test_save_writes_the_files_and_says_what_it_skipped(world, ids, tmp_path):
    with Archive(world[1], readonly=True) as archive:
        thread, post = next(
            (t["id"], p["id"])
            for t in reads.iter_threads(archive, MARKETING)
            for p in reads.iter_posts(archive, MARKETING, t["id"])
            if p["hasAttachments"] and p["id"] != ids["post"]
            for a in reads.iter_attachments(archive, MARKETING, t["id"], p["id"], content=False)
            if a["@odata.type"] == "#microsoft.graph.referenceAttachment"
        )
    results = run_all(
        [
            ["attachments", MARKETING, ids["thread"], ids["post"], "--save", str(tmp_path / "a")],
            ["attachments", MARKETING, thread, post, "--save", str(tmp_path / "b"), "--table"],
        ],
        world[1],
    )
    (saved,) = results[0].json()["value"]
    assert saved["path"] == str(tmp_path / "a" / "Invoice_88412.html")
    data = (SAMPLE_DATA / "files" / "invoice-88412.html").read_bytes()
    assert Path(saved["path"]).read_bytes() == data and saved["size"] == len(data)
    assert results[1].returncode == 0, results[1].stderr
    assert "Contoso Outdoor Brand Guidelines 2.0.pptx" in results[1].stdout
    assert "reference attachment" in results[1].stdout
    assert list((tmp_path / "b").iterdir()) == []


def test_deleted_threads_only_with_include_deleted(sample_archive, tmp_path):
    app = make_app(SAMPLE_DATA)
    db = copy_sample(sample_archive, tmp_path / "deleted.db")
    with Archive(db, readonly=True) as archive:
        thread = next(iter(reads.iter_threads(archive, MARKETING)))["id"]
    app.delete_thread(MARKETING, thread)
    sync_sample(app, db, full=True)
    results = run_all(
        [
            ["threads", MARKETING, "--include-deleted"],
            ["thread", MARKETING, thread],
            ["thread", MARKETING, thread, "--include-deleted", "--table"],
        ],
        db,
    )
    shown = {t["id"]: t for t in results[0].json()["value"]}
    assert shown[thread]["@removed"] == {"reason": "deleted"}
    assert all("@removed" not in t for i, t in shown.items() if i != thread)
    assert results[1].returncode == 1 and "--include-deleted" in results[1].stderr
    assert "deleted" in results[2].stdout.splitlines()[0] and thread in results[2].stdout
