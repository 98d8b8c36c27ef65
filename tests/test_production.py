"""Productions (``export --format production``) of the synced sample archive, loaded back the
way a review platform would: the DAT parsed with the csv module, every hash checked against
the files and the archive; then damaged, and ``verify --export`` finding each change."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import stat
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import groupsync.search
from groupsync.archive import Archive
from groupsync.cli import cli
from groupsync.export import PARTIAL_EXIT
from groupsync.production import (
    CSV_FILE,
    DAT_FILE,
    DAT_NEWLINE,
    FIELDS,
    VALUE_CAP,
    ProductionOptions,
    csv_row,
    dat_row,
    dat_value,
    produce,
)

from . import hostile
from .conftest import copy_sample, one_error_line, rows, run_cli

CONTROL = re.compile(r"ABC\d{7}")
SAFE_PATH = re.compile(r"(NATIVES|TEXT)/\d{4}/ABC\d{7}\.[a-z0-9]{1,10}")


def load_dat(out: Path) -> list[dict[str, str]]:
    """The DAT as a review platform reads it: UTF-8, BOM stripped, þ quotes, ASCII 20."""
    data = (out / DAT_FILE).read_bytes()
    assert data.startswith("\ufeff".encode())
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF, one row a line
    text = data.decode("utf-8")[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\x14", quotechar="þ")
    header, *body = list(reader)
    assert header == list(FIELDS)
    assert all(len(row) == len(FIELDS) for row in body)
    return [dict(zip(header, row, strict=True)) for row in body]


def load_csv(out: Path) -> list[dict[str, str]]:
    text = (out / CSV_FILE).read_bytes().decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def archive_posts(db: Path) -> dict[str, dict]:
    """Every live post: its current version (JSON and SHA-256) and its attachments' hashes."""
    posts = {
        post_id: {"version": json.loads(j), "sha256": sha, "topic": topic}
        for post_id, j, sha, topic in rows(
            db,
            "SELECT p.id, v.json, v.sha256, t.topic FROM posts p JOIN post_versions v "
            "ON v.post_id = p.id AND v.changeKey = p.changeKey "
            "JOIN threads t ON t.id = p.thread_id WHERE p.deleted_at IS NULL",
        )
    }
    for post_id, attachment_id, sha256 in rows(db, "SELECT post_id, id, sha256 FROM attachments"):
        if post_id in posts:
            posts[post_id].setdefault("hashes", {})[attachment_id] = sha256
    return posts


