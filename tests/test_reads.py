"""The connector's read actions from an archive that the real sync filled from the simulator.

The replica must answer what Graph said: every answer is compared with the simulator's own
answer for the same endpoint, keys, JSON types, values and order.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from groupsync import reads
from groupsync.archive import Archive, canonical_json
from groupsync.errors import ArchiveError, NotFoundError
from groupsync.simulator import Simulator, make_app
from groupsync.sync import NOT_READABLE, POST_SELECT, Syncer

from .conftest import (
    ANNOUNCEMENTS,
    ARCHIVED,
    ENGINEERING,
    GRAPH_BASE,
    LEADERSHIP,
    MARKETING,
    PARIS,
    SAMPLE_DATA,
    copy_sample,
    first_with_attachments,
    graph_for,
    new_archive,
    sync_sample,
)

FILE = "#microsoft.graph.fileAttachment"


class Sim:
    """The simulator's own answers, over HTTP in-process, as a client of Graph sees them."""

    def __init__(self, app: Simulator, token: str = "t") -> None:
        self.http = httpx.Client(
            transport=httpx.WSGITransport(app=app),
            base_url=GRAPH_BASE,
            headers={"Authorization": f"Bearer {token}"},
        )

    def values(self, path: str, **params: str) -> list[dict[str, Any]]:
        page = self.get(path, **{"$top": "50", **params})
        items = list(page["value"])
        while "@odata.nextLink" in page:
            page = self.http.get(page["@odata.nextLink"]).json()
            items += page["value"]
        return items

    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def entity(self, path: str, **params: str) -> dict[str, Any]:
        data = self.get(path, **params)
        data.pop("@odata.context")
        return data

    def raw(self, path: str) -> bytes:
        return self.http.get(path).content


@pytest.fixture(scope="module")
def world(sample_archive) -> Iterator[tuple[Simulator, Path]]:
    """The sample archive, only read, and a simulator of the tenant it came from (nobody
    changes this simulator)."""
    yield make_app(SAMPLE_DATA), sample_archive


@pytest.fixture
def archive(world) -> Iterator[Archive]:
    with Archive(world[1], readonly=True) as a:
        yield a


@pytest.fixture(scope="module")
def sim(world) -> Iterator[Sim]:
    client = Sim(world[0])
    yield client
    client.http.close()


@pytest.fixture
def fresh(sample_archive, tmp_path) -> Iterator[tuple[Simulator, Path]]:
    """A simulator and archive of its own, for tests that change the world upstream."""
    yield make_app(SAMPLE_DATA), copy_sample(sample_archive, tmp_path / "fresh.db")


def threads_path(group_id: str, thread_id: str) -> str:
    return f"/groups/{group_id}/threads/{thread_id}"


# -- the answers are Graph's -------------------------------------------------------------


@pytest.mark.parametrize("group_id", ARCHIVED)
def test_conversations_are_what_graph_listed(archive, sim, group_id):
    mine = list(reads.iter_conversations(archive, group_id))
    assert mine == sim.values(f"/groups/{group_id}/conversations")
    assert all(list(c) == list(reads.CONVERSATION_FIELDS) for c in mine)
    delivered = [c["lastDeliveredDateTime"] for c in mine]
    assert delivered == sorted(delivered, reverse=True)
    first = mine[0]
    assert reads.get_conversation(archive, group_id, first["id"]) == sim.entity(
        f"/groups/{group_id}/conversations/{first['id']}"
    )


@pytest.mark.parametrize("group_id", ARCHIVED)
def test_threads_are_what_graph_listed_with_recipients(archive, sim, group_id):
    select = ",".join(reads.THREAD_FIELDS)
    mine = list(reads.iter_threads(archive, group_id))
    assert mine == sim.values(f"/groups/{group_id}/threads", **{"$select": select})
    for thread in mine:
        assert list(thread) == list(reads.THREAD_FIELDS)
        assert isinstance(thread["hasAttachments"], bool)
        assert isinstance(thread["isLocked"], bool)
        assert isinstance(thread["uniqueSenders"], list)
        assert isinstance(thread["toRecipients"], list)
    got = reads.get_thread(archive, group_id, mine[-1]["id"])
    assert got == sim.entity(threads_path(group_id, mine[-1]["id"]), **{"$select": select})


