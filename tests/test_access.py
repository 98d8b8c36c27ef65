"""The access log: exact rows after each logged access (command line and Datasette), the
chain that ``verify`` checks (a middle row, the newest row and an edit), ``access-log``'s
filters, hostile query texts and actors, and refusal when the log cannot be written."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from groupsync import access, search
from groupsync.archive import Archive
from groupsync.archive.access_log import GENESIS, access_digest
from groupsync.cli import cli
from groupsync.config import cli_actor
from groupsync.datasette_plugin.server import make_datasette
from groupsync.integrity import verify

from . import hostile
from .conftest import MARKETING, copy_sample, first_with_attachments, new_archive

ACTOR = "os:auditor-test"
AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


pytestmark = pytest.mark.usefixtures("closes_logs")


@pytest.fixture(scope="module")
def indexed(sample_archive, tmp_path_factory) -> Path:
    """A sample archive with its search index, copied per test by ``db``."""
    path = copy_sample(sample_archive, tmp_path_factory.mktemp("access") / "archive.db")
    with Archive.open_for_writing(path) as archive:
        search.rebuild_index(archive, search.index_path_for(path), procs=1)
    search.close_indexes()
    return path


@pytest.fixture
def db(indexed, tmp_path) -> Path:
    target = copy_sample(indexed, tmp_path / "archive.db")
    import shutil

    shutil.copytree(search.index_path_for(indexed), search.index_path_for(target))
    return target


def run(db: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(
        cli, list(args), env={"GROUPSYNC_DB": str(db), "GROUPSYNC_ACTOR": ACTOR, **(env or {})}
    )
    return result


def logged(db: Path) -> list[dict[str, Any]]:
    rows = list(access.iter_access_log(db))
    for row in rows:
        assert AT.match(row.pop("at")), row
        assert re.fullmatch(r"[0-9a-f]{64}", row.pop("digest"))
        row.pop("prev_digest")
    return rows


def one(action: str, target: str, count: int | None, origin: str = "cli", row_id: int = 1,
        actor: str = ACTOR) -> dict[str, Any]:  # fmt: skip
    return {"id": row_id, "actor": actor, "action": action, "target": target, "count": count,
            "origin": origin}  # fmt: skip


def test_cli_actor_is_the_os_user_unless_overridden(monkeypatch):
    import getpass

    assert cli_actor() == "os:" + getpass.getuser()
    monkeypatch.setenv("GROUPSYNC_ACTOR", "alice@example.com")
    assert cli_actor() == "alice@example.com"


def test_search_writes_one_row(db):
    """The count is the matching posts, whether the results list threads or posts."""
    result = run(db, "search", "budget")
    assert result.exit_code == 0, result.output
    posts = json.loads(result.stdout)["posts"]
    assert posts > json.loads(result.stdout)["total"] > 0  # more posts than threads
    assert run(db, "search", "budget", "--posts").exit_code == 0
    assert logged(db) == [one("search", "budget", posts), one("search", "budget", posts, row_id=2)]


def test_thread_posts_and_post_views_write_rows(db):
    with Archive(db, readonly=True) as archive:
        thread_id, post = first_with_attachments(archive, MARKETING)
        from groupsync import reads

        posts = list(reads.iter_posts(archive, MARKETING, thread_id))
    assert run(db, "thread", MARKETING, thread_id).exit_code == 0
    assert run(db, "posts", MARKETING, thread_id).exit_code == 0
    assert run(db, "post", MARKETING, thread_id, post["id"]).exit_code == 0
    assert run(db, "post", MARKETING, thread_id, post["id"], "--versions").exit_code == 0
    where = f"{MARKETING}/{thread_id}"
    assert logged(db) == [
        one("thread", where, 1, row_id=1),
        one("thread", where, len(posts), row_id=2),
        one("thread", f"{where}/{post['id']}", 1, row_id=3),
        one("thread", f"{where}/{post['id']}", 1, row_id=4),
    ]


def test_attachment_save_writes_a_row_per_file(db, tmp_path):
    with Archive(db, readonly=True) as archive:
        thread_id, post = first_with_attachments(archive, MARKETING)
    result = run(db, "attachments", MARKETING, thread_id, post["id"], "--save",
                 str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = [s for s in json.loads(result.stdout)["value"] if s.get("sha256")]
    assert saved
    assert logged(db) == [
        one("download", s["sha256"], 1, row_id=n) for n, s in enumerate(saved, 1)
    ]


@pytest.mark.parametrize("fmt", ["eml", "mbox", "jsonl"])
def test_export_writes_a_row(db, tmp_path, fmt):
    out = tmp_path / "export"
    result = run(db, "export", "--format", fmt, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert logged(db) == [one("export", f"{report['export_id']} {out}", report["posts"])]


def test_log_access_is_plain_and_chained(tmp_path):
    db = tmp_path / "a.db"
    new_archive(db).close()
    first = access.log_access(db, "os:x", "hold", "litigation-2025", 12, "cli")
    second = access.log_access(db, "os:x", "policy", "*", None, "cli")
    assert first is not None and second is not None
    assert first["prev_digest"] == GENESIS
    assert second["prev_digest"] == first["digest"]
    assert second["digest"] == access_digest(first["digest"], second)
    with pytest.raises(ValueError):
        access.log_access(db, "os:x", "peek", None, None, "cli")


# -- verify --------------------------------------------------------------------------------


@pytest.fixture
def chained(db) -> Path:
    """Five rows, then a sync run's seal of them (as `groupsync sync` writes it)."""
    for n in range(5):
        access.log_access(db, ACTOR, "search", f"q{n}", n, "cli")
    with Archive.open_for_writing(db) as archive:
        run_id = archive.start_run("incremental", [], None, "2026-01-01T00:00:00Z")
        archive.finish_run(run_id, status="complete", finished_at="2026-01-01T00:00:01Z")
    access.close_access_logs()
    return db