@pytest.fixture(scope="module")
def produced(sample_archive, tmp_path_factory) -> tuple[Path, Path]:
    """A production of the whole sample archive through the CLI: (archive, folder)."""
    root = tmp_path_factory.mktemp("production")
    db = copy_sample(sample_archive, root / "archive.db")
    out = root / "out"
    result = CliRunner().invoke(
        cli,
        ["export", "--format", "production", "--out", str(out), "--prefix", "ABC", "--json"],
        env={"GROUPSYNC_DB": str(db)},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["format"] == "production" and summary["failed"] == 0
    return db, out


def test_the_dat_loads_back_with_every_document_family_and_hash(produced):
    db, out = produced
    docs = load_dat(out)
    posts = archive_posts(db)
    expected = sum(1 + len(p["version"].get("attachments") or []) for p in posts.values())
    assert len(docs) == expected
    assert [d["BEGBATES"] for d in docs] == [f"ABC{n:07d}" for n in range(1, len(docs) + 1)]
    assert all(d["BEGBATES"] == d["ENDBATES"] for d in docs)
    emails = [d for d in docs if d["DOCTYPE"] == "EMAIL"]
    assert {d["POSTID"] for d in emails} == set(posts)  # one family per post
    by_control = {d["BEGBATES"]: d for d in docs}
    for doc in docs:
        parent = by_control[doc["FAMILYID"]]
        assert parent["DOCTYPE"] == "EMAIL" and parent["POSTID"] == doc["POSTID"]
        assert doc["BEGATTACH"] == parent["BEGBATES"] and doc["ENDATTACH"] == parent["ENDATTACH"]
        assert doc["PARENTID"] == ("" if doc is parent else parent["BEGBATES"])
        assert SAFE_PATH.fullmatch(doc["TEXTPATH"]) and (out / doc["TEXTPATH"]).is_file()
        if doc["NATIVEPATH"]:
            assert SAFE_PATH.fullmatch(doc["NATIVEPATH"])
            data = (out / doc["NATIVEPATH"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == doc["SHA256"]
            assert hashlib.md5(data).hexdigest() == doc["MD5HASH"]
            assert str(len(data)) == doc["FILESIZE"]
    for parent in emails:
        post = posts[parent["POSTID"]]
        children = [d for d in docs if d["PARENTID"] == parent["BEGBATES"]]
        # a family is contiguous, the post first, its attachments in Graph's order
        assert [d["BEGBATES"] for d in children] == (
            parent["ATTACHIDS"].split(";") if parent["ATTACHIDS"] else []
        )
        assert parent["ENDATTACH"] == (children[-1] if children else parent)["BEGBATES"]
        graph = post["version"].get("attachments") or []
        assert [d["ATTACHMENTID"] for d in children] == [a["id"] for a in graph]
        # the post's native is the archived version, as .eml
        assert parent["VERSIONSHA256"] == post["sha256"]
        message = message_from_bytes(
            (out / parent["NATIVEPATH"]).read_bytes(), policy=email_policy.default
        )
        assert str(message["X-Groupsync-Post-Id"]) == parent["POSTID"]
        assert str(message["X-Groupsync-Version-SHA256"]) == post["sha256"]
        assert "Subject: " in (out / parent["TEXTPATH"]).read_text()
        for child in children:
            stored = post.get("hashes", {}).get(child["ATTACHMENTID"])
            if stored:  # the original bytes, as the archive holds them
                assert child["SHA256"] == stored and child["NATIVEPATH"].startswith("NATIVES/")
            else:
                assert not child["NATIVEPATH"] and "no native" in child["NOTE"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == len(docs)
    assert manifest["counts"]["families"] == len(emails) == len(posts)
    head = rows(db, "SELECT id, digest FROM sync_runs WHERE digest IS NOT NULL ORDER BY id DESC")
    assert manifest["archive"]["chain_head"] == {"run_id": head[0][0], "digest": head[0][1]}
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {"manifest.json"}
    for path, entry in listed.items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == entry["sha256"]


def test_the_csv_holds_the_same_rows_exactly(produced):
    _db, out = produced
    dat, table = load_dat(out), load_csv(out)
    assert len(dat) == len(table)
    for d, c in zip(dat, table, strict=True):
        assert {k: dat_value(v) for k, v in c.items()} == d


def test_duplicates_are_reported_with_their_control_numbers(produced):
    _db, out = produced
    docs = load_dat(out)
    by_hash: dict[str, list[str]] = {}
    for doc in docs:
        if doc["DOCTYPE"] == "ATTACHMENT" and doc["NATIVEPATH"]:
            by_hash.setdefault(doc["SHA256"], []).append(doc["BEGBATES"])
    expected = [
        {"sha256": h, "control_numbers": numbers}
        for h, numbers in by_hash.items()
        if len(numbers) > 1
    ]
    assert expected, "the sample tenant attaches one file to two posts"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["production"]["duplicates"] == expected
    for entry in expected:
        first, *others = entry["control_numbers"]
        for doc in docs:
            if doc["BEGBATES"] in others:
                assert doc["DUPLICATEOF"] == first and doc["NATIVEPATH"]  # still produced
            elif doc["BEGBATES"] == first:
                assert doc["DUPLICATEOF"] == ""


def test_numbering_is_stable(produced, tmp_path):
    db, out = produced
    again = tmp_path / "again"
    with Archive(db, readonly=True) as archive:
        produce(archive, ProductionOptions(out=again, prefix="ABC"))
    for name in (DAT_FILE, CSV_FILE):
        assert (again / name).read_bytes() == (out / name).read_bytes()


def verify(db: Path, out: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(
        cli, ["verify", "--export", str(out)], env={"GROUPSYNC_DB": str(db)}
    )
    return result.exit_code, result.stdout.splitlines()


def test_verify_passes_then_finds_a_changed_native_a_deleted_text_and_an_edited_row(
    produced, tmp_path
):
    db, out = produced
    assert verify(db, out) == (0, [])
    docs = load_dat(out)
    attachment = next(d for d in docs if d["DOCTYPE"] == "ATTACHMENT" and d["NATIVEPATH"])
    email = next(d for d in docs if d["DOCTYPE"] == "EMAIL")

    changed = tmp_path / "changed"
    shutil.copytree(out, changed)
    with open(changed / attachment["NATIVEPATH"], "ab") as native:
        native.write(b"tampered")
    code, lines = verify(db, changed)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"changed-file: {attachment['NATIVEPATH']}: ")

    deleted = tmp_path / "deleted"
    shutil.copytree(out, deleted)
    (deleted / email["TEXTPATH"]).unlink()
    code, lines = verify(db, deleted)
    assert (code, lines) == (1, [f"missing-file: {email['TEXTPATH']}: is missing"])

    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    dat = (edited / DAT_FILE).read_bytes().decode("utf-8")
    forged = "0" * 64
    assert dat.count(attachment["SHA256"]) >= 1
    (edited / DAT_FILE).write_bytes(dat.replace(attachment["SHA256"], forged).encode("utf-8"))
    code, lines = verify(db, edited)
    assert code == 1
    assert any(line.startswith(f"changed-file: {DAT_FILE}: ") for line in lines)
    assert any(f"{attachment['BEGBATES']}: says {attachment['NATIVEPATH']}" in x for x in lines)
    assert any(line.startswith("archive-mismatch: ") and forged in line for line in lines)
    assert any(line.startswith(f"load-file: {CSV_FILE} ") for line in lines)


def test_a_query_produces_whole_families_of_what_search_finds(indexed_sample, tmp_path):
    db, index = indexed_sample
    work = tmp_path / "a.db"
    shutil.copy(db, work)
    shutil.copytree(index, groupsync.search.index_path_for(work))
    try:
        with Archive(work, readonly=True) as archive:
            hits = groupsync.search.search(archive, groupsync.search.index_path_for(work),
                                           "invoice", limit=1000)  # fmt: skip
            found = {h.post_id for h in hits.hits}
        assert found
        out = tmp_path / "out"
        result = CliRunner().invoke(
            cli,
            ["export", "--format", "production", "--out", str(out), "--prefix", "ABC",
             "--query", "invoice"],
            env={"GROUPSYNC_DB": str(work)},
        )  # fmt: skip
    finally:
        groupsync.search.close_indexes()
    assert result.exit_code == 0, result.output
    docs = load_dat(out)
    assert {d["POSTID"] for d in docs if d["DOCTYPE"] == "EMAIL"} == found
    posts = archive_posts(work)
    assert len(docs) == sum(1 + len(posts[p]["version"].get("attachments") or []) for p in found)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters"]["query"] == "invoice"
    assert manifest["filters"]["posts_selected"] == len(found)


def test_a_query_against_an_index_behind_the_archive_is_refused(indexed_sample, tmp_path, mounts):
    db, index = indexed_sample
    source = tmp_path / "source"
    source.mkdir()
    work = source / "a.db"
    shutil.copy(db, work)
    shutil.copytree(index, groupsync.search.index_path_for(work))
    with Archive.open_for_writing(work) as archive, archive.atomic():
        group_id, thread_id, version = rows(
            work,
            "SELECT p.group_id, p.thread_id, v.json FROM posts p JOIN post_versions v "
            "ON v.post_id = p.id AND v.changeKey = p.changeKey LIMIT 1",
        )[0]
        post = json.loads(version)
        post["changeKey"] = "edited-upstream"
        archive.save_posts(group_id, thread_id, [post], "2026-01-01T00:00:00Z")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    mounts(["--bind", str(source)], evidence)
    mounts(["-o", "remount,bind,ro"], evidence)
    result = run_cli(
        "export", "--format", "production", "--out", str(tmp_path / "out"), "--query", "invoice",
        db=evidence / "a.db", env={"GROUPSYNC_ACCESS_LOG": str(tmp_path / "case.access")},
    )  # fmt: skip
    line = one_error_line(result)
    assert "behind the archive" in line and "groupsync index" in line
    assert result.returncode == 2


@pytest.mark.parametrize("prefix", ["A-B", "", "þ", "x" * 21, "../x", "AB C", "AB\n"])
def test_a_bad_prefix_is_one_line(produced, tmp_path, prefix):
    db, _out = produced
    result = CliRunner().invoke(
        cli,
        ["export", "--format", "production", "--out", str(tmp_path / "o"), "--prefix", prefix],
        env={"GROUPSYNC_DB": str(db)},
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--prefix takes" in result.stderr
    assert not (tmp_path / "o").exists()


def test_prefix_is_for_productions_and_the_folder_must_be_empty(produced, tmp_path):
    db, out = produced
    env = {"GROUPSYNC_DB": str(db)}
    runner = CliRunner()
    result = runner.invoke(
        cli, ["export", "--format", "eml", "--out", str(tmp_path / "o"), "--prefix", "X"], env=env
    )
    assert result.exit_code == 2 and "--prefix goes with --format production" in result.stderr
    result = runner.invoke(cli, ["export", "--format", "production", "--out", str(out)], env=env)
    assert result.exit_code == 2 and "not an empty folder" in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_attachment_without_its_bytes_keeps_the_family_whole_and_exits_4(
    sample_archive, tmp_path
):
    db = copy_sample(sample_archive, tmp_path / "a.db")
    post_id, attachment_id, sha256 = rows(
        db, "SELECT post_id, id, sha256 FROM attachments WHERE sha256 IS NOT NULL LIMIT 1"
    )[0]
    rows(db, "DELETE FROM blobs WHERE sha256 = ?", (sha256,))
    out = tmp_path / "out"
    result = run_cli("export", "--format", "production", "--out", str(out), db=db, umask=0)
    assert result.returncode == PARTIAL_EXIT, result.stderr
    assert b"FAILED" in result.stderr
    docs = load_dat(out)
    family = [d for d in docs if d["POSTID"] == post_id]
    lost = next(d for d in family if d["ATTACHMENTID"] == attachment_id)
    assert not lost["NATIVEPATH"] and "could not be read" in lost["NOTE"]
    assert family[0]["ATTACHIDS"].split(";") == [d["BEGBATES"] for d in family[1:]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(f["post_id"] == post_id for f in manifest["failures"])
    assert manifest["counts"]["failed"] == len(manifest["failures"])
    for path in [out, *out.rglob("*")]:  # private whatever the umask
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_hostile_mail_does_not_break_the_load_files(hostile_archive, tmp_path):
    out = tmp_path / "out"
    with Archive(hostile_archive, readonly=True) as archive:
        report = produce(archive, ProductionOptions(out=out, prefix="ABC"))
    docs, table = load_dat(out), load_csv(out)
    posts = archive_posts(hostile_archive)
    assert report.posts == len(posts)
    assert report.failed == 0  # hostile text is data, never a failure
    names = {
        (post_id, a["id"]): a.get("name") or ""
        for post_id, post in posts.items()
        for a in post["version"].get("attachments") or []
    }
    hostile_names = {n for (_p, a), n in names.items() if a.startswith("hostile")}
    assert set(hostile.STORABLE) <= hostile_names | {""}
    seen = set()
    for doc, exact in zip(docs, table, strict=True):
        assert CONTROL.fullmatch(doc["BEGBATES"])
        for path in (doc["NATIVEPATH"], doc["TEXTPATH"]):
            assert not path or SAFE_PATH.fullmatch(path), path
        if doc["DOCTYPE"] == "EMAIL":
            topic = posts[doc["POSTID"]]["topic"] or ""
            assert exact["SUBJECT"] == topic[:VALUE_CAP]
            assert doc["SUBJECT"] == dat_value(topic[:VALUE_CAP])
        else:
            name = names[(doc["POSTID"], doc["ATTACHMENTID"])]
            assert exact["FILENAME"] == name[:VALUE_CAP]
            assert doc["FILENAME"] == dat_value(name[:VALUE_CAP])
            seen.add(name)
        for value in doc.values():
            assert "\r" not in value and "\n" not in value
    assert set(hostile.STORABLE) <= seen | {""}


# Any text an archive can hold: every character but lone surrogates (UTF-8 cannot).
STORABLE_TEXT = st.one_of(
    st.sampled_from(hostile.STORABLE),
    st.text(
        alphabet=st.one_of(
            st.characters(exclude_categories=["Cs"]),
            st.sampled_from(["\x14", "þ", DAT_NEWLINE, "\r", "\n", '"', "\x00", "\ufeff"]),
        ),
        max_size=200,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STORABLE_TEXT, min_size=1, max_size=8))
def test_any_values_round_trip_through_the_dat_and_the_csv(values):
    line = dat_row(values).encode("utf-8")
    assert line.endswith(b"\r\n") and line.count(b"\r\n") == 1  # one row, one line
    read = list(
        csv.reader(io.StringIO(line.decode("utf-8"), newline=""), delimiter="\x14", quotechar="þ")
    )
    assert read == [[dat_value(v) for v in values]]
    # ® stands for a line break: decoded, a value is itself with its line ends as \n
    for got, value in zip(read[0], values, strict=True):
        assert got.replace(DAT_NEWLINE, "\n") == re.sub(r"\r\n|\r", "\n", value).replace(
            DAT_NEWLINE, "\n"
        )
        if DAT_NEWLINE not in value and "\r" not in value and "\n" not in value:
            assert got == value
    exact = list(csv.reader(io.StringIO(csv_row(values), newline="")))
    assert exact == [values]


def test_text_is_what_the_search_index_extracts(produced):
    db, out = produced
    docs = {d["FILENAME"]: d for d in load_dat(out) if d["DOCTYPE"] == "ATTACHMENT"}
    notes = docs["release-notes-2.4.txt"]
    (content,) = rows(db, "SELECT content FROM blobs WHERE sha256 = ?", (notes["SHA256"],))[0]
    assert (out / notes["TEXTPATH"]).read_text() == content.decode("utf-8").lstrip("\ufeff")
    assert notes["FILEEXT"] == "txt" and notes["NOTE"] == ""
    pdf = docs["Budget Q1 2025 – Marketing.pdf"]
    assert pdf["FILEEXT"] == "pdf" and (out / pdf["TEXTPATH"]).read_text().strip()
    html = docs["Invoice_88412.html"]
    assert "<" not in (out / html["TEXTPATH"]).read_text()  # as text, not markup
    logo = docs["contoso-outdoor-logo.png"]
    assert (out / logo["TEXTPATH"]).read_bytes() == b"" and "no text extracted" in logo["NOTE"]
    pptx = docs["Contoso Outdoor Brand Guidelines 2.0.pptx"]  # metadata only, no bytes
    assert not pptx["NATIVEPATH"] and "no native" in pptx["NOTE"]
    assert json.loads((out / pptx["TEXTPATH"]).read_text())["name"] == pptx["FILENAME"]
