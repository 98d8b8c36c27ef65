"""What Graph really returns reaches the archive: inline-only images, mailbox groups only.

Each test sets up the case our first archive got wrong against a simulator that follows
Microsoft's documentation (hasAttachments leaves inline attachments out; memberOf lists
security groups and distribution lists, whose mailbox paths answer 404).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.simulator import serve_in_thread
from groupsync.sync import NOT_READABLE, Syncer, SyncOptions

from .conftest import (
    DISTRIBUTION_LIST,
    JOINED,
    MARKETING,
    PARIS,
    SECURITY_GROUP,
    sync_archive,
)

FILE = "#microsoft.graph.fileAttachment"
SHOT = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a2f1e8a90000000049454e44ae426082"
)


def inline_only_posts(app: Any, group_id: str) -> list[tuple[dict, dict]]:
    """(thread, post) of the simulator whose attachments are all inline."""
    return [
        (thread, post)
        for thread in app.state.threads(group_id)
        for post in thread["posts"]
        if post["attachments"] and all(a["isInline"] for a in post["attachments"])
    ]


def archived_sha256(path: Path, post_id: str) -> dict[str, str]:
    with Archive(path, readonly=True) as archive:
        return dict(
            archive.conn.execute(
                "SELECT id, sha256 FROM attachments WHERE post_id = ? AND deleted_at IS NULL",
                (post_id,),
            ).fetchall()
        )


def expected_sha256(post: dict) -> dict[str, str]:
    return {
        a["id"]: hashlib.sha256(base64.b64decode(a["contentBytes"])).hexdigest()
        for a in post["attachments"]
    }


def test_inline_only_images_reach_the_archive_first_and_incremental(tmp_path, sim):
    path = tmp_path / "a.db"
    found = inline_only_posts(sim, MARKETING)
    assert found and all(not t["hasAttachments"] for t, _ in found)  # what fooled us before
    sync_archive(sim, path, [MARKETING])
    for _, post in found:
        assert archived_sha256(path, post["id"]) == expected_sha256(post)

    # A pasted screenshot, its post's only attachment, in an old thread: PARIS's first
    # sync (full), then another one found by an incremental sync.
    thread = sorted(sim.state.threads(PARIS), key=lambda t: t["lastDeliveredDateTime"])[0]
    first = add_screenshot(sim, thread["id"], SHOT)
    sync_archive(sim, path, [PARIS])
    sim.log.reset()
    second = add_screenshot(sim, thread["id"], SHOT[::-1])
    report = sync_archive(sim, path, [PARIS])
    assert report.mode == "incremental" and report.items_new == 1
    assert sim.state.thread(PARIS, thread["id"])[1]["hasAttachments"] is False
    for post in (first, second):
        assert archived_sha256(path, post["id"]) == expected_sha256(post)
    # The expand carried the bytes: no request for attachments of their own.
    assert sim.log.count("/groups/{id}/threads/{id}/posts/{id}/attachments") == 0


def add_screenshot(app: Any, thread_id: str, data: bytes) -> dict:
    """A reply whose only attachment is an inline image its body shows; the stored post."""
    body = '<html><body><p>Screenshot:</p><img src="cid:shot.png@01DB0000"></body></html>'
    attachment = {
        "@odata.type": FILE,
        "name": "shot.png",
        "contentType": "image/png",
        "contentBytes": base64.b64encode(data).decode(),
        "isInline": True,
        "contentId": "shot.png@01DB0000",
    }
    served = app.add_post(
        PARIS, thread_id, {"body": {"contentType": "html", "content": body},
                           "attachments": [attachment]}
    )
    return app.state.post(PARIS, thread_id, served["id"])[2]


def test_inline_only_post_read_app_only_is_noted_not_lost(tmp_path, sim):
    """App-only identities get an empty expand: the post says why its image is missing."""
    path = tmp_path / "a.db"
    sync_archive(sim, path, [MARKETING], token="app-only-token")
    with Archive(path, readonly=True) as archive:
        notes = dict(
            archive.conn.execute("SELECT id, attachments_note FROM posts WHERE group_id = ?",
                                 (MARKETING,)).fetchall()
        )
    for _, post in inline_only_posts(sim, MARKETING):
        assert notes[post["id"]] == NOT_READABLE


def gs(url: str, db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t",
           "GROUPSYNC_DB": str(db), "GROUPSYNC_RATE": "0"}
    return subprocess.run([sys.executable, "-m", "groupsync", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_groups_without_a_mailbox_are_never_asked_for_mail(tmp_path, sim):
    """`groups` (in-process, against the simulator on a port) lists only mailbox groups;
    `sync --joined` (the same Syncer) never asks for the others' mail."""
    db = tmp_path / "a.db"
    with serve_in_thread(sim) as url:
        env = {"GROUPSYNC_GRAPH_URL": url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"}
        listed = CliRunner().invoke(cli, ["--db", str(db), "groups", "--live"], env=env)
    assert listed.exit_code == 0, listed.output
    ids = [g["id"] for g in json.loads(listed.stdout)["value"]]
    assert sorted(ids) == sorted(JOINED)
    first = sync_archive(sim, db, joined=True)
    assert not first.error, first.error
    sim.log.reset()
    second = sync_archive(sim, db, joined=True)
    assert not second.error, second.error
    report = second.as_dict()
    assert sorted(report["groups"]) == sorted(JOINED)
    assert first.as_dict()["items_deleted"] == report["items_deleted"] == 0
    # memberOf once, then exactly one thread page per mailbox group; never a 404.
    assert sim.log.per_endpoint() == {"GET /me/memberOf": 1, "GET /groups/{id}/threads": 3}
    assert all(status == 200 for *_, status in sim.log.entries)
    with Archive(db, readonly=True) as archive:
        assert archive.group(SECURITY_GROUP) is None and archive.group(DISTRIBUTION_LIST) is None


@pytest.mark.e2e
@pytest.mark.parametrize(
    "group_id,kind", [(SECURITY_GROUP, "security group"), (DISTRIBUTION_LIST, "distribution list")]
)
def test_group_without_a_mailbox_by_id_is_one_clear_line(tmp_path, sim, group_id, kind):
    db = tmp_path / "a.db"
    with serve_in_thread(sim) as url:
        result = gs(url, db, "sync", "--group", group_id)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: {sim.state.group(group_id)['displayName']} ({group_id}) is a {kind}: "
        "it has no group mailbox"
    ]
    assert sim.log.count("/groups/{id}/threads") == sim.log.count("/groups/{id}/conversations") == 0
    with Archive(db, readonly=True) as archive:
        assert archive.group(group_id) is None


