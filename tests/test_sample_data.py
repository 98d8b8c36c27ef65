"""sample_data/ and the tenants of scripts/generate_tenant.py follow sample_data/README.md.

Only json and pathlib-level tools here: the simulator package is not imported, so these tests
check the data itself, whatever serves it.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
GENERATOR = ROOT / "scripts" / "generate_tenant.py"

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
EXCHANGE_ID = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
CHANGE_KEY = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
FILE = "#microsoft.graph.fileAttachment"
ITEM = "#microsoft.graph.itemAttachment"
REFERENCE = "#microsoft.graph.referenceAttachment"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Json = dict[str, Any]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def groups_of(folder: Path, *, mailbox_only: bool = True) -> list[Json]:
    """The groups of a tenant folder; by default those with a group mailbox."""
    groups = load(folder / "groups.json")["value"]
    return [g for g in groups if "Unified" in g["groupTypes"]] if mailbox_only else groups


def conversations_of(folder: Path, group: Json) -> list[Json]:
    return load(folder / "groups" / f"{group['id']}.json")["conversations"]


def iter_posts(folder: Path) -> Iterator[tuple[Json, Json, Json, Json]]:
    """Every (group, conversation, thread, post) of a tenant folder."""
    for group in groups_of(folder):
        for conversation in conversations_of(folder, group):
            for thread in conversation["threads"]:
                for post in thread["posts"]:
                    yield group, conversation, thread, post


def iter_attachments(folder: Path) -> Iterator[tuple[Json, Json, Json, Json, Json]]:
    for group, conversation, thread, post in iter_posts(folder):
        for attachment in post["attachments"]:
            yield group, conversation, thread, post, attachment


def is_recipient(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"emailAddress"}
        and set(value["emailAddress"]) == {"name", "address"}
        and all(isinstance(v, str) and v for v in value["emailAddress"].values())
        and "@" in value["emailAddress"]["address"]
    )


def exchange_bytes(value: str) -> bytes:
    assert EXCHANGE_ID.match(value), value
    return base64.urlsafe_b64decode(value)


# --- format checks shared by the sample tenant and generated ones ------------------------------


def check_tenant_format(folder: Path) -> None:
    """Assert that ``folder`` follows sample_data/README.md."""
    tenant = load(folder / "tenant.json")
    assert set(tenant) == {"tenantId", "me", "users", "directoryRoles"}
    assert GUID.match(tenant["tenantId"])
    user_ids = {user["id"] for user in tenant["users"]}
    assert len(user_ids) == len(tenant["users"])
    assert tenant["me"] in user_ids
    for user in tenant["users"]:
        assert GUID.match(user["id"])
        for key in ("displayName", "mail", "userPrincipalName"):
            assert isinstance(user[key], str) and user[key]
    for role in tenant["directoryRoles"]:
        assert role["@odata.type"] == "#microsoft.graph.directoryRole"
        assert GUID.match(role["id"]) and role["displayName"]

    groups = groups_of(folder)
    assert set(load(folder / "groups.json")) == {"value"}
    files = {p.name for p in (folder / "groups").iterdir()}
    assert files == {f"{group['id']}.json" for group in groups}
    for group in groups_of(folder, mailbox_only=False):
        if group not in groups:  # a security group or a distribution list: no mailbox
            assert group["groupTypes"] == [] and group["visibility"] is None
            assert group["mailEnabled"] or group["securityEnabled"]
            assert set(group["@sim.members"]) <= user_ids
    for group in groups:
        assert GUID.match(group["id"])
        assert group["groupTypes"] == ["Unified"]
        assert group["visibility"] in ("Public", "Private")
        assert group["mailEnabled"] is True and group["securityEnabled"] is False
        assert group["mail"] == f"{group['mailNickname']}@{group['mail'].split('@')[1]}"
        assert isinstance(group["description"], str) and group["displayName"]
        assert ISO_UTC.match(group["createdDateTime"])
        assert set(group["@sim.members"]) <= user_ids
        assert set(load(folder / "groups" / f"{group['id']}.json")) == {"conversations"}

    for group, conversation, thread, post in iter_posts(folder):
        assert set(conversation) >= {"id", "topic", "threads"} and conversation["threads"]
        assert set(thread) >= {"id", "topic", "isLocked", "toRecipients", "ccRecipients"}
        assert isinstance(thread["isLocked"], bool) and thread["posts"]
        assert all(map(is_recipient, thread["toRecipients"] + thread["ccRecipients"]))
        for key in ("createdDateTime", "lastModifiedDateTime", "receivedDateTime"):
            assert ISO_UTC.match(post[key]), post[key]
        assert post["createdDateTime"] <= post["receivedDateTime"] <= post["lastModifiedDateTime"]
        assert CHANGE_KEY.match(post["changeKey"])
        assert post.get("@odata.etag", f'W/"{post["changeKey"]}"') == f'W/"{post["changeKey"]}"'
        assert post["body"]["contentType"] == "html"
        assert post["body"]["content"].startswith("<html>")
        assert post["body"]["content"].rstrip().endswith("</html>")
        assert isinstance(post["categories"], list)
        assert all(isinstance(c, str) for c in post["categories"])
        assert post["from"] == {
            "emailAddress": {"name": group["displayName"], "address": group["mail"]}
        }
        assert is_recipient(post["sender"])
        assert all(map(is_recipient, post.get("newParticipants", [])))
        counted = any(not a["isInline"] for a in post["attachments"])  # inline ones never count
        assert post.get("hasAttachments", counted) == counted
        for extension in post.get("extensions", []):
            assert extension["@odata.type"] == "#microsoft.graph.openTypeExtension"
            assert extension["extensionName"] and extension["id"]
        for attachment in post["attachments"]:
            check_attachment(folder, attachment)
        if "@sim.inReplyTo" in post:
            earlier = [p["id"] for p in thread["posts"][: thread["posts"].index(post)]]
            assert post["@sim.inReplyTo"] in earlier


def check_attachment(folder: Path, attachment: Json) -> None:
    base = {"@odata.type", "id", "name", "contentType", "size", "isInline", "lastModifiedDateTime"}
    assert base <= set(attachment)
    assert isinstance(attachment["name"], str) and attachment["name"]
    assert isinstance(attachment["size"], int) and 0 < attachment["size"] < 2**31
    assert isinstance(attachment["isInline"], bool)
    assert ISO_UTC.match(attachment["lastModifiedDateTime"])
    kind = attachment["@odata.type"]
    assert kind in (FILE, ITEM, REFERENCE)
    if kind == FILE:
        assert isinstance(attachment["contentType"], str)
        assert attachment["contentLocation"] is None
        assert (attachment["contentId"] is not None) == attachment["isInline"]
        assert ("contentBytes" in attachment) != ("@sim.contentFile" in attachment)
        if "contentBytes" in attachment:
            data = base64.b64decode(attachment["contentBytes"], validate=True)
        else:
            relative = attachment["@sim.contentFile"]
            assert relative.startswith("files/") and ".." not in relative
            data = (folder / relative).read_bytes()
        assert attachment["size"] == len(data)
    elif kind == ITEM:
        assert attachment["contentType"] is None
        item = attachment["item"]
        assert item["@odata.type"] == "#microsoft.graph.message"
        assert item["subject"] and item["body"]["content"] and is_recipient(item["from"])
    else:
        assert attachment["contentType"] is None or "/" in attachment["contentType"]
        assert attachment["isInline"] is False


def check_ids(folder: Path) -> None:
    """Ids are unique tenant-wide and shaped like Exchange's."""
    seen: list[str] = [group["id"] for group in groups_of(folder)]
    seen += [user["id"] for user in load(folder / "tenant.json")["users"]]
    for group in groups_of(folder):
        for conversation in conversations_of(folder, group):
            assert conversation["id"].startswith("AAQkA")
            exchange_bytes(conversation["id"])
            seen.append(conversation["id"])
            for thread in conversation["threads"]:
                assert thread["id"].startswith("AAQkA")
                exchange_bytes(thread["id"])
                seen.append(thread["id"])
                for post in thread["posts"]:
                    assert post["id"].startswith("AAMkA")
                    exchange_bytes(post["id"])
                    seen.append(post["id"])
                    for attachment in post["attachments"]:
                        exchange_bytes(attachment["id"])
                        seen.append(attachment["id"])
    assert len(seen) == len(set(seen))