def test_threads_of_one_conversation(archive, sim):
    select = ",".join(reads.THREAD_FIELDS)
    for conversation in reads.iter_conversations(archive, MARKETING):
        cid = conversation["id"]
        mine = list(reads.iter_threads(archive, MARKETING, conversation_id=cid))
        path = f"/groups/{MARKETING}/conversations/{cid}/threads"
        assert mine == sim.values(path, **{"$select": select})
    assert any(
        len(list(reads.iter_threads(archive, MARKETING, conversation_id=c["id"]))) > 1
        for c in reads.iter_conversations(archive, MARKETING)
    )


@pytest.mark.parametrize("group_id", [MARKETING, PARIS])
def test_posts_are_the_latest_versions_graph_listed(archive, sim, group_id):
    for thread in reads.iter_threads(archive, group_id):
        path = threads_path(group_id, thread["id"])
        mine = list(reads.iter_posts(archive, group_id, thread["id"]))
        # What the sync asked for: Graph's defaults plus the back-references and participants.
        assert mine == sim.values(f"{path}/posts", **{"$select": ",".join(POST_SELECT)})
        assert all("attachments" not in p for p in mine)
        received = [p["receivedDateTime"] for p in mine]
        assert received == sorted(received)
        last = mine[-1]
        assert reads.get_post(archive, group_id, thread["id"], last["id"]) == sim.entity(
            f"{path}/posts/{last['id']}", **{"$select": ",".join(POST_SELECT)}
        )


@pytest.mark.parametrize("group_id", [MARKETING, ENGINEERING, PARIS])
def test_attachments_are_graph_shaped_with_the_same_bytes(archive, sim, group_id):
    seen = set()
    for thread in reads.iter_threads(archive, group_id):
        for post in reads.iter_posts(archive, group_id, thread["id"]):
            if not post["hasAttachments"]:
                continue
            path = f"{threads_path(group_id, thread['id'])}/posts/{post['id']}/attachments"
            mine = list(reads.iter_attachments(archive, group_id, thread["id"], post["id"]))
            assert mine == sim.values(path)
            for attachment in mine:
                seen.add(attachment["@odata.type"])
                if attachment["@odata.type"] == FILE:
                    data = base64.b64decode(attachment["contentBytes"], validate=True)
                    assert data == sim.raw(f"{path}/{attachment['id']}/$value")
                    assert len(data) == attachment["size"]
                else:
                    assert "contentBytes" not in attachment
            bare = reads.iter_attachments(
                archive, group_id, thread["id"], post["id"], content=False
            )
            assert all("contentBytes" not in a for a in bare)
    assert FILE in seen


def test_attachment_bytes_are_the_sample_files(archive):
    wanted = {"leads-2025-03.csv": "leads-2025-03.csv", "Invoice_88412.html": "invoice-88412.html"}
    found = {}
    for thread in reads.iter_threads(archive, MARKETING):
        for post in reads.iter_posts(archive, MARKETING, thread["id"]):
            for a in reads.iter_attachments(archive, MARKETING, thread["id"], post["id"]):
                if a["name"] in wanted:
                    found[a["name"]] = base64.b64decode(a["contentBytes"])
    assert found == {
        name: (SAMPLE_DATA / "files" / file).read_bytes() for name, file in wanted.items()
    }


def test_json_types_are_graphs(archive):
    text = json.dumps(list(reads.iter_threads(archive, MARKETING)))
    assert '"hasAttachments": true' in text and '"isLocked": false' in text
    assert '"uniqueSenders": ["' in text


def test_groups_are_graph_groups(archive, sim):
    groups = list(reads.iter_groups(archive))
    assert [g["id"] for g in groups] == [
        g["id"] for g in sorted(groups, key=lambda g: g["displayName"].lower())
    ]
    assert {g["id"] for g in groups} == set(ARCHIVED)
    member_of = {g["id"]: g for g in sim.values("/me/memberOf/microsoft.graph.group")}
    for group in groups:
        assert group["@odata.type"] == "#microsoft.graph.group"
        if group["id"] in member_of:
            assert group == member_of[group["id"]]
    public = reads.get_group(archive, ANNOUNCEMENTS)
    expected = sim.entity(f"/groups/{ANNOUNCEMENTS}")
    assert public == {"@odata.type": "#microsoft.graph.group", **expected}


