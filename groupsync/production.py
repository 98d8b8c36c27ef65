"""Productions: the archive's posts and attachments as numbered documents a review
platform loads (``groupsync export --format production``).

Every post is a document, and every attachment of it a child document of the same family,
numbered ``PREFIX0000001``... in a stable order (group, conversation, thread, delivery,
then the post's attachments as Graph lists them). A production folder holds::

    NATIVES/0001/GS0000001.eml   the post as .eml (the eml export's message), and each
    NATIVES/0001/GS0000002.pdf   attachment's original bytes; named by control number and
                                 an extension made of letters and digits only
    TEXT/0001/GS0000001.txt      extracted text (UTF-8): a post's headers and body, an
                                 attachment's text as the search index extracts it
    production.dat               the Concordance load file (see ``dat_row``)
    production.csv               the same rows as RFC 4180 CSV, values exact
    manifest.json                every file's SHA-256 and size, counts, selection,
                                 duplicates, chain head (as the other exports)

A family is produced whole or not at all: a post that cannot be made into a message is
left out with its attachments (listed in the manifest's ``failures``); an attachment whose
bytes cannot be read keeps its control number as a document without a native, and is
listed too. Either way the CLI exits ``PARTIAL_EXIT``. See docs/productions.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import mimetypes
import re
import sqlite3
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from email.generator import BytesGenerator
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any

from .archive import Archive, utc_now
from .archive.queries import exports as queries
from .errors import GroupsyncError
from .export import (
    EML_POLICY,
    MANIFEST,
    ExportError,
    ExportOptions,
    ExportReport,
    _Audit,
    _Exporter,
    _HashingFile,
    _Post,
    _when,
    _Writing,
    new_folder,
    parse_bound,
    selection,
)
from .html import to_text
from .integrity import Problem

__all__ = [
    "CSV_FILE",
    "DAT_FILE",
    "DAT_DELIMITER",
    "DAT_NEWLINE",
    "DAT_QUOTE",
    "DEFAULT_PREFIX",
    "FIELDS",
    "ProductionOptions",
    "check_prefix",
    "check_production",
    "dat_row",
    "dat_value",
    "posts_matching",
    "produce",
    "read_dat",
]

DAT_FILE = "production.dat"
CSV_FILE = "production.csv"
DAT_DELIMITER = "\x14"  # ASCII 20 (DC4), Concordance's default field separator
DAT_QUOTE = "\u00fe"  # þ (254), Concordance's default text qualifier
DAT_NEWLINE = "\u00ae"  # ® (174), what a line break inside a value is written as
BOM = "\ufeff"
# Values longer than this are cut (and listed in the manifest's "truncated"): a metadata
# field of a review platform, and Python's csv reader (131,072 by default), stop short of
# what a hostile topic or file name can hold; the native keeps the whole value.
VALUE_CAP = 32_000
PER_FOLDER = 1000  # documents per NATIVES/ and TEXT/ subfolder, as productions are split
DEFAULT_PREFIX = "GS"

# The load file's fields, in order (docs/productions.md says what each holds).
FIELDS = (
    "BEGBATES",
    "ENDBATES",
    "BEGATTACH",
    "ENDATTACH",
    "PARENTID",
    "FAMILYID",
    "ATTACHIDS",
    "ATTACHCOUNT",
    "DOCTYPE",
    "CUSTODIAN",
    "FROM",
    "TO",
    "CC",
    "DATESENT",
    "SUBJECT",
    "FILENAME",
    "FILEEXT",
    "FILESIZE",
    "SHA256",
    "MD5HASH",
    "NATIVEPATH",
    "TEXTPATH",
    "GROUPNAME",
    "GROUPID",
    "CONVERSATIONID",
    "THREADID",
    "POSTID",
    "ATTACHMENTID",
    "VERSIONSHA256",
    "DUPLICATEOF",
    "NOTE",
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def check_prefix(prefix: str) -> str:
    """The control-number prefix: 1 to 20 ASCII letters and digits (it names files)."""
    if not re.fullmatch(r"[A-Za-z0-9]{1,20}", prefix or ""):
        raise ExportError(
            f"--prefix takes 1 to 20 letters and digits (A-Z, a-z, 0-9), not {prefix!r}"
        )
    return prefix


def dat_value(value: str) -> str:
    """A value as the DAT holds it: each line break (CRLF, CR or LF) written as ®, the
    convention Concordance and Relativity read back as a new line. The text qualifier (þ)
    is doubled by the writer, as in CSV."""
    return _LINE_BREAK.sub(DAT_NEWLINE, value)


def dat_row(values: list[str] | tuple[str, ...]) -> str:
    """One line of the DAT: every value between þ, separated by ASCII 20, a þ inside a
    value doubled, line breaks as ®, ended by CRLF. ``csv.reader(..., delimiter="\\x14",
    quotechar="þ")`` reads it back."""
    buffer = io.StringIO()
    csv.writer(
        buffer,
        delimiter=DAT_DELIMITER,
        quotechar=DAT_QUOTE,
        quoting=csv.QUOTE_ALL,
        doublequote=True,
        lineterminator="\r\n",
    ).writerow([dat_value(v) for v in values])
    return buffer.getvalue()


def csv_row(values: list[str] | tuple[str, ...]) -> str:
    """One RFC 4180 record: quoted where needed, quotes doubled, CRLF; values exact."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def read_dat(data: bytes) -> list[list[str]]:
    """A DAT's rows (the header first), values as written (® still standing for a line
    break): what a test or ``verify`` compares."""
    text = data.decode("utf-8")
    text = text.removeprefix(BOM)
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=DAT_DELIMITER, quotechar=DAT_QUOTE, strict=True
    )
    return list(reader)