def check_received_increasing(folder: Path) -> None:
    for group in groups_of(folder):
        for conversation in conversations_of(folder, group):
            for thread in conversation["threads"]:
                times = [post["receivedDateTime"] for post in thread["posts"]]
                assert times == sorted(set(times)), thread["topic"]


# --- the hand-written sample tenant ---------------------------------------------------------


def test_sample_follows_readme_format() -> None:
    check_tenant_format(SAMPLE)


def test_sample_ids_unique_and_exchange_style() -> None:
    check_ids(SAMPLE)


def test_sample_received_increasing_within_threads() -> None:
    check_received_increasing(SAMPLE)


def test_sample_groups_and_membership() -> None:
    me = load(SAMPLE / "tenant.json")["me"]
    groups = groups_of(SAMPLE)
    assert len(groups) >= 4
    mine = [g for g in groups if me in g["@sim.members"]]
    assert len([g for g in mine if g["visibility"] == "Private"]) >= 3
    assert any(g["visibility"] == "Public" and me not in g["@sim.members"] for g in groups)
    assert any(not g["displayName"].isascii() for g in mine)


def test_sample_size_of_tenant() -> None:
    conversations = [c for g in groups_of(SAMPLE) for c in conversations_of(SAMPLE, g)]
    assert len(conversations) >= 30
    assert any(len(c["threads"]) >= 2 for c in conversations)
    threads = [t for c in conversations for t in c["threads"]]
    assert any(t["isLocked"] for t in threads)
    assert any(len(t["posts"]) >= 4 for t in threads)
    posts = [p for _, _, _, p in iter_posts(SAMPLE)]
    assert any(p["categories"] for p in posts)
    assert any(p.get("newParticipants") for p in posts)
    assert any("@sim.inReplyTo" in p for p in posts)
    assert any(p.get("extensions") for p in posts)
    years = {p["receivedDateTime"][:4] for p in posts}
    assert years == {"2024", "2025"}


