"""Private files: everything groupsync creates is 0600 (files) or 0700 (folders), whatever
the umask, from the library and from the real CLI."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from groupsync import files, reads, search
from groupsync.archive import Archive
from groupsync.export import ExportOptions, export
from groupsync.lock import WriterLock
from groupsync.simulator import make_app, serve_in_thread
from groupsync.throttle import Throttle

from .conftest import (
    MARKETING,
    SAMPLE_DATA,
    first_with_attachments,
    new_archive,
    run_cli,
    sync_sample,
)


def modes(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (itself excluded) and its permission bits."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def not_private(root: Path) -> dict[str, str]:
    """What under ``root`` is readable by anyone but its owner (0600 files, 0700 folders)."""
    wrong = {}
    for name, mode in modes(root).items():
        want = files.DIR_MODE if (root / name).is_dir() else files.FILE_MODE
        if mode != want:
            wrong[name] = oct(mode)
    return wrong


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def umask(request) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_private_helpers_ignore_the_umask(tmp_path, umask):
    folder = files.private_dir(tmp_path / "a" / "b")
    with files.create_private(folder / "new") as fp:
        fp.write(b"x")
    assert files.touch_private(folder / "touched")
    assert not files.touch_private(folder / "touched")
    files.write_private(folder / "replaced", b"y")
    fd = files.open_private(folder / "opened")
    os.close(fd)
    assert not_private(tmp_path) == {}
    assert (folder / "replaced").read_bytes() == b"y"
    with pytest.raises(FileExistsError):
        files.create_private(folder / "new")


def test_existing_files_and_folders_keep_their_mode(tmp_path, umask):
    (tmp_path / "mine").mkdir(mode=0o755)
    os.chmod(tmp_path / "mine", 0o755)
    (tmp_path / "mine" / "f").write_bytes(b"")
    os.chmod(tmp_path / "mine" / "f", 0o644)
    files.private_dir(tmp_path / "mine")
    os.close(files.open_private(tmp_path / "mine" / "f"))
    assert modes(tmp_path) == {"mine": 0o755, "mine/f": 0o644}


def test_private_umask_is_restored(umask):
    with files.private_umask():
        inside = os.umask(0o077)
        os.umask(inside)
    assert inside == umask | 0o077
    assert os.umask(umask) == umask


def test_the_library_creates_only_private_files(tmp_path, umask):
    """Archive with -wal and -shm, lock, throttle, search index, exports, saved
    attachments: all private while open and after, under umask 000 and 022."""
    db = tmp_path / "data" / "archive.db"
    db.parent.mkdir()
    os.chmod(db.parent, 0o700)
    app = make_app(SAMPLE_DATA)
    with WriterLock(db, "test"), Throttle((10, 1.0), f"{db}.throttle") as throttle:
        throttle.acquire().release()
        sync_sample(app, db)
        with new_archive(db) as archive:
            archive.conn.execute("UPDATE groups SET access_note = 'x'")  # -wal, -shm
            assert {f"{db.name}-wal", f"{db.name}-shm"} <= set(os.listdir(db.parent))
            assert not_private(tmp_path) == {}
            search.update_index(archive, search.index_path_for(db))
            search.rebuild_index(archive, search.index_path_for(db), procs=1)
            thread, post = first_with_attachments(archive, MARKETING)
            saved = reads.save_attachments(
                archive, MARKETING, thread, post["id"], tmp_path / "saved" / "here"
            )
            assert [s for s in saved if not s.skipped]
            for fmt in ("eml", "mbox", "jsonl"):
                export(archive, ExportOptions(format=fmt, out=tmp_path / "out" / fmt))
            assert not_private(tmp_path) == {}
        search.close_indexes()
    assert (db.parent / "archive.db.whoosh" / "groupsync-index.json").exists()
    assert (tmp_path / "out" / "eml" / "manifest.json").exists()
    assert not_private(tmp_path) == {}


def test_the_cli_creates_only_private_files(tmp_path):
    """sync (archive, lock, throttle, index), export, attachments --save, index --rebuild
    as the real command under umask 000."""
    app = make_app(SAMPLE_DATA)
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o700)
    db = work / "archive.db"
    with serve_in_thread(app) as url:
        env = {"GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "100/1"}

        def run(*args: str) -> None:
            result = run_cli(*args, db=db, env=env, cwd=work, umask=0)
            assert result.returncode == 0, result.stderr

        run("sync", "--quiet", "--joined")
        with Archive(db, readonly=True) as archive:
            thread, post = first_with_attachments(archive, MARKETING)
        run("export", "--format", "eml", "--out", str(work / "exports" / "eml"))
        run("attachments", MARKETING, thread, post["id"], "--save", str(work / "saved"))
        run("index", "--rebuild")
        run("send", "--no-wait")
    assert (work / "archive.db.lock").exists() and (work / "archive.db.throttle").exists()
    assert os.listdir(work / "saved")
    assert not_private(work) == {}


def test_systemd_units_set_a_private_umask():
    units = sorted((SAMPLE_DATA.parent / "scripts" / "systemd").glob("*.service"))
    assert units
    for unit in units:
        assert "UMask=0077" in unit.read_text().splitlines(), unit.name


def test_the_token_cache_and_every_folder_made_for_it_are_private(tmp_path, umask):
    from groupsync.auth import TokenCacheFile

    file = TokenCacheFile(tmp_path / "config" / "groupsync" / "token_cache.json")
    file.cache.has_state_changed = True
    file.save()
    assert modes(tmp_path) == {
        "config": 0o700,
        "config/groupsync": 0o700,
        "config/groupsync/token_cache.json": 0o600,
    }
