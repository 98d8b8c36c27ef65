"""Export of the sample tenant as eml, mbox and JSON lines, parsed back with ``email``."""

from __future__ import annotations

import hashlib
import json
import mailbox
import re
import shutil
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import groupsync.search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.export import ExportError, ExportOptions, export, message_id, parse_bound
from groupsync.html import to_text
from groupsync.models import parse_datetime
from groupsync.simulator import make_app

from .conftest import MARKETING, PARIS, SAMPLE_DATA, rows, sync_archive


def sync_into(db: Path, app, **options) -> None:
    """The real sync of the joined groups (``SyncOptions`` from ``options``), few retries."""
    sync_archive(app, db, graph_options={"max_attempts": 2}, **options)


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> Path:
    """The sample tenant, synced once; then one thread deleted upstream and synced again."""
    db = tmp_path_factory.mktemp("export") / "a.db"
    app = make_app(SAMPLE_DATA)
    sync_into(db, app)
    doomed = sorted(app.state.threads(PARIS), key=lambda t: t["lastDeliveredDateTime"])[0]
    app.delete_thread(PARIS, doomed["id"])
    sync_into(db, app, full=True)
    return db


def run_export(db: Path, out: Path, fmt: str, **options) -> dict:
    with Archive.open_for_writing(db) as archive:
        report = export(
            archive, ExportOptions(format=fmt, out=out, **options), identity="tester"
        )
    return report.as_dict()


def live_posts(db: Path) -> dict[str, dict]:
    """Every live post: its latest version's JSON and its attachments' stored bytes."""
    out = {}
    for post_id, text, topic in rows(
        db,
        "select p.id, v.json, t.topic from posts p join post_versions v "
        "on v.post_id = p.id and v.changeKey = p.changeKey join threads t on t.id = p.thread_id "
        "where p.deleted_at is null",
    ):
        version = json.loads(text)
        stored = {
            a: content
            for a, content in rows(
                db,
                "select a.id, b.content from attachments a left join blobs b using (sha256) "
                "where a.post_id = ?",
                (post_id,),
            )
        }
        out[post_id] = {"version": version, "topic": topic, "bytes": stored}
    return out


def parts_by_attachment(message: EmailMessage) -> dict[str, EmailMessage]:
    found = {}
    for part in message.walk():
        attachment_id = part["X-Groupsync-Attachment-Id"]
        if attachment_id:
            assert str(attachment_id) not in found
            found[str(attachment_id)] = part
    return found


def check_message(message: EmailMessage, posts: dict[str, dict]) -> str:
    """One parsed message against the archive: headers, bodies, every attachment's bytes."""
    post_id = str(message["X-Groupsync-Post-Id"])
    post = posts[post_id]
    version = post["version"]
    assert message["Message-ID"] == message_id(post_id)
    assert str(message["Subject"]) == post["topic"]
    sender = version["sender"]["emailAddress"]
    assert message["Sender"].addresses[0].display_name == sender["name"]
    assert message["Sender"].addresses[0].addr_spec == sender["address"]
    assert message["From"].addresses[0].addr_spec == version["from"]["emailAddress"]["address"]
    assert parsedate_to_datetime(str(message["Date"])) == parse_datetime(
        version["receivedDateTime"]
    )
    body = version["body"]
    html = message.get_body(("html",))
    plain = message.get_body(("plain",))
    if body["contentType"] == "html":
        assert html.get_content() == body["content"]  # exactly
        text = plain.get_content().replace("\r\n", "\n")  # a text part's lines end as the file's
        assert text.strip() == to_text(body["content"], "html").strip()
    else:
        assert html is None
        assert plain.get_content() == body["content"]
    parts = parts_by_attachment(message)
    assert set(parts) == {a["id"] for a in version["attachments"]}
    for attachment in version["attachments"]:
        part = parts[attachment["id"]]
        data = post["bytes"].get(attachment["id"])
        if data is not None:
            assert part.get_content_disposition() == "attachment" or part["Content-ID"]
            assert part.get_filename() == attachment["name"]
            assert part.get_payload(decode=True) == data  # byte for byte
            if attachment.get("isInline") and attachment.get("contentId"):
                assert part["Content-ID"] == f"<{attachment['contentId']}>"
                assert part in list(html.iter_parts()) or html.get_content_type() == "text/html"
        else:
            assert part.get_content_type() == "application/json"
            assert json.loads(part.get_payload(decode=True))["id"] == attachment["id"]
    return post_id