def problems(db: Path) -> list[str]:
    with Archive(db, readonly=True) as archive:
        return [str(p) for p in verify(archive).problems]


def edit(db: Path, sql: str) -> None:
    conn = sqlite3.connect(access.access_log_path(db))
    with conn:
        conn.execute(sql)
    conn.close()


def test_verify_passes_on_an_untouched_log(chained):
    assert problems(chained) == []
    with Archive(chained, readonly=True) as archive:
        assert verify(archive).checked["access_log"] == 5


def test_verify_detects_a_deleted_middle_row(chained):
    edit(chained, "DELETE FROM access_log WHERE id = 3")
    found = problems(chained)
    assert any(p.startswith("access-log-missing-rows:") and "(row 3)" in p for p in found), found
    assert any(p.startswith("access-log-changed:") and "(row 4)" in p for p in found), found


def test_verify_detects_the_newest_row_deleted(chained):
    edit(chained, "DELETE FROM access_log WHERE id = 5")
    found = problems(chained)
    assert len(found) == 1 and found[0].startswith("access-log-missing-rows:"), found
    assert "its newest rows were deleted" in found[0]


def test_verify_detects_the_whole_log_deleted(chained):
    Path(access.access_log_path(chained)).unlink()
    found = problems(chained)
    assert len(found) == 1 and "the file is gone" in found[0], found


def test_verify_detects_an_edited_row(chained):
    edit(chained, "UPDATE access_log SET target = 'something else' WHERE id = 2")
    found = problems(chained)
    assert found == [
        f"access-log-changed: {access.access_log_path(chained)} (row 2): its content no "
        "longer hashes to its digest"
    ]


def test_verify_detects_a_rewritten_newest_row(chained):
    """Recomputing the newest row's digest after an edit keeps the chain, not the seal."""
    path = access.access_log_path(chained)
    conn = sqlite3.connect(path)
    names = ("id", "at", "actor", "action", "target", "count", "origin", "prev_digest")
    values = conn.execute(f"SELECT {', '.join(names)} FROM access_log WHERE id = 5").fetchone()
    row = dict(zip(names, values, strict=True))
    row["target"] = "nothing to see"
    with conn:
        conn.execute("UPDATE access_log SET target = ?, digest = ? WHERE id = 5",
                     (row["target"], access_digest(row["prev_digest"], row)))  # fmt: skip
    conn.close()
    found = problems(chained)
    assert len(found) == 1 and "is not the row sync run" in found[0], found


# -- access-log ----------------------------------------------------------------------------


def test_access_log_command_filters(tmp_path):
    db = tmp_path / "a.db"
    new_archive(db).close()
    access.log_access(db, "os:ann", "search", "alpha", 1, "cli")
    access.log_access(db, "bob", "thread", "g/t", 2, "web")
    access.log_access(db, "os:ann", "export", "1 /tmp/x", 3, "cli")
    by_actor = run(db, "access-log", "--actor", "os:ann", "--json")
    assert by_actor.exit_code == 0, by_actor.output
    lines = [json.loads(line) for line in by_actor.stdout.splitlines()]
    assert [r["target"] for r in lines] == ["alpha", "1 /tmp/x"]
    by_action = run(db, "access-log", "--action", "thread", "--json")
    assert [json.loads(x)["actor"] for x in by_action.stdout.splitlines()] == ["bob"]
    assert run(db, "access-log", "--since", "2999-01-01", "--json").stdout == ""
    assert len(run(db, "access-log", "--since", "2000-01-01", "--json").stdout.splitlines()) == 3
    table = run(db, "access-log")
    assert "alpha" in table.stdout and "head row 3" in table.stderr
    assert run(db, "access-log", "--since", "yesterday").exit_code == 2