def test_sample_folder_is_modest() -> None:
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 300 * 1024


def test_sample_has_every_attachment_kind() -> None:
    kinds = {a["@odata.type"] for *_, a in iter_attachments(SAMPLE)}
    assert kinds == {FILE, ITEM, REFERENCE}
    files = [a for *_, a in iter_attachments(SAMPLE) if a["@odata.type"] == FILE]
    assert any("contentBytes" in a for a in files)
    types = {a["contentType"] for a in files}
    assert {"application/pdf", "image/png", "text/plain", "text/csv"} <= types


def test_sample_content_files_exist_and_are_all_used() -> None:
    used = {a["@sim.contentFile"] for *_, a in iter_attachments(SAMPLE) if "@sim.contentFile" in a}
    assert used
    for relative in used:
        assert (SAMPLE / relative).is_file(), relative
    on_disk = {f"files/{p.name}" for p in (SAMPLE / "files").iterdir()}
    assert on_disk == used


def test_sample_inline_image_is_referenced_by_cid() -> None:
    found = []
    for *_, post, attachment in iter_attachments(SAMPLE):
        if attachment["isInline"]:
            assert attachment["contentType"].startswith("image/")
            assert f'src="cid:{attachment["contentId"]}"' in post["body"]["content"]
            found.append(attachment["contentId"])
    assert "logo@contoso" in found


def test_sample_has_inline_only_posts_and_groups_without_mailbox() -> None:
    """What the archive once lost: posts whose only attachments are inline (hasAttachments
    false), in a group "me" belongs to; and memberOf groups that have no mailbox."""
    tenant = load(SAMPLE / "tenant.json")
    inline_only = [
        (group["id"], post["id"])
        for group, _, _, post in iter_posts(SAMPLE)
        if post["attachments"] and all(a["isInline"] for a in post["attachments"])
        and tenant["me"] in group["@sim.members"]
    ]
    assert inline_only
    others = [g for g in groups_of(SAMPLE, mailbox_only=False) if g["groupTypes"] == []]
    kinds = {(g["mailEnabled"], g["securityEnabled"]) for g in others}
    assert kinds == {(False, True), (True, False)}  # a security group, a distribution list
    assert all(tenant["me"] in g["@sim.members"] for g in others)


def png_chunks(data: bytes) -> list[bytes]:
    assert data.startswith(PNG_SIGNATURE)
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append(kind)
        at += 12 + length
    return chunks


def check_pdf(data: bytes) -> None:
    """Header, trailer, and an xref table whose offsets point at their objects."""
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    startxref = int(data.rsplit(b"startxref", 1)[1].split()[0])
    assert data[startxref:].startswith(b"xref")
    lines = data[startxref:].split(b"\n")
    count = int(lines[1].split()[1])
    for number in range(1, count):
        offset = int(lines[2 + number][:10])
        assert data[offset:].startswith(b"%d 0 obj" % number)