class MailboxNotYet:
    """A WSGI wrapper: one group's mailbox answers 404 until ``ready`` (a new group whose
    mailbox Exchange has not provisioned yet; Graph documents replication delays)."""

    def __init__(self, sim: Any, group_id: str) -> None:
        self.sim, self.group_id, self.ready = sim, group_id, False

    def __call__(self, environ: dict, start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if not self.ready and f"/groups/{self.group_id}/" in path:
            body = json.dumps({"error": {"code": "ResourceNotFound",
                                         "message": "Resource could not be discovered."}})
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body.encode()]
        return self.sim(environ, start_response)


def test_a_group_that_answers_404_on_its_first_sync_is_not_deleted(tmp_path, sim):
    wrapped = MailboxNotYet(sim, PARIS)
    path = tmp_path / "a.db"
    report = sync_archive(wrapped, path, [PARIS])
    assert report.items_deleted == 0 and report.status == "complete"
    with Archive(path, readonly=True) as archive:
        deleted, note = archive.conn.execute(
            "SELECT deleted_at, access_note FROM groups WHERE id = ?", (PARIS,)
        ).fetchone()
    assert deleted is None and "cannot be read" in note
    wrapped.ready = True
    report = sync_archive(wrapped, path, [PARIS])
    assert report.items_new > 0 and report.items_deleted == 0
    # Once archived, the same answer on a full reconcile is a deletion, as before.
    wrapped.ready = False
    report = sync_archive(wrapped, path, [PARIS], full=True)
    assert report.items_deleted == 1


def test_full_sync_repairs_an_archive_that_lost_inline_only_images(tmp_path, sim, graph):
    """An archive written before inline images were always expanded: its inline-only posts
    have no attachment rows. The next full reconcile fetches them, same changeKey or not."""
    path = tmp_path / "a.db"
    sync_archive(sim, path, [MARKETING])
    found = inline_only_posts(sim, MARKETING)
    with Archive.open_for_writing(path) as archive, archive.atomic():
        for _, post in found:
            archive.conn.execute("DELETE FROM attachments WHERE post_id = ?", (post["id"],))
        versions = archive.conn.execute("SELECT count(*) FROM post_versions").fetchone()
    sim.log.reset()
    report = sync_archive(sim, path, [MARKETING])
    assert report.mode == "incremental" and report.attachments_new == 0  # not its job
    with Archive.open_for_writing(path) as archive:
        report = Syncer(archive, graph, options=SyncOptions(full=True)).run([MARKETING])
        assert archive.conn.execute("SELECT count(*) FROM post_versions").fetchone() == versions
    assert report.items_new == report.items_changed == 0
    assert report.attachments_new == sum(len(p["attachments"]) for _, p in found)
    assert any("lacked their attachments" in note for note in report.notes)
    for _, post in found:
        assert archived_sha256(path, post["id"]) == expected_sha256(post)
    again = sync_archive(sim, path, [MARKETING], full=True)
    assert again.attachments_new == 0 and not again.notes  # repaired once, then quiet