def posts_matching(
    archive: Archive,
    query: str,
    index_path: str | Path | None = None,
    *,
    include_deleted: bool = False,
    page: int = 5000,
) -> set[str]:
    """The ids of every post a search (groupsync's query syntax) finds. The index is first
    caught up where its folder can be written; one still behind the archive is an error, as
    a production must not silently miss what the archive holds."""
    from . import search

    path = Path(index_path) if index_path else search.index_path_for(archive.path)
    found: set[str] = set()
    offset = 0
    while True:
        results = search.search(
            archive, path, query, limit=page, offset=offset,
            include_deleted=include_deleted, catch_up=True,
        )  # fmt: skip
        if results.behind:
            raise ExportError(
                f"the search index {path} is {results.behind} change(s) behind the archive: "
                "run `groupsync index`, then produce again"
            )
        hits = list(results.hits)
        found.update(h.post_id for h in hits)
        if len(hits) < page:
            return found
        offset += len(hits)


@dataclass
class ProductionOptions:
    """What to produce and where. ``out`` must be a new or empty folder; ``selection``
    says how ``produce``'s post ids were chosen (``{"query": ...}``), for the manifest."""

    out: Path
    prefix: str = DEFAULT_PREFIX
    group_ids: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    include_deleted: bool = False
    selection: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Document:
    values: dict[str, str]
    native: bytes | None = None
    extension: str = ""
    text: str = ""


def _extension(name: str | None, content_type: str | None) -> str:
    """A safe extension: the name's own if letters and digits, else the type's, else bin."""
    suffix = PurePosixPath((name or "").replace("\\", "/")).suffix
    if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix):
        return suffix[1:].lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    guessed = None
    if re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", ctype):
        guessed = mimetypes.guess_extension(ctype)
    if guessed and re.fullmatch(r"\.[A-Za-z0-9]{1,10}", guessed):
        return guessed[1:].lower()
    return "bin"


def _mailbox(recipient: Any) -> str:
    email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
    if not isinstance(email, dict):
        return ""
    name, address = str(email.get("name") or ""), str(email.get("address") or "")
    if name and address:
        return f"{name} <{address}>"
    return name or address