# -- what is not there ---------------------------------------------------------------------


def test_unknown_ids_name_the_id(archive):
    thread, post = first_with_attachments(archive, MARKETING)
    other = next(iter(reads.iter_threads(archive, ENGINEERING)))["id"]
    cases = [
        (lambda: reads.iter_conversations(archive, LEADERSHIP), LEADERSHIP),
        (lambda: reads.get_group(archive, LEADERSHIP), LEADERSHIP),
        (lambda: reads.get_conversation(archive, MARKETING, "AAQk-nope"), "AAQk-nope"),
        (lambda: reads.iter_threads(archive, MARKETING, conversation_id="c-nope"), "c-nope"),
        (lambda: reads.get_thread(archive, MARKETING, "t-nope"), "t-nope"),
        (lambda: reads.iter_posts(archive, MARKETING, other), other),  # thread of another group
        (lambda: reads.get_post(archive, MARKETING, thread, "p-nope"), "p-nope"),
        (lambda: reads.iter_post_versions(archive, MARKETING, other, post["id"]), other),
        (lambda: reads.iter_attachments(archive, MARKETING, thread, "p-nope"), "p-nope"),
        (lambda: reads.save_attachments(archive, MARKETING, thread, "p-nope", "x"), "p-nope"),
    ]
    for call, named in cases:
        with pytest.raises(NotFoundError, match=named):
            call()
    other_post = next(iter(reads.iter_posts(archive, ENGINEERING, other)))["id"]
    with pytest.raises(NotFoundError, match=f"post {other_post} not found in thread {thread}"):
        reads.get_post(archive, MARKETING, thread, other_post)
    assert not Path("x").exists()