def test_eml_round_trip_is_byte_identical(synced, tmp_path):
    report = run_export(synced, tmp_path / "out", "eml")
    posts = live_posts(synced)
    files = sorted((tmp_path / "out").rglob("*.eml"))
    assert report["posts"] == len(posts) == len(files)
    seen = set()
    attachments = 0
    for path in files:
        raw = path.read_bytes()
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # RFC 5322 line ends
        message = message_from_bytes(raw, policy=email_policy.default)
        assert not message.defects
        seen.add(check_message(message, posts))
        attachments += len(parts_by_attachment(message))
    assert seen == set(posts)
    with_bytes = sum(1 for p in posts.values() for b in p["bytes"].values() if b is not None)
    assert report["attachments"] == with_bytes >= 8
    assert report["attachments_without_bytes"] == attachments - with_bytes >= 3  # item, reference


def test_inline_images_sit_beside_the_html_with_their_content_id(synced, tmp_path):
    run_export(synced, tmp_path / "out", "eml")
    (post_id,) = rows(
        synced, "select post_id from attachments where isInline = 1 and contentId is not null"
    )[0]
    name = message_id(post_id)[1:17]
    (path,) = list((tmp_path / "out").rglob(f"*-{name}.eml"))
    message = message_from_bytes(path.read_bytes(), policy=email_policy.default)
    related = next(p for p in message.walk() if p.get_content_type() == "multipart/related")
    kinds = [p.get_content_type() for p in related.iter_parts()]
    assert kinds[0] == "text/html" and "image/png" in kinds
    image = next(p for p in related.iter_parts() if p.get_content_type() == "image/png")
    assert f"cid:{image['Content-ID'].strip('<>')}" in related.get_body(("html",)).get_content()


def test_non_ascii_headers_are_rfc2047_encoded(synced, tmp_path):
    run_export(synced, tmp_path / "out", "eml")
    non_ascii = 0
    for path in (tmp_path / "out").rglob("*.eml"):
        raw = path.read_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0]
        head.decode("ascii")  # every header line is 7-bit
        message = message_from_bytes(raw, policy=email_policy.default)
        subject = str(message["Subject"])
        names = [a.display_name for h in ("From", "Sender") for a in message[h].addresses]
        if not subject.isascii() or not all(n.isascii() for n in names):
            non_ascii += 1
            assert re.search(rb"=\?utf-8\?[bq]\?", head, re.IGNORECASE), head
    assert non_ascii >= 10  # "Équipe Paris", "Léa Fontaine", "—" in topics, Japanese, ...


def test_replies_reference_the_thread_and_their_parent(synced, tmp_path):
    run_export(synced, tmp_path / "out", "eml")
    by_thread: dict[str, list[EmailMessage]] = {}
    for path in (tmp_path / "out").rglob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=email_policy.default)
        by_thread.setdefault(str(message["X-Groupsync-Thread-Id"]), []).append(message)
    replies = 0
    for messages in by_thread.values():
        messages.sort(key=lambda m: parsedate_to_datetime(str(m["Date"])))
        root = messages[0]
        assert root["In-Reply-To"] is None
        for reply in messages[1:]:
            assert reply["In-Reply-To"] == root["Message-ID"]
            assert str(reply["References"]).split() == [root["Message-ID"]]
            replies += 1
    assert replies >= 40