def test_sample_pdf_and_png_are_real_files() -> None:
    files = [a for *_, a in iter_attachments(SAMPLE) if "@sim.contentFile" in a]
    pdfs = [SAMPLE / a["@sim.contentFile"] for a in files if a["contentType"] == "application/pdf"]
    pngs = [SAMPLE / a["@sim.contentFile"] for a in files if a["contentType"] == "image/png"]
    assert pdfs and pngs
    for path in pdfs:
        check_pdf(path.read_bytes())
    budget = (SAMPLE / "files" / "budget-2025-q1.pdf").read_bytes()
    assert b"(Quarterly budget 2025 \\227 confidential) Tj" in budget
    for path in pngs:
        assert png_chunks(path.read_bytes()) == [b"IHDR", b"IDAT", b"IEND"]


def test_sample_has_non_ascii_text() -> None:
    text = "".join(
        c["topic"] + p["body"]["content"] + p["sender"]["emailAddress"]["name"]
        for _, c, _, p in iter_posts(SAMPLE)
    )
    for sample in ("é", "ü", "ß", "日本語", "中文", "נועה", "🎉"):
        assert sample in text, sample
    ranges = {
        "CJK": (0x4E00, 0x9FFF),
        "Arabic": (0x0600, 0x06FF),
        "Hebrew": (0x0590, 0x05FF),
        "emoji": (0x1F300, 0x1FAFF),
    }
    for name, (lo, hi) in ranges.items():
        assert any(lo <= ord(ch) <= hi for ch in text), name


def test_sample_hostile_post_is_labelled() -> None:
    hostile = [
        p
        for _, c, _, p in iter_posts(SAMPLE)
        if "Suspicious" in c["topic"] and "<script" in p["body"]["content"]
    ]
    assert hostile
    body = hostile[0]["body"]["content"]
    assert "onerror=" in body and 'href="javascript:' in body


# --- the generator --------------------------------------------------------------------------


def generate(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


SMALL = ("--groups", "2", "--threads", "10", "--posts", "40", "--seed", "1")


def test_generator_counts_format_and_determinism(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    result = generate(first, *SMALL)
    assert result.returncode == 0, result.stderr
    assert "40 posts" in result.stdout
    assert generate(second, *SMALL).returncode == 0

    check_tenant_format(first)
    check_ids(first)
    check_received_increasing(first)
    assert len(groups_of(first)) == 2
    threads = [
        t for g in groups_of(first) for c in conversations_of(first, g) for t in c["threads"]
    ]
    assert len(threads) == 10
    assert all(1 <= len(t["posts"]) <= 100 for t in threads)
    assert sum(len(t["posts"]) for t in threads) == 40
    assert len(list(iter_attachments(first))) == 4  # default: posts / 10
    me = load(first / "tenant.json")["me"]
    assert all(me in g["@sim.members"] for g in groups_of(first))

    assert snapshot(first) == snapshot(second)


def test_generator_seed_and_options(tmp_path: Path) -> None:
    out = tmp_path / "t"
    args = ("--groups", "3", "--threads", "7", "--posts", "300", "--seed", "2")
    result = generate(out, *args, "--attachments", "25", "--words", "20")
    assert result.returncode == 0, result.stderr
    check_tenant_format(out)
    assert len(list(iter_attachments(out))) == 25
    threads = [t for g in groups_of(out) for c in conversations_of(out, g) for t in c["threads"]]
    assert sum(len(t["posts"]) for t in threads) == 300
    assert max(len(t["posts"]) for t in threads) <= 100
    for path in (out / "files").iterdir():
        if path.suffix == ".pdf":
            check_pdf(path.read_bytes())
        elif path.suffix == ".png":
            png_chunks(path.read_bytes())

    other = tmp_path / "other"
    assert generate(other, *args[:-1], "3", "--attachments", "25", "--words", "20").returncode == 0
    assert snapshot(out) != snapshot(other)


@pytest.mark.parametrize(
    "args",
    [
        ("--groups", "1", "--threads", "10", "--posts", "5", "--seed", "1"),
        ("--groups", "1", "--threads", "1", "--posts", "101", "--seed", "1"),
        ("--groups", "0", "--threads", "1", "--posts", "1", "--seed", "1"),
    ],
)
def test_generator_rejects_impossible_shapes(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = generate(tmp_path / "t", *args)
    assert result.returncode == 2
    assert not (tmp_path / "t").exists()