def test_a_missing_archive_is_one_clear_error(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(ArchiveError, match=f"no archive at {missing}; run `groupsync sync`"):
        Archive(missing, readonly=True)


def test_a_deleted_thread_is_a_tombstone(fresh):
    app, path = fresh
    with Archive(path, readonly=True) as archive:
        conversation = next(
            c
            for c in reads.iter_conversations(archive, MARKETING)
            if len(list(reads.iter_threads(archive, MARKETING, conversation_id=c["id"]))) == 1
        )
        cid = conversation["id"]
        (thread,) = reads.iter_threads(archive, MARKETING, conversation_id=cid)
        posts = list(reads.iter_posts(archive, MARKETING, thread["id"]))
    app.delete_thread(MARKETING, thread["id"])
    sync_sample(app, path, full=True)
    with Archive(path, readonly=True) as archive:
        assert thread["id"] not in {t["id"] for t in reads.iter_threads(archive, MARKETING)}
        assert cid not in {c["id"] for c in reads.iter_conversations(archive, MARKETING)}
        with pytest.raises(NotFoundError, match="deleted upstream .*--include-deleted"):
            reads.get_thread(archive, MARKETING, thread["id"])
        with pytest.raises(NotFoundError, match=thread["id"]):
            reads.iter_posts(archive, MARKETING, thread["id"])

        shown = reads.get_thread(archive, MARKETING, thread["id"], include_deleted=True)
        assert shown["@removed"] == {"reason": "deleted"}
        assert shown["@groupsync.deletedDateTime"].endswith("Z")
        assert {k: v for k, v in shown.items() if not k.startswith("@")} == thread
        listed = {t["id"]: t for t in reads.iter_threads(archive, MARKETING, include_deleted=True)}
        assert listed[thread["id"]]["@removed"] == {"reason": "deleted"}
        assert all("@removed" not in t for i, t in listed.items() if i != thread["id"])
        conversations = reads.iter_conversations(archive, MARKETING, include_deleted=True)
        assert {c["id"]: c for c in conversations}[cid]["@removed"] == {"reason": "deleted"}
        gone = list(reads.iter_posts(archive, MARKETING, thread["id"], include_deleted=True))
        assert [p["id"] for p in gone] == [p["id"] for p in posts]
        assert all(p["@removed"] == {"reason": "deleted"} for p in gone)


def test_an_edited_post_keeps_both_versions(fresh):
    app, path = fresh
    with Archive(path, readonly=True) as archive:
        thread = next(iter(reads.iter_threads(archive, PARIS)))["id"]
        before = next(iter(reads.iter_posts(archive, PARIS, thread)))
    app.edit_post(PARIS, thread, before["id"], content="<p>Corrigé : rendez-vous à 10 h</p>")
    sync_sample(app, path, full=True)
    with Archive(path, readonly=True) as archive:
        after = reads.get_post(archive, PARIS, thread, before["id"])
        assert after["body"]["content"] == "<p>Corrigé : rendez-vous à 10 h</p>"
        assert after["changeKey"] != before["changeKey"]
        assert next(iter(reads.iter_posts(archive, PARIS, thread))) == after
        versions = list(reads.iter_post_versions(archive, PARIS, thread, before["id"]))
    assert [v["@groupsync.version"]["changeKey"] for v in versions] == [
        before["changeKey"],
        after["changeKey"],
    ]
    assert versions[0]["body"] == before["body"]
    assert versions[1]["body"] == after["body"]
    for version in versions:
        stored = {k: v for k, v in version.items() if k != "@groupsync.version"}
        digest = hashlib.sha256(canonical_json(stored).encode("utf-8")).hexdigest()
        assert digest == version["@groupsync.version"]["sha256"]
        assert version["@groupsync.version"]["first_seen_at"].endswith("Z")


# -- attachments on disk -------------------------------------------------------------------


def test_save_attachments_keeps_every_file_inside_the_folder(fresh, tmp_path):
    app, path = fresh
    with Archive(path, readonly=True) as archive:
        thread, post = next(
            (t["id"], p)
            for t in reads.iter_threads(archive, MARKETING)
            for p in reads.iter_posts(archive, MARKETING, t["id"])
            if any(
                a["@odata.type"] == "#microsoft.graph.referenceAttachment"
                for a in reads.iter_attachments(archive, MARKETING, t["id"], p["id"], content=False)
            )
        )
    hostile = {
        "../../evil.txt": b"evil",
        "evil.txt": b"same name",
        "..\\..\\win.ini": b"[x]",
        "a/b:c?.txt": b"abc",
        "..": b"dots",
        "invoice\u202egpj.exe": b"MZ",
    }
    for name, data in hostile.items():
        app.add_attachment(MARKETING, thread, post["id"], name, "text/plain", data)
    sync_sample(app, path, full=True)
    out = tmp_path / "out" / "nested"
    out.mkdir(parents=True)
    (out / "evil.txt").write_bytes(b"already here")
    with Archive(path, readonly=True) as archive:
        saved = list(reads.save_attachments(archive, MARKETING, thread, post["id"], out))
        again = list(reads.save_attachments(archive, MARKETING, thread, post["id"], out))
    written = {s.name: s for s in saved if s.skipped is None}
    skipped = [s for s in saved if s.skipped is not None]
    assert [s.name for s in skipped] == ["Contoso Outdoor Brand Guidelines 2.0.pptx"]
    assert "reference attachment" in (skipped[0].skipped or "")
    assert {n: Path(s.path or "").name for n, s in written.items() if n in hostile} == {
        "../../evil.txt": "evil (2).txt",
        "evil.txt": "evil (3).txt",
        "..\\..\\win.ini": "win.ini",
        "a/b:c?.txt": "a_b_c_.txt",
        "..": "attachment",
        "invoice\u202egpj.exe": "invoice_gpj.exe",
    }
    for name, data in hostile.items():
        assert Path(written[name].path or "").read_bytes() == data
        assert written[name].sha256 == hashlib.sha256(data).hexdigest()
    assert (out / "evil.txt").read_bytes() == b"already here"
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "fresh.db" not in p.name]
    assert files and all(p.parent == out for p in files)
    second = {s.name: s.path for s in again if s.skipped is None}
    assert all(second[n] != s.path for n, s in written.items())  # nothing overwritten
    assert len(files) == 1 + 2 * len(written)
    record = written["evil.txt"].as_dict()
    assert record["path"] == written["evil.txt"].path and "skipped" not in record
    assert skipped[0].as_dict()["skipped"] == skipped[0].skipped