def _sent(value: str | None) -> str:
    moment = _when(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


class _Producer(_Writing):
    def __init__(
        self,
        archive: Archive,
        options: ProductionOptions,
        post_ids: Collection[str] | None,
        progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        super().__init__(Path(options.out), ExportReport(format="production", out=str(options.out)))
        self.archive = archive
        self.options = options
        self.post_ids = None if post_ids is None else set(post_ids)
        self.progress = progress
        self.messages = _Exporter(
            archive, ExportOptions(format="eml", out=self.out, group_ids=options.group_ids), None
        )
        self.groups = self.messages.groups
        self.truncated: list[dict[str, Any]] = []
        self.by_hash: dict[str, list[str]] = {}
        self.number = 0
        self.documents = 0
        self.families = 0
        self.first: str | None = None
        self.last: str | None = None
        self._groups_seen: set[str] = set()
        from .search.documents import _AttachmentText  # the index's own extraction

        self.extract = _AttachmentText(archive)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> None:
        options = self.options
        dat = _HashingFile(self.out, DAT_FILE)
        table = _HashingFile(self.out, CSV_FILE)
        try:
            dat.write((BOM + dat_row(FIELDS)).encode("utf-8"))
            table.write(csv_row(FIELDS).encode("utf-8"))
            rows = queries.production_posts(
                self.archive,
                options.group_ids,
                parse_bound(options.since),
                parse_bound(options.until, end=True),
                options.include_deleted,
                self.post_ids,
            )
            for row in rows:
                post = _Post(row)
                family = self._family(post)
                if family is None:
                    continue
                self._write(family, dat, table)
        finally:
            for handle in (dat, table):
                self._done(handle)
        self.report.groups = len(self._groups_seen)

    def _family(self, post: _Post) -> list[_Document] | None:
        """The post and its attachments as documents, numbered; None when the post
        cannot be made into a message (then nothing of it is produced)."""
        try:
            message = self._message(post)
        except Exception as ex:  # noqa: BLE001 - one post must not cost the production
            if isinstance(ex, OSError | sqlite3.Error):
                raise
            del self.messages.failures[:]
            self._failed(post, "post as .eml", ex)
            return None
        for failure in self.messages.failures:
            self.failures.append({**failure, "what": f"{failure['what']} in the post's .eml"})
            self.report.failed += 1
        del self.messages.failures[:]
        self._groups_seen.add(post.group_id)
        documents = [self._post_document(post, message)]
        stored = queries.attachment_hashes(self.archive, post.id)
        for attachment in post.version.get("attachments") or []:
            if isinstance(attachment, dict):
                documents.append(self._attachment_document(post, attachment, stored))
        base = self.number
        numbers = [self._control(base + n + 1) for n in range(len(documents))]
        self.number += len(documents)
        parent = numbers[0]
        for index, (number, document) in enumerate(zip(numbers, documents, strict=True)):
            values = document.values
            values["BEGBATES"] = values["ENDBATES"] = number
            values["BEGATTACH"], values["ENDATTACH"] = parent, numbers[-1]
            values["FAMILYID"] = parent
            values["PARENTID"] = "" if number == parent else parent
            if number == parent:
                values["ATTACHIDS"] = ";".join(numbers[1:])
                values["ATTACHCOUNT"] = str(len(numbers) - 1)
            folder = f"{(base + index) // PER_FOLDER + 1:04d}"
            values["TEXTPATH"] = f"TEXT/{folder}/{number}.txt"
            if document.native is not None:
                ext = document.extension
                values["NATIVEPATH"] = f"NATIVES/{folder}/{number}.{ext}"
                if number == parent:
                    values["FILENAME"] = f"{number}.{ext}"
                sha256 = hashlib.sha256(document.native).hexdigest()
                values["SHA256"] = sha256
                values["MD5HASH"] = hashlib.md5(document.native, usedforsecurity=False).hexdigest()
                values["FILESIZE"] = str(len(document.native))
                if number != parent:
                    seen = self.by_hash.setdefault(sha256, [])
                    if seen:
                        values["DUPLICATEOF"] = seen[0]
                    seen.append(number)
        return documents

    def _message(self, post: _Post) -> bytes:
        """The eml export's message, with MIME boundaries made from the version's hash
        (not at random), so that the same archive always gives the same native bytes."""
        message = self.messages._message(post, EML_POLICY)
        for n, part in enumerate(p for p in message.walk() if p.is_multipart()):
            part.set_boundary(f"=_groupsync_{post.version_sha256[:32]}_{n}")
        buffer = BytesIO()
        BytesGenerator(buffer, mangle_from_=False, policy=EML_POLICY).flatten(message)
        return buffer.getvalue()

    def _control(self, n: int) -> str:
        return f"{self.options.prefix}{n:07d}"

    def _post_document(self, post: _Post, message: bytes) -> _Document:
        version = post.version
        group = self.groups.get(post.group_id) or {}
        group_box = _mailbox(
            {"emailAddress": {"name": group.get("displayName"), "address": group.get("mail")}}
        )
        author = _mailbox(version.get("from")) or group_box
        cc = "; ".join(m for m in map(_mailbox, version.get("newParticipants") or []) if m)
        sent = _sent(post.received)
        body = version.get("body") or {}
        kind = "html" if (body.get("contentType") or "html").lower() == "html" else "text"
        header = [
            f"From: {author}",
            f"To: {group_box}",
            *([f"Cc: {cc}"] if cc else []),
            f"Date: {sent}",
            f"Subject: {post.topic or ''}",
        ]
        text = "\n".join(header) + "\n\n" + to_text(body.get("content") or "", kind) + "\n"
        notes = []
        if post.deleted_at:
            notes.append(f"deleted upstream at {post.deleted_at}")
        if post.attachments_note:
            notes.append(str(post.attachments_note))
        values = self._common(post)
        values.update(
            DOCTYPE="EMAIL",
            FROM=author,
            TO=group_box,
            CC=cc,
            DATESENT=sent,
            SUBJECT=post.topic or "",
            FILEEXT="eml",
            VERSIONSHA256=post.version_sha256,
            NOTE="; ".join(notes),
        )
        return _Document(values, message, "eml", text)

    def _attachment_document(
        self, post: _Post, attachment: dict[str, Any], stored: dict[str, str | None]
    ) -> _Document:
        attachment_id = str(attachment.get("id") or "")
        name = str(attachment.get("name") or "")
        content_type = str(attachment.get("contentType") or "")
        sha256 = stored.get(attachment_id)
        values = self._common(post)
        values.update(DOCTYPE="ATTACHMENT", FILENAME=name, ATTACHMENTID=attachment_id)
        graph_type = str(attachment.get("@odata.type") or "").rsplit(".", 1)[-1]
        if not sha256:
            values["FILEEXT"] = ""
            values["FILESIZE"] = str(attachment.get("size") or "")
            values["NOTE"] = (
                f"no native: the archive holds no bytes for this {graph_type or 'attachment'};"
                " the text is its Graph metadata"
            )
            metadata = json.dumps(attachment, ensure_ascii=False, sort_keys=True, indent=2)
            return _Document(values, None, "", metadata + "\n")
        try:
            data = self.archive.read_blob(sha256)
        except GroupsyncError as ex:
            self._failed(post, f"attachment {attachment_id}", ex)
            values["NOTE"] = f"no native: its bytes could not be read ({ex})"[:1000]
            return _Document(values, None, "", "")
        ext = _extension(name, content_type)
        values["FILEEXT"] = ext
        text = self.extract(name, content_type, sha256, len(data))
        if not text:
            values["NOTE"] = (
                f"no text extracted ({content_type or 'no content type'}): groupsync extracts "
                "text from text, HTML and PDF attachments, as its search index does"
            )
        return _Document(values, data, ext, text)

    def _common(self, post: _Post) -> dict[str, str]:
        group = self.groups.get(post.group_id) or {}
        values = dict.fromkeys(FIELDS, "")
        values.update(
            CUSTODIAN=str(group.get("displayName") or group.get("mail") or post.group_id),
            GROUPNAME=str(group.get("displayName") or ""),
            GROUPID=post.group_id,
            CONVERSATIONID=post.conversation_id or "",
            THREADID=post.thread_id,
            POSTID=post.id,
        )
        return values

    # -- writing --------------------------------------------------------------------------

    def _write(self, family: list[_Document], dat: _HashingFile, table: _HashingFile) -> None:
        for document in family:
            values = document.values
            number = values["BEGBATES"]
            if document.native is not None:
                self._file(values["NATIVEPATH"], document.native)
            self._file(values["TEXTPATH"], document.text.encode("utf-8", "surrogatepass"))
            row = []
            for name in FIELDS:
                value = values[name]
                if len(value) > VALUE_CAP:
                    self.truncated.append(
                        {"control_number": number, "field": name, "length": len(value)}
                    )
                    value = value[:VALUE_CAP]
                row.append(value)
            dat.write(dat_row(row).encode("utf-8", "surrogatepass"))
            table.write(csv_row(row).encode("utf-8", "surrogatepass"))
            self.documents += 1
            self.first = self.first or number
            self.last = number
            if values["DOCTYPE"] == "EMAIL":
                self.report.posts += 1
            elif document.native is not None:
                self.report.attachments += 1
            else:
                self.report.attachments_without_bytes += 1
            if self.progress is not None and self.documents % 500 == 0:
                self.progress({"documents": self.documents, "bytes": self.report.bytes})
        self.families += 1

    def _file(self, relative: str, data: bytes) -> None:
        handle = _HashingFile(self.out, relative)
        try:
            handle.write(data)
        finally:
            self._done(handle)

    def manifest_body(self) -> dict[str, Any]:
        return {
            "counts": self.report.counts(documents=self.documents, families=self.families),
            "production": {
                "prefix": self.options.prefix,
                "first": self.first,
                "last": self.last,
                "load_files": {"dat": DAT_FILE, "csv": CSV_FILE},
                "dat": {
                    "encoding": "utf-8 with BOM",
                    "delimiter": "U+0014",
                    "quote": "U+00FE",
                    "newline": "U+00AE",
                    "line_end": "CRLF",
                },
                "fields": list(FIELDS),
                "duplicates": self.duplicates(),
                "truncated": self.truncated,
            },
        }

    def duplicates(self) -> list[dict[str, Any]]:
        return [
            {"sha256": sha256, "control_numbers": numbers}
            for sha256, numbers in self.by_hash.items()
            if len(numbers) > 1
        ]


def produce(
    archive: Archive,
    options: ProductionOptions,
    post_ids: Collection[str] | None = None,
    *,
    identity: str | None = None,
    os_user: str | None = None,
    now: Callable[[], str] = utc_now,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> ExportReport:
    """Write a production of the archive into ``options.out`` and record it as an export.

    ``post_ids`` narrows it to these posts (a search's hits, a hold's posts); None takes
    every post the other options select. Each selected post comes with all its attachments.
    """
    check_prefix(options.prefix)
    out = new_folder(options, "produce")
    filters = {
        **selection(options),
        **options.selection,
        "posts_selected": None if post_ids is None else len(set(post_ids)),
    }
    audit = _Audit(archive, now, "production", what="production", out=out, filters=filters,
                   identity=identity, os_user=os_user)  # fmt: skip
    return audit.run(_Producer(archive, options, post_ids, progress))


def check_production(
    root: Path, manifest: dict[str, Any], archive: Archive | None
) -> list[Problem]:
    """A production's load files against its manifest and, given it, the archive: the DAT's
    header and rows, the CSV row by row, every native and text file a row names (listed,
    same SHA-256 and size), no listed file that no row names, the counts; then each
    attachment's hash and each post's version hash as the archive holds them."""
    problems: list[Problem] = []
    production = _mapping(manifest.get("production"))
    load = _mapping(production.get("load_files"))
    dat_name, csv_name = str(load.get("dat") or DAT_FILE), str(load.get("csv") or CSV_FILE)
    listed = {
        e["path"]: e for e in manifest.get("files") or [] if isinstance(e, dict) and "path" in e
    }
    dat_rows = _read(root / dat_name, problems, delimiter=DAT_DELIMITER, quotechar=DAT_QUOTE)
    csv_rows = _read(root / csv_name, problems)
    header = next(dat_rows, None)
    if header is None:
        return problems or [Problem("load-file", dat_name, "is empty")]
    if header != list(FIELDS):
        problems.append(Problem("load-file", dat_name, "its header is not the production's fields"))
        return problems
    csv_header = next(csv_rows, None)
    if csv_header is not None and csv_header != header:
        problems.append(Problem("load-file", csv_name, "its header is not the DAT's"))
    named: set[str] = set()
    controls: set[str] = set()
    n = csv_count = 0
    for n, row in enumerate(dat_rows, start=1):
        exact = next(csv_rows, None)
        csv_count += exact is not None
        where = f"{dat_name} row {n}"
        if len(row) != len(FIELDS):
            problems.append(
                Problem("load-file", where, f"has {len(row)} fields, not {len(FIELDS)}")
            )
            continue
        values = dict(zip(FIELDS, row, strict=True))
        control = values["BEGBATES"]
        where = f"{dat_name} {control}"
        if control in controls:
            problems.append(Problem("load-file", where, "control number used twice"))
        controls.add(control)
        if exact is not None and [dat_value(v) for v in exact] != row:
            problems.append(Problem("load-file", f"{csv_name} {control}", "differs from the DAT"))
        native, text_path = values["NATIVEPATH"], values["TEXTPATH"]
        for path in (native, text_path):
            if path and path not in listed:
                problems.append(Problem("load-file", where, f"names {path}, not in the manifest"))
            named.add(path)
        entry = listed.get(native)
        if (
            native
            and entry is not None
            and (
                entry.get("sha256") != values["SHA256"]
                or str(entry.get("size")) != values["FILESIZE"]
            )
        ):
            problems.append(
                Problem(
                    "load-file",
                    where,
                    f"says {native} is {values['FILESIZE']} bytes hashing to "
                    f"{values['SHA256']}; the manifest says {entry.get('size')} bytes, "
                    f"{entry.get('sha256')}",
                )
            )
        if archive is not None:
            problems.extend(_against_archive(archive, where, values))
    csv_count += sum(1 for _ in csv_rows)
    if csv_header is not None and csv_count != n:
        problems.append(Problem("load-file", csv_name, f"has {csv_count} rows; the DAT {n}"))
    for path in listed:
        if path.startswith(("NATIVES/", "TEXT/")) and path not in named:
            problems.append(Problem("load-file", path, "is in the manifest, but no row names it"))
    counts = _mapping(manifest.get("counts"))
    if counts.get("documents") not in (None, n):
        problems.append(
            Problem("manifest", MANIFEST, f"counts {counts.get('documents')} documents; "
                    f"{dat_name} has {n}")
        )  # fmt: skip
    return problems


def _read(path: Path, problems: list[Problem], **dialect: Any) -> Iterator[list[str]]:
    """A load file's rows, one at a time (a BOM skipped); one that cannot be read stops
    with a problem."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            yield from csv.reader(stream, strict=True, **dialect)
    except (OSError, UnicodeDecodeError, csv.Error) as ex:
        problems.append(Problem("load-file", path.name, f"cannot be read: {ex}"))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _against_archive(archive: Archive, where: str, values: dict[str, str]) -> list[Problem]:
    """A row's hash against the archive: an attachment's bytes, a post's version."""
    post_id = values["POSTID"]
    if values["DOCTYPE"] == "EMAIL":
        if not queries.has_post_version(archive, post_id, values["VERSIONSHA256"]):
            return [
                Problem(
                    "archive-mismatch",
                    where,
                    f"post {post_id} has no version hashing to {values['VERSIONSHA256']} "
                    "in the archive",
                )
            ]
        return []
    if not values["NATIVEPATH"]:
        return []
    stored = queries.attachment_hashes(archive, post_id).get(values["ATTACHMENTID"])
    if stored != values["SHA256"]:
        return [
            Problem(
                "archive-mismatch",
                where,
                f"attachment {values['ATTACHMENTID']} of post {post_id} hashes to "
                f"{values['SHA256']} here, {stored or 'nothing'} in the archive",
            )
        ]
    return []