def test_hostile_queries_and_actors_print_safely(tmp_path):
    db = tmp_path / "a.db"
    new_archive(db).close()
    for text in hostile.STORABLE:
        access.log_access(db, text or "x", "search", text, 0, "cli")
    table = run(db, "access-log")
    assert table.exit_code == 0, table.output
    assert not set(table.stdout) & hostile.TERMINAL_UNSAFE - {"\n"}
    as_json = run(db, "access-log", "--json")
    assert as_json.stdout.isascii()
    targets = [json.loads(line)["target"] for line in as_json.stdout.splitlines()]
    assert targets == hostile.STORABLE


# -- when the log cannot be written -------------------------------------------------------


def unwritable(tmp_path: Path) -> str:
    """A log path no one can create, root included: its folder is a file."""
    (tmp_path / "a-file").write_text("")
    return str(tmp_path / "a-file" / "log.access")


def test_unwritable_log_refuses_the_read_with_one_line(db, tmp_path):
    result = run(db, "search", "budget", env={"GROUPSYNC_ACCESS_LOG": unwritable(tmp_path)})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "cannot write the access log" in result.stderr


def test_logging_off_is_said(db):
    result = run(db, "search", "budget", env={"GROUPSYNC_ACCESS_LOG": "off"})
    assert result.exit_code == 0
    assert "access logging is off" in result.stderr
    assert not Path(f"{db}.access").exists()


def test_log_elsewhere(db, tmp_path):
    elsewhere = tmp_path / "elsewhere.access"
    result = run(db, "search", "budget", env={"GROUPSYNC_ACCESS_LOG": str(elsewhere)})
    assert result.exit_code == 0
    assert elsewhere.exists() and not Path(f"{db}.access").exists()


# -- Datasette -----------------------------------------------------------------------------


def cookie(ds: Any, actor: dict[str, Any]) -> dict[str, str]:
    return {"ds_actor": ds.sign({"a": actor}, "actor")}


@pytest.mark.asyncio
async def test_datasette_thread_search_and_download_write_rows(db):
    from datasette.utils import tilde_encode

    with Archive(db, readonly=True) as archive:
        thread_id, post = first_with_attachments(archive, MARKETING)
        from groupsync import reads

        posts = list(reads.iter_posts(archive, MARKETING, thread_id))
    conn = sqlite3.connect(db)
    sha256 = conn.execute("SELECT sha256 FROM attachments WHERE post_id = ? AND sha256 IS "
                          "NOT NULL", (post["id"],)).fetchone()[0]  # fmt: skip
    conn.close()
    ds = make_datasette(db)
    who = cookie(ds, {"id": "carol", "groupsync_role": "reader"})
    page = await ds.client.get(
        f"/-/groupsync/thread/{tilde_encode(MARKETING)}/{tilde_encode(thread_id)}", cookies=who
    )
    assert page.status_code == 200
    found = await ds.client.get("/-/groupsync/search?q=budget", cookies=who)
    assert found.status_code == 200
    total = search_total(db, "budget")
    download = await ds.client.get(f"/-/groupsync/attachment/{sha256}", cookies=who)
    assert download.status_code == 200
    anonymous = await ds.client.get("/-/groupsync/search?q=invoice")
    assert anonymous.status_code == 200
    assert logged(db) == [
        one("thread", f"{MARKETING}/{thread_id}", len(posts), "web", 1, "carol"),
        one("search", "budget", total, "web", 2, "carol"),
        one("download", sha256, 1, "web", 3, "carol"),
        one("search", "invoice", search_total(db, "invoice"), "web", 4, "anonymous"),
    ]


def search_total(db: Path, query: str) -> int:
    with Archive(db, readonly=True) as archive:
        return search.search(archive, search.index_path_for(db), query, limit=1).total


@pytest.mark.asyncio
async def test_datasette_refuses_a_page_it_cannot_log(db, tmp_path):
    import os

    os.environ["GROUPSYNC_ACCESS_LOG"] = unwritable(tmp_path)
    try:
        ds = make_datasette(db)
        page = await ds.client.get("/-/groupsync/search?q=budget")
        assert page.status_code == 503
        assert "cannot write the access log" in page.text
        assert "Marketing" not in page.text
    finally:
        os.environ.pop("GROUPSYNC_ACCESS_LOG", None)
