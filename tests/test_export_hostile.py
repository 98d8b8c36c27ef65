"""Exports of the hostile archive (``tests/hostile.py``): no mail text aborts them, breaks a
header, or escapes the export folder; what cannot be exported is listed, not fatal."""

from __future__ import annotations

import email.utils
import hashlib
import json
import mailbox
import re
import sqlite3
from email import message_from_bytes
from email import policy as email_policy
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.export import (
    EML_POLICY,
    PARTIAL_EXIT,
    ExportOptions,
    _Exporter,
    _Prefolded,
    export,
)
from groupsync.mailheaders import address_pieces, encoded_words, filename_params, header_text

from . import hostile

# Any text, lone surrogates and every control included.
ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, exclude_categories=()),
        # controls, format characters (bidi, zero-width), separators and lone surrogates,
        # which the line above draws only rarely
        st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp"]),
    ),
    max_size=300,
)
HOSTILE_OR_ANY = st.one_of(st.sampled_from(hostile.ALL), ANY_TEXT)
SAFE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def live_posts(db: Path) -> dict[str, dict]:
    """Every live post's archived version and thread topic."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT p.id, v.json, t.topic FROM posts p JOIN post_versions v "
            "ON v.post_id = p.id AND v.changeKey = p.changeKey "
            "JOIN threads t ON t.id = p.thread_id WHERE p.deleted_at IS NULL"
        ).fetchall()
    return {post_id: {"version": json.loads(j), "topic": topic} for post_id, j, topic in rows}


def run_export(db: Path, out: Path, fmt: str) -> tuple[dict, dict]:
    with Archive.open_for_writing(db) as archive:
        report = export(archive, ExportOptions(format=fmt, out=out), identity="tester")
    manifest = json.loads((out / "manifest.json").read_text())
    return report.as_dict(), manifest


def check_manifest(out: Path, manifest: dict) -> None:
    """Every file on disk is in the manifest with its hash, and is safely named."""
    on_disk = {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
    } - {"manifest.json"}
    assert {f["path"] for f in manifest["files"]} == on_disk
    for entry in manifest["files"]:
        assert SAFE_PATH.fullmatch(entry["path"]), entry["path"]
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]


def header_blocks(data: bytes, linesep: bytes) -> list[bytes]:
    """Every header block of a message (the top one and each part's), as raw bytes."""
    blank = linesep * 2
    blocks = [data.split(blank, 1)[0]]
    for boundary in set(re.findall(rb'boundary="([^"]+)"', data)):
        for chunk in data.split(b"--" + boundary)[1:]:
            if not chunk.startswith(b"--"):
                blocks.append(chunk[len(linesep) :].split(blank, 1)[0])
    return blocks


def check_headers(data: bytes, linesep: bytes) -> None:
    """In every header block: no CR or LF but the line ends, printable ASCII only, no line
    over 998, and every line a header or a continuation (nothing injected)."""
    blocks = header_blocks(data, linesep)
    assert len(blocks) > 1 or b"multipart" not in blocks[0]
    for block in blocks:
        for line in block.split(linesep):
            assert len(line) <= 998
            assert re.fullmatch(rb"[\t\x20-\x7e]*", line), line[:200]
            assert line[:1] in (b" ", b"\t") or re.match(rb"[A-Za-z0-9-]+: ?", line), line[:200]


def python_filename(name: str) -> str:
    """What ``EmailMessage.get_filename`` gives for a parameter that decodes to ``name``:
    it strips spaces, and one pair of quotes or angle brackets (``email.utils.unquote``)."""
    return email.utils.unquote(name).strip()


def attachment_parts(message: EmailMessage) -> dict[str, EmailMessage]:
    return {
        str(part["X-Groupsync-Attachment-Id"]): part
        for part in message.walk()
        if part["X-Groupsync-Attachment-Id"] is not None
    }


def check_message(message: EmailMessage, posts: dict[str, dict], failed: set[str]) -> str:
    """One parsed message against the archive: subject, names, every attachment's name."""
    post_id = str(message["X-Groupsync-Post-Id"])
    post = posts[post_id]
    version = post["version"]
    assert str(message["Subject"]) == header_text(post["topic"])
    assert message["Bcc"] is None
    for name in ("From", "Sender", "To", "Cc"):
        if message[name] is not None:
            for address in message[name].addresses:
                assert "\r" not in address.display_name and "\n" not in address.display_name
    # Python's parser keeps the folding space between two encoded words of a display name
    # (RFC 2047 drops it; test_hostile_names_round_trip... decodes strictly): no spaces here.
    sender = version["sender"]["emailAddress"]
    display = message["Sender"].addresses[0].display_name.replace(" ", "")
    assert display.startswith(header_text(sender["name"]).replace(" ", "")), (display, sender)
    parts = attachment_parts(message)
    expected = {a["id"] for a in version["attachments"]} - failed
    assert set(parts) == expected
    for attachment in version["attachments"]:
        if attachment["id"] in failed:
            continue
        part = parts[attachment["id"]]
        name = header_text(attachment.get("name") or "attachment")
        names = (python_filename(name), python_filename(f"{name}.json"))
        assert part.get_filename() in names, (part.get_filename(), name)
    return post_id


@pytest.mark.parametrize("fmt", ["eml", "mbox", "jsonl"])
def test_every_hostile_post_exports_and_parses_back(hostile_archive, tmp_path, fmt):
    out = tmp_path / fmt
    report, manifest = run_export(hostile_archive, out, fmt)
    posts = live_posts(hostile_archive)
    check_manifest(out, manifest)
    assert manifest["failures"] == [] and report["failed"] == 0
    assert report["posts"] == len(posts)
    seen = []
    if fmt == "eml":
        for path in out.rglob("*.eml"):
            data = path.read_bytes()
            check_headers(data, b"\r\n")
            message = message_from_bytes(data, policy=email_policy.default)
            seen.append(check_message(message, posts, set()))
    elif fmt == "mbox":
        for path in out.glob("*.mbox"):
            data = path.read_bytes()
            assert b"\r" not in data
            box = mailbox.mbox(path, factory=None, create=False)
            try:
                for key in box.iterkeys():
                    raw = box.get_bytes(key)
                    check_headers(raw, b"\n")
                    message = message_from_bytes(raw, policy=email_policy.default)
                    seen.append(check_message(message, posts, set()))
            finally:
                box.close()
    else:
        for path in out.glob("*.jsonl"):
            for line in path.read_bytes().decode("utf-8").split("\n")[:-1]:
                doc = json.loads(line)
                version = posts[doc["id"]]["version"]
                assert doc["from"] == version["from"] and doc["body"] == version["body"]
                assert [a["name"] for a in doc["attachments"]] == [
                    a["name"] for a in version["attachments"]
                ]
                assert doc["@groupsync"]["topic"] == posts[doc["id"]]["topic"]
                seen.append(doc["id"])
    assert sorted(seen) == sorted(posts)


def test_hostile_names_round_trip_where_the_standards_allow(hostile_archive, tmp_path):
    """Every hostile string as a subject and a file name decodes back exactly, but for what
    ``header_text`` neutralises (line breaks, ASCII controls, lone surrogates)."""
    def parsed(name: str, pieces: tuple[str, ...]) -> EmailMessage:
        raw = f"{name}: " + "\r\n ".join(pieces) + "\r\n\r\nbody\r\n"  # as _Prefolded folds
        return message_from_bytes(raw.encode("ascii"), policy=email_policy.default)

    for text in hostile.ALL:
        expected = header_text(text)
        assert str(parsed("Subject", encoded_words(text))["Subject"]) == expected, repr(text)
        if expected:
            part = parsed("Content-Disposition", ("attachment;", *filename_params(text)))
            assert part.get_filename() == python_filename(expected), repr(text)
        # RFC 2047 decoding (email.header), which drops the space between encoded words;
        # Python's address parser keeps it, so it checks only the address itself.
        pieces = address_pieces(text, "a@example.com")
        decoded = str(make_header(decode_header(" ".join(pieces))))
        name = expected.strip()
        assert decoded == (f"{name} <a@example.com>" if name else "a@example.com"), repr(text)
        sender = parsed("From", pieces)["From"]
        assert sender.addresses[0].addr_spec == "a@example.com"


def test_a_post_that_cannot_be_exported_is_listed_and_the_rest_go_on(
    hostile_archive, tmp_path, monkeypatch
):
    posts = sorted(live_posts(hostile_archive))
    doomed, blob_post = posts[3], posts[5]
    message = _Exporter._message

    def failing(self, post, policy):
        if post.id == doomed:
            raise ValueError("cannot build \x1b[2J this one")
        return message(self, post, policy)

    monkeypatch.setattr(_Exporter, "_message", failing)
    with sqlite3.connect(hostile_archive) as conn:
        bad_sha = conn.execute(
            "SELECT sha256 FROM attachments WHERE post_id = ? AND sha256 IS NOT NULL LIMIT 1",
            (blob_post,),
        ).fetchone()[0]
    read_blob = Archive.read_blob

    def unreadable(self, sha256):
        if sha256 == bad_sha:
            raise KeyError(sha256)
        return read_blob(self, sha256)

    monkeypatch.setattr(Archive, "read_blob", unreadable)
    out = tmp_path / "eml"
    result = CliRunner().invoke(
        cli, ["--db", str(hostile_archive), "export", "--format", "eml", "--out", str(out)]
    )
    assert result.exit_code == PARTIAL_EXIT, result.output
    assert "FAILED" in result.stderr and "\x1b" not in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    check_manifest(out, manifest)
    failures = {(f["post_id"], f["what"].split()[0]): f for f in manifest["failures"]}
    assert failures[(doomed, "post")]["reason"] == "ValueError: cannot build \x1b[2J this one"
    assert (blob_post, "attachment") in failures
    assert manifest["counts"]["failed"] == len(manifest["failures"]) >= 2
    exported = {
        str(message_from_bytes(p.read_bytes(), policy=email_policy.default)["X-Groupsync-Post-Id"])
        for p in out.rglob("*.eml")
    }
    assert exported == set(posts) - {doomed}  # the post with a lost attachment is there
    with sqlite3.connect(hostile_archive) as conn:
        status, error = conn.execute(
            "SELECT status, error FROM exports ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert status == "partial" and "failures" in error


@settings(max_examples=300, deadline=None)
@given(HOSTILE_OR_ANY, HOSTILE_OR_ANY)
def test_header_building_never_raises_nor_writes_a_line_break(name, other):
    pieces = [
        *encoded_words(name),
        *encoded_words(name, phrase=True),
        *address_pieces(name, other),
        *address_pieces(other, name),
        *filename_params(name),
    ]
    for piece in pieces:
        assert piece.isascii() and len(piece) <= 998
        assert not any(c in piece for c in "\r\n\x00\x0b\x0c")
    for text in (header_text(name), header_text(other)):
        assert len(text.splitlines()) <= 1 and "\r" not in text and "\n" not in text


@settings(max_examples=200, deadline=None)
@given(HOSTILE_OR_ANY, HOSTILE_OR_ANY, HOSTILE_OR_ANY)
def test_a_message_of_arbitrary_names_flattens_and_parses_back(topic, name, filename):
    """The headers as the exporter sets them, flattened as it flattens: one header each,
    nothing injected, and the subject and file name decode back (neutralised)."""
    message = EmailMessage(policy=EML_POLICY)
    message["Subject"] = _Prefolded.make("Subject", encoded_words(topic))
    message["From"] = _Prefolded.make("From", address_pieces(name, filename))
    message.set_content("body")
    part = EmailMessage(policy=EML_POLICY)
    part.set_content(b"data", "application", "octet-stream")
    part["Content-Disposition"] = _Prefolded.make(
        "Content-Disposition", ("attachment;", *filename_params(filename or "attachment"))
    )
    message.make_mixed()
    message.attach(part)
    buffer = BytesIO()
    BytesGenerator(buffer, policy=EML_POLICY).flatten(message)
    data = buffer.getvalue()
    check_headers(data, b"\r\n")
    back = message_from_bytes(data, policy=email_policy.default)
    assert [k for k in back if k in ("Subject", "From", "Bcc")] == ["Subject", "From"]
    assert str(back["Subject"]) == header_text(topic)
    (attachment,) = back.iter_attachments()
    assert attachment.get_filename() == python_filename(header_text(filename or "attachment"))