@pytest.mark.parametrize(
    "name,safe",
    [
        ("report.pdf", "report.pdf"),
        ("../../evil.txt", "evil.txt"),
        ("/etc/passwd", "etc_passwd"),
        ("C:\\Windows\\win.ini", "C__Windows_win.ini"),
        ("..", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
        (".bashrc", "bashrc"),
        ("a..b", "a.b"),
        ("trailing. ", "trailing"),
        ("nul\x00byte\n.txt", "nul_byte_.txt"),
        ("注文同期エラー / Order sync", "注文同期エラー _ Order sync"),
        ("invoice\u202egpj.exe", "invoice_gpj.exe"),  # shown as "invoiceexe.jpg"
        ("\u2067report\u2069\u200f.pdf\u200e", "_report__.pdf_"),
        ("photo\u202d\u202a\u202b\u202c\u2066\u2068\u061c.png", "photo_______.png"),
        ("שלום.txt", "שלום.txt"),  # right-to-left letters are no controls
    ],
)
def test_safe_file_name(name, safe):
    assert reads.safe_file_name(name) == safe


def test_safe_file_name_cuts_long_names_keeping_the_extension():
    name = reads.safe_file_name("é" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= reads.MAX_NAME_BYTES


def test_content_bytes_are_encoded_piece_by_piece(archive, monkeypatch):
    data = bytes(range(256)) * 41  # 10,496 bytes: not a multiple of 3
    pieces = [data[:1], data[1:3], data[3:1000], data[1000:1004], data[1004:]]
    calls = []

    def iter_blob(sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        calls.append(chunk_size)
        yield from pieces

    monkeypatch.setattr(archive, "iter_blob", iter_blob)
    thread, post = first_with_attachments(archive, MARKETING)
    (attachment,) = reads.iter_attachments(archive, MARKETING, thread, post["id"])
    assert attachment["contentBytes"] == base64.b64encode(data).decode()
    assert calls == [reads.B64_READ] and reads.B64_READ % 3 == 0


def test_attachments_the_identity_could_not_read_are_explained(tmp_path):
    app = make_app(SAMPLE_DATA)
    path = tmp_path / "app-only.db"
    with graph_for(app, "app-token") as graph, new_archive(path) as archive:
        Syncer(archive, graph).run([MARKETING])
    with Archive(path, readonly=True) as archive:
        thread, post = first_with_attachments(archive, MARKETING)
        assert list(reads.iter_attachments(archive, MARKETING, thread, post["id"])) == []
        assert reads.attachments_note(archive, MARKETING, thread, post["id"]) == NOT_READABLE


@pytest.mark.parametrize(
    "body,text",
    [
        ({"contentType": "html", "content": "<p>Hello&nbsp;<b>there</b></p>"}, "Hello there"),
        (
            {
                "contentType": "html",
                "content": "<html><head><style>p{}</style></head><body>A<script>x</script>"
                "<br>B</body></html>",
            },
            "A B",
        ),
        ({"contentType": "text", "content": "  two\n lines "}, "two lines"),
        ({"contentType": "text", "content": "x" * 80}, "x" * 59 + "…"),
        (None, ""),
    ],
)
def test_body_text(body, text):
    assert reads.body_text(body, 60) == text


def test_reads_of_one_thread_are_index_lookups(archive):
    """No read of one thread, post or attachment scans a whole table."""
    statements: list[str] = []
    thread, post = first_with_attachments(archive, MARKETING)
    conversation = next(iter(reads.iter_conversations(archive, MARKETING)))["id"]
    archive.conn.set_trace_callback(statements.append)
    try:
        list(reads.iter_conversations(archive, MARKETING))
        list(reads.iter_threads(archive, MARKETING, conversation_id=conversation))
        list(reads.iter_posts(archive, MARKETING, thread))
        reads.get_post(archive, MARKETING, thread, post["id"])
        list(reads.iter_post_versions(archive, MARKETING, thread, post["id"]))
        list(reads.iter_attachments(archive, MARKETING, thread, post["id"]))
    finally:
        archive.conn.set_trace_callback(None)
    plans = [
        detail
        for sql in dict.fromkeys(statements)
        if sql.lstrip().startswith("SELECT")
        for *_, detail in archive.conn.execute("EXPLAIN QUERY PLAN " + sql)
    ]
    assert plans and not [d for d in plans if d.startswith("SCAN")], plans