def test_mbox_opens_with_mailbox_one_file_per_group(synced, tmp_path):
    eml = run_export(synced, tmp_path / "eml", "eml")
    report = run_export(synced, tmp_path / "mbox", "mbox")
    posts = live_posts(synced)
    paths = sorted((tmp_path / "mbox").glob("*.mbox"))
    groups = {g for (g,) in rows(synced, "select distinct group_id from posts")}
    assert len(paths) == len(groups) == report["groups"] == report["files"]
    seen = []
    for path in paths:
        box = mailbox.mbox(path, create=False)
        try:
            messages = [message_from_bytes(box.get_bytes(key), policy=email_policy.default)
                        for key in box.iterkeys()]  # fmt: skip
        finally:
            box.close()
        assert {str(m["X-Groupsync-Group-Id"]) for m in messages} == {
            g for g in groups if g[:8] in path.name
        }
        seen.extend(check_message(m, posts) for m in messages)
    assert sorted(seen) == sorted(posts)
    assert report["posts"] == eml["posts"] and report["attachments"] == eml["attachments"]


def test_jsonl_is_graph_shape_with_attachment_references(synced, tmp_path):
    out = tmp_path / "out"
    report = run_export(synced, out, "jsonl")
    posts = live_posts(synced)
    lines = [json.loads(line) for p in out.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == report["posts"] == len(posts)
    referenced = 0
    for doc in lines:
        post = posts[doc["id"]]
        meta = doc.pop("@groupsync")
        assert meta["messageId"] == message_id(doc["id"])
        for attachment in doc["attachments"]:
            sha256 = attachment.pop("@groupsync.sha256", None)
            path = attachment.pop("@groupsync.path", None)
            data = post["bytes"].get(attachment["id"])
            if data is None:
                assert sha256 is None
                continue
            referenced += 1
            assert (out / path).read_bytes() == data
            assert hashlib.sha256(data).hexdigest() == sha256
        assert doc == post["version"]  # exactly Graph's shape, as archived
        assert hashlib.sha256(
            json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest() == meta["versionSha256"]
    assert referenced == report["attachments"]


@pytest.mark.parametrize("fmt", ["eml", "mbox", "jsonl"])
def test_manifest_lists_every_file_with_its_sha256(synced, tmp_path, fmt):
    out = tmp_path / "out"
    report = run_export(synced, out, fmt)
    manifest_bytes = (out / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
    }
    assert set(listed) == on_disk
    for path, entry in listed.items():
        data = (out / path).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
    assert manifest["counts"]["posts"] == report["posts"] == sum(
        f.get("posts", 0) for f in manifest["files"]
    )
    assert manifest["counts"]["files"] == len(listed)
    assert manifest["identity"] == "tester"
    head = rows(synced, "select id, digest from sync_runs order by id desc limit 1")[0]
    assert manifest["archive"]["chain_head"] == {"run_id": head[0], "digest": head[1]}
    (audit,) = rows(
        synced,
        "select format, status, posts, files, manifest_sha256, identity from exports "
        "where id = ?",
        (report["export_id"],),
    )
    assert audit == (
        fmt, "complete", report["posts"], len(listed),
        hashlib.sha256(manifest_bytes).hexdigest(), "tester",
    )  # fmt: skip


def test_filters_by_group_dates_and_deletion(synced, tmp_path):
    everything = run_export(synced, tmp_path / "all", "jsonl", include_deleted=True)
    live = run_export(synced, tmp_path / "live", "jsonl")
    deleted = rows(synced, "select count(*) from posts where deleted_at is not null")[0][0]
    assert deleted >= 1 and everything["posts"] == live["posts"] + deleted
    marked = [
        json.loads(line)
        for p in (tmp_path / "all").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert sum(1 for d in marked if d["@groupsync"]["deletedDateTime"]) == deleted

    one = run_export(synced, tmp_path / "one", "jsonl", group_ids=[MARKETING])
    expected = rows(
        synced,
        "select count(*) from posts where group_id = ? and deleted_at is null",
        (MARKETING,),
    )[0][0]
    assert one["posts"] == expected and one["groups"] == 1

    dates = sorted(
        r[0] for r in rows(synced, "select receivedDateTime from posts where deleted_at is null")
    )
    middle = dates[len(dates) // 2][:10]
    before = run_export(synced, tmp_path / "before", "jsonl", until=middle)
    after = run_export(synced, tmp_path / "after", "jsonl", since=middle)
    on_day = sum(1 for d in dates if d[:10] == middle)
    assert before["posts"] == sum(1 for d in dates if d[:10] <= middle)
    assert after["posts"] == sum(1 for d in dates if d[:10] >= middle)
    assert before["posts"] + after["posts"] == live["posts"] + on_day


@pytest.mark.parametrize(
    "text,end,expected",
    [
        ("2024-05-01", False, "2024-05-01T00:00:00"),
        ("2024-05-01", True, "2024-05-01T23:59:59"),
        ("2024-05-01T09:30Z", False, "2024-05-01T09:30:00"),
        ("2024-05-01T09:30:15+02:00", False, "2024-05-01T07:30:15"),
        ("2024-05-01T09:30:15.250Z", True, "2024-05-01T09:30:15"),
        (None, False, None),
    ],
)
def test_parse_bound(text, end, expected):
    assert parse_bound(text, end=end) == expected


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01", "01/05/2024"])
def test_parse_bound_refuses_what_is_not_a_date(bad):
    with pytest.raises(ExportError, match="not a date"):
        parse_bound(bad)


def test_a_non_empty_folder_is_refused(synced, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        run_export(synced, tmp_path / "out", "eml")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_query_uses_search_when_there_is_one(synced, tmp_path, monkeypatch):
    picked = [r[0] for r in rows(synced, "select id from posts where deleted_at is null limit 3")]
    calls = []

    class Hit:
        def __init__(self, post_id):
            self.post_id = post_id

    class Results:
        def __init__(self, hits):
            self.hits = hits

    def fake_search(archive, index_path, query, *, limit, offset, include_deleted, **kw):
        calls.append((query, limit, offset, include_deleted))
        return Results([Hit(p) for p in picked][offset : offset + limit])

    monkeypatch.setattr(groupsync.search, "search", fake_search, raising=False)
    report = run_export(synced, tmp_path / "out", "jsonl", query="budget")
    assert report["posts"] == 3
    assert calls == [("budget", 500, 0, False)]
    exported = {
        json.loads(line)["id"]
        for p in (tmp_path / "out").glob("*.jsonl")
        for line in p.read_text().splitlines()
    }
    assert exported == set(picked)


@pytest.mark.skipif(not hasattr(groupsync.search, "search"), reason="search.py not there yet")
def test_query_with_the_real_index_exports_what_search_finds(synced, tmp_path):
    db = tmp_path / "a.db"
    shutil.copy(synced, db)
    index = tmp_path / "a.db.whoosh"
    try:
        with Archive.open_for_writing(db) as archive:
            found = groupsync.search.search(archive, index, "invoice", limit=100)
            expected = {h.post_id for h in found.hits}
        assert expected
        report = run_export(db, tmp_path / "out", "jsonl", query="invoice", index_path=index)
    finally:
        groupsync.search.close_indexes()
    exported = {
        json.loads(line)["id"]
        for p in (tmp_path / "out").glob("*.jsonl")
        for line in p.read_text().splitlines()
    }
    assert exported == expected and report["posts"] == len(expected)


def test_query_without_search_says_so(synced, tmp_path, monkeypatch):
    monkeypatch.delattr(groupsync.search, "search", raising=False)
    with pytest.raises(ExportError, match="needs full-text search"):
        run_export(synced, tmp_path / "out", "eml", query="budget")


def test_cli_export_prints_a_summary_and_refuses_bad_input(synced, tmp_path):
    runner = CliRunner()
    env = {"GROUPSYNC_DB": str(synced)}
    result = runner.invoke(
        cli, ["export", "--format", "mbox", "--out", str(tmp_path / "o"), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["manifest"] == str(tmp_path / "o" / "manifest.json")
    result = runner.invoke(
        cli, ["export", "--format", "eml", "--out", str(tmp_path / "o")], env=env
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "not an empty folder" in result.stderr
    result = runner.invoke(
        cli,
        ["export", "--format", "eml", "--out", str(tmp_path / "p"), "--since", "soon"],
        env=env,
    )
    assert result.exit_code == 2 and "not a date" in result.stderr
