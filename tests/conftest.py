from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from groupsync.archive import Archive, utc_now
from groupsync.graph import GraphClient
from groupsync.simulator import make_app
from groupsync.sync import Syncer

from . import hostile

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
GRAPH_SAMPLES = ROOT.parent / "shared" / "graph-samples"


class FakeClock:
    """Time that moves only when someone sleeps, so throttle tests never wait."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


def graph_sample(name: str) -> dict[str, Any]:
    """A payload from Microsoft's documentation, without our ``_source`` note."""
    path = GRAPH_SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not here (it lives in ../shared beside the repo)")
    data = json.loads(path.read_text())
    data.pop("_source", None)
    return data


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch, tmp_path):
    """No GROUPSYNC_* or proxy settings leak in; msal's cache goes to a temp folder."""
    for name in list(os.environ):
        if name.startswith("GROUPSYNC_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory) -> Path:
    """The sample tenant synced once by the real sync (the joined groups and the public
    one). Shared by the whole session: copy it before changing it."""
    path = tmp_path_factory.mktemp("sample-archive") / "archive.db"
    app = make_app(SAMPLE_DATA)
    graph = GraphClient(
        "http://sim.test/v1.0",
        lambda force_refresh=False: "test-token",
        transport=httpx.WSGITransport(app=app),
        clock=FakeClock(),
        max_attempts=2,
    )
    with graph, Archive(path) as archive:
        Syncer(archive, graph).run(["36a8fb87-f96d-447b-8a27-33dd4dc585be"], joined=True)
    return path


@pytest.fixture(scope="session")
def hostile_archive(sample_archive, tmp_path_factory) -> Path:
    """The sample archive with ``tests.hostile`` written into it, through the archive's own
    save functions (a new version of each post, as a sync would store it):

    * every group's display name, mail and nickname, every thread's and conversation's topic;
    * each post's sender and author names and addresses, participants, categories and body
      (HTML for some, text for others);
    * one attachment per hostile string (that string as its name, a hostile content type,
      non-UTF-8 bytes as content), spread over the posts, plus reference attachments (no
      bytes) with hostile names.

    Lone surrogates are left out: UTF-8 text, so the archive, cannot hold them. Shared by
    the session (exports only add a row to ``exports``): copy it before changing it.
    """
    path = tmp_path_factory.mktemp("hostile-archive") / "archive.db"
    with Archive(sample_archive, readonly=True) as source:
        source.conn.execute("VACUUM INTO ?", (str(path),))
    texts = hostile.STORABLE
    addresses = hostile.ADDRESSES
    types = hostile.CONTENT_TYPES
    blobs = [*hostile.NON_UTF8_BYTES, b"", "é\r\n".encode()]
    now = utc_now()

    def pick(items: list, n: int):
        return items[n % len(items)]

    with Archive(path) as archive, archive.atomic():
        conn = archive.conn
        for n, (group_json,) in enumerate(conn.execute("SELECT json FROM groups").fetchall()):
            group = json.loads(group_json)
            group.update(
                displayName=pick(texts, n), mail=pick(addresses, n), mailNickname=pick(texts, n + 7)
            )
            archive.save_group(group, now)
        for n, (thread_id,) in enumerate(conn.execute("SELECT id FROM threads ORDER BY id")):
            conn.execute("UPDATE threads SET topic = ? WHERE id = ?", (pick(texts, n), thread_id))
        for n, (conversation_id,) in enumerate(
            conn.execute("SELECT id FROM conversations ORDER BY id").fetchall()
        ):
            conn.execute(
                "UPDATE conversations SET topic = ? WHERE id = ?",
                (pick(texts, n + 3), conversation_id),
            )
        posts = conn.execute(
            "SELECT p.group_id, p.thread_id, v.json FROM posts p JOIN post_versions v "
            "ON v.post_id = p.id AND v.changeKey = p.changeKey "
            "WHERE p.deleted_at IS NULL ORDER BY p.id"
        ).fetchall()
        extra: dict[int, list[dict]] = {}
        for n, text in enumerate(texts):
            extra.setdefault(n % len(posts), []).append(
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "id": f"hostile-{n}",
                    "name": text,
                    "contentType": pick(types, n),
                    "size": len(pick(blobs, n)),
                    "isInline": False,
                    "contentBytes": base64.b64encode(pick(blobs, n)).decode(),
                }
            )
        for n, text in enumerate(hostile.PATHS + hostile.LINE_BREAKS):
            extra.setdefault((n * 7) % len(posts), []).append(
                {
                    "@odata.type": "#microsoft.graph.referenceAttachment",
                    "id": f"hostile-ref-{n}",
                    "name": text,
                    "contentType": pick(types, n + 1),
                    "isInline": False,
                }
            )
        for n, (group_id, thread_id, version_json) in enumerate(posts):
            post = json.loads(version_json)
            name, address = pick(texts, n + 11), pick(addresses, n)
            post["from"] = {"emailAddress": {"name": pick(texts, n + 5), "address": address}}
            post["sender"] = {"emailAddress": {"name": name, "address": pick(addresses, n + 1)}}
            post["newParticipants"] = [
                {"emailAddress": {"name": pick(texts, n + k), "address": pick(addresses, n + k)}}
                for k in (13, 17)
            ]
            post["categories"] = [pick(texts, n + 19), pick(texts, n + 23)]
            body = pick(texts, n) + "\n" + pick(texts, n + 29)
            post["body"] = (
                {"contentType": "html", "content": f"<p>{body}</p><p>{pick(texts, n + 31)}</p>"}
                if n % 2
                else {"contentType": "text", "content": body}
            )
            post["attachments"] = [*(post.get("attachments") or []), *extra.get(n, [])]
            post["hasAttachments"] = bool(post["attachments"])
            post["changeKey"] = f"{post.get('changeKey') or ''}-hostile"
            archive.save_posts(group_id, thread_id, [post], now)
    return path
