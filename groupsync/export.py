"""Compliance export: the archive's posts as ``.eml`` files, one mbox per group, or JSON lines.

Every format is written one post at a time (only that post and its attachments are in
memory), and ends with ``manifest.json``: each file's SHA-256 and size, the counts, the
filters, who exported and the archive's chain head (see ``integrity``). The export is
recorded in the archive's ``exports`` table with the manifest's SHA-256.

Messages (eml and mbox) are built with ``email.message.EmailMessage`` under the default
policy; the headers made of mail text (subject, names, addresses, categories, attachment
file names) are written by ``mailheaders``: RFC 2047 encoded words, RFC 2231 file names,
folded, and never a line break from the mail, so any name exports:

* ``From``/``Sender`` from Graph's ``from``/``sender`` (for group mail, the group and the
  person), ``To`` the group, ``Cc`` the post's ``newParticipants``, ``Date`` its
  ``receivedDateTime``, ``Subject`` the thread's topic;
* ``Message-ID`` ``<sha256(post id)[:40]@groupsync.invalid>``; ``In-Reply-To`` the post it
  answers (Graph's ``inReplyTo`` when known, else the thread's first post); ``References``
  the thread's first post and that parent;
* the HTML body (base64, so it parses back exactly) with a plain-text alternative
  (``html.to_text``); inline images in a
  ``multipart/related`` beside the HTML with ``Content-ID: <contentId>``; every other
  attachment as a base64 part; an attachment whose bytes the archive does not hold (item
  and reference attachments, or not readable) as its Graph metadata in JSON;
* ``X-Groupsync-*`` headers with the Graph ids, the changeKey and the SHA-256 of the
  post version exported, which ``verify`` vouches for.

A post (or one attachment) that still cannot be exported does not stop the export: it is
left out, listed in the manifest's ``failures`` (post id, what, reason) and counted in
``failed``; the export is recorded as ``partial`` and the CLI exits ``PARTIAL_EXIT`` (4)
after writing the manifest. Only the disk or the archive failing (``OSError``,
``sqlite3.Error``) stops it.
"""

from __future__ import annotations

import abc
import hashlib
import json
import mimetypes
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy as email_policy
from email.generator import BytesGenerator
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from io import BytesIO
from pathlib import Path
from typing import IO, Any, cast

from .archive import Archive, utc_now
from .archive.queries import exports as queries
from .errors import GroupsyncError
from .files import create_private, private_dir, write_private
from .html import to_text
from .mailheaders import address_pieces, encoded_words, filename_params, header_text
from .models import ModelError, parse_datetime
from .version import __version__

__all__ = [
    "FORMATS",
    "PARTIAL_EXIT",
    "ExportError",
    "ExportOptions",
    "ExportReport",
    "export",
    "manifest_head",
    "message_id",
    "new_folder",
    "parse_bound",
    "selection",
]

FORMATS = ("eml", "mbox", "jsonl")
MANIFEST = "manifest.json"
ID_HEADERS = (
    "Message-ID",
    "In-Reply-To",
    "References",
    "X-Groupsync-Post-Id",
    "X-Groupsync-Thread-Id",
    "X-Groupsync-Conversation-Id",
    "X-Groupsync-Group-Id",
    "X-Groupsync-ChangeKey",
    "X-Groupsync-Version-SHA256",
    "X-Groupsync-Attachment-Id",
)
SEARCH_PAGE = 500
# The exit code of an export that finished, manifest and all, without some posts or
# attachments (listed in the manifest's "failures"): not 1, which means nothing usable.
PARTIAL_EXIT = 4


class ExportError(GroupsyncError):
    """An export that cannot be made as asked (a bad date, a non-empty folder, no search)."""

    exit_code = 2


class _VerbatimHeader(UnstructuredHeader):
    """Ids and message ids: one ASCII token, an Exchange id longer than 78 characters, is
    written on one line as it is (RFC 5322 allows 998), not cut into RFC 2047 encoded words,
    and not parsed (they are ours, so known to be plain ASCII)."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        if value.isascii() and len(value) < 900 and not any(c in value for c in "\r\n"):
            kwds["parse_tree"] = None
            kwds["decoded"] = value
        else:
            super().parse(value, kwds)

    # email makes each header class a BaseHeader subclass at run time (the registry mixes
    # it in), which typeshed cannot see: name, _parse_tree and fold come from BaseHeader.
    def fold(self, *, policy: Any) -> str:
        if self._parse_tree is None:  # type: ignore[attr-defined]
            return f"{self.name}: {self}{policy.linesep}"  # type: ignore[attr-defined]
        return super().fold(policy=policy)  # type: ignore[misc]


class _Prefolded(BaseHeader):
    """Header text from ``mailheaders``: ASCII pieces, already encoded, written one per line
    (folded), as they are. ``email`` would parse them again and write ASCII look-alikes of
    encoded words raw; these are built so that they decode back to the mail's text."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = None
        kwds["decoded"] = value

    def init(self, *args: Any, **kw: Any) -> None:
        super().init(*args, **kw)
        self._groupsync_pieces: tuple[str, ...] = ()

    def fold(self, *, policy: Any) -> str:
        lines = policy.linesep + " "
        return f"{self.name}: {lines.join(self._groupsync_pieces)}{policy.linesep}"

    @classmethod
    def make(cls, name: str, pieces: tuple[str, ...] | list[str]) -> _Prefolded:
        header = cls(name, " ".join(pieces))
        header._groupsync_pieces = tuple(pieces)
        return header


class _FoldOnce:
    """A header object reused across messages (see ``_Exporter._set``) is folded once."""

    def fold(self, *, policy: Any) -> str:
        folded = getattr(self, "_groupsync_folded", None)
        if folded is None or folded[0] is not policy:
            folded = (policy, super().fold(policy=policy))  # type: ignore[misc]
            self._groupsync_folded = folded
        return folded[1]


class _Registry(HeaderRegistry):
    """``HeaderRegistry`` makes a new class (``type(...)``) for every header it is asked
    for; an export sets 25 headers per message, so the classes are made once here, and
    fold their text once per object."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            base = super().__getitem__(name)
            made = self._classes[key] = type(base.__name__, (_FoldOnce, base), {})
        return made


def _policy(linesep: str) -> Any:
    registry = _Registry()
    for name in ID_HEADERS:
        registry.map_to_type(name.lower(), _VerbatimHeader)  # type: ignore[arg-type]
    return email_policy.default.clone(linesep=linesep, header_factory=registry)


EML_POLICY = _policy("\r\n")  # RFC 5322 line ends for files read one message at a time
MBOX_POLICY = _policy("\n")  # mbox files are Unix text


def message_id(post_id: str) -> str:
    """The Message-ID an exported post gets: stable, and derived from its Graph id only."""
    return f"<{hashlib.sha256(post_id.encode()).hexdigest()[:40]}@groupsync.invalid>"


def parse_bound(text: str | None, *, end: bool = False) -> str | None:
    """``--since``/``--until`` as ``YYYY-MM-DDTHH:MM:SS`` in UTC, compared to the second.

    A date alone means its first second, or with ``end`` its last (``--until`` includes
    the whole day). A time without an offset is UTC.
    """
    if text is None:
        return None
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                moment += timedelta(days=1, seconds=-1)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ExportError(
            f"not a date or time: {text!r} (try 2024-05-01 or 2024-05-01T09:30Z)"
        ) from None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class ExportOptions:
    """What to export and where. ``out`` is a folder that must be empty or new."""

    format: str
    out: Path
    group_ids: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    include_deleted: bool = False
    query: str | None = None
    index_path: Path | None = None


@dataclass
class ExportReport:
    export_id: int | None = 0
    format: str = ""
    out: str = ""
    groups: int = 0
    posts: int = 0
    attachments: int = 0
    attachments_without_bytes: int = 0
    files: int = 0
    bytes: int = 0
    manifest: str = ""
    manifest_sha256: str = ""
    chain_digest: str | None = None
    notes: list[str] = field(default_factory=list)
    failed: int = 0  # posts and attachments left out, each in the manifest's "failures"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self, **more: int) -> dict[str, int]:
        """The manifest's ``counts``: groups, posts and attachments, then ``more`` (a
        production's documents and families), then files, bytes and failures."""
        return {
            "groups": self.groups,
            "posts": self.posts,
            "attachments": self.attachments,
            "attachments_without_bytes": self.attachments_without_bytes,
            **more,
            "files": self.files,
            "bytes": self.bytes,
            "failed": self.failed,
        }


class _HashingFile:
    """A file written once, front to back, hashed on the way."""

    def __init__(self, root: Path, relative: str) -> None:
        self.relative = relative
        path = root / relative
        private_dir(path.parent)
        self._file: IO[bytes] = create_private(path)
        self._sha = hashlib.sha256()
        self.size = 0
        self.posts = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha.update(data)
        self.size += len(data)

    def close(self) -> dict[str, Any]:
        self._file.close()
        entry = {"path": self.relative, "sha256": self._sha.hexdigest(), "size": self.size}
        if self.posts:
            entry["posts"] = self.posts
        return entry


class _Writing(abc.ABC):
    """What an export and a production keep while they write their folder: the files
    written and the failures (both for the manifest), and the report's counts."""

    @abc.abstractmethod
    def run(self) -> None:
        """Write the folder's files (all but the manifest)."""

    @abc.abstractmethod
    def manifest_body(self) -> dict[str, Any]:
        """The manifest's fields after its head: counts and the like."""

    def __init__(self, out: Path, report: ExportReport) -> None:
        self.out = out
        self.report = report
        self.files: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    def _done(self, handle: _HashingFile) -> None:
        entry = handle.close()
        self.files.append(entry)
        self.report.files += 1
        self.report.bytes += entry["size"]

    def write_manifest(self, head: dict[str, Any]) -> None:
        """The manifest: ``head``, then every file written and every failure; the report
        says where it is and its SHA-256."""
        manifest = {**head, "files": self.files, "failures": self.failures}
        data = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        write_private(self.out / MANIFEST, data)
        self.report.manifest = str(self.out / MANIFEST)
        self.report.manifest_sha256 = hashlib.sha256(data).hexdigest()

    def _failed(self, post: _Post, what: str, error: Exception) -> None:
        """Something of ``post`` left out, for the manifest's ``failures``."""
        self.failures.append(
            {
                "post_id": post.id,
                "group_id": post.group_id,
                "thread_id": post.thread_id,
                "what": what,
                "reason": f"{type(error).__name__}: {error}"[:1000],
            }
        )
        self.report.failed += 1


_ENVELOPE = re.compile(r"[!-~]{1,254}")


def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug[:limit] or "group"


def _address(recipient: Any) -> tuple[str, ...] | None:
    """A Graph recipient as header pieces (``mailheaders.address_pieces``), or None."""
    email = (recipient or {}).get("emailAddress") if isinstance(recipient, dict) else None
    if not isinstance(email, dict):
        return None
    name, address = email.get("name"), email.get("address")
    if not name and not address:
        return None
    return address_pieces(str(name or ""), str(address or ""))


def _address_list(mailboxes: list[tuple[str, ...]]) -> tuple[str, ...]:
    pieces: list[str] = []
    for n, mailbox in enumerate(mailboxes):
        last = n == len(mailboxes) - 1
        pieces += [*mailbox[:-1], mailbox[-1] if last else mailbox[-1] + ","]
    return tuple(pieces)


def _maintype(content_type: str | None, name: str | None) -> tuple[str, str]:
    guess = content_type or (mimetypes.guess_type(name or "")[0]) or "application/octet-stream"
    maintype, _, subtype = guess.lower().partition("/")
    subtype = subtype.split(";")[0].strip()
    if (
        not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}", maintype)
        or not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}", subtype or "")
        or maintype in {"multipart", "message"}  # their bytes would be parsed, not kept
    ):
        return "application", "octet-stream"
    return maintype, subtype


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_datetime(value)
    except ModelError:
        return None


class _Exporter(_Writing):
    def __init__(
        self,
        archive: Archive,
        options: ExportOptions,
        progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        report = ExportReport(format=options.format, out=str(options.out))
        super().__init__(Path(options.out), report)
        self.archive = archive
        self.options = options
        self.progress = progress
        self.groups = self._groups()
        self.roots = self._thread_roots()
        self._open: _HashingFile | None = None
        self._open_group: str | None = None
        self._blobs_written: set[str] = set()
        self._groups_seen: set[str] = set()
        self._headers: dict[tuple[str, str | tuple[str, ...]], Any] = {}

    # -- reading the archive --------------------------------------------------------------

    def _groups(self) -> dict[str, dict[str, Any]]:
        return queries.group_labels(self.archive)

    def _thread_roots(self) -> dict[str, str]:
        """Each thread's first post (deleted ones too), which every reply references."""
        return queries.thread_roots(self.archive, self.options.group_ids)

    def _selected(self) -> set[str] | None:
        if not self.options.query:
            return None
        try:
            from . import search as search_module
        except ImportError:
            search_module = None  # type: ignore[assignment]
        run = getattr(search_module, "search", None)
        if run is None:
            raise ExportError(
                "--query needs full-text search (groupsync.search.search), which this "
                "installation does not have; export without --query, or filter by group/date"
            )
        index_path = self.options.index_path
        if index_path is None:
            index_path = search_module.index_path_for(self.archive.path)
        # The search first catches the index up where its folder can be written.
        found: set[str] = set()
        offset = 0
        while True:
            results = run(
                self.archive,
                index_path,
                self.options.query,
                limit=SEARCH_PAGE,
                offset=offset,
                include_deleted=self.options.include_deleted,
                catch_up=True,
            )
            hits = list(results.hits)
            found.update(h.post_id for h in hits)
            if len(hits) < SEARCH_PAGE:
                return found
            offset += len(hits)

    def _posts(self) -> Iterator[tuple[Any, ...]]:
        options = self.options
        return queries.exported_posts(
            self.archive,
            options.group_ids,
            parse_bound(options.since),
            parse_bound(options.until, end=True),
            options.include_deleted,
        )

    def _attachment_rows(self, post_id: str) -> dict[str, tuple[str | None, str | None]]:
        return queries.attachment_states(self.archive, post_id)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> None:
        selected = self._selected()
        write = {"eml": self._write_eml, "mbox": self._write_mbox, "jsonl": self._write_jsonl}[
            self.options.format
        ]
        report = self.report
        try:
            for row in self._posts():
                if selected is not None and row[0] not in selected:
                    continue
                post = _Post(row)
                self._groups_seen.add(post.group_id)
                counts = (report.attachments, report.attachments_without_bytes, report.failed)
                failures = len(self.failures)
                try:
                    write(post)
                except Exception as ex:  # noqa: BLE001 - one post must not cost the export
                    if isinstance(ex, OSError | sqlite3.Error):
                        raise  # the disk or the archive, not the mail: stop
                    # Nothing of it was written: its attachments are not counted either.
                    report.attachments, report.attachments_without_bytes, report.failed = counts
                    del self.failures[failures:]
                    self._failed(post, f"post as {self.options.format}", ex)
                    continue
                self.report.posts += 1
                if self.progress is not None and self.report.posts % 500 == 0:
                    self.progress({"posts": self.report.posts, "bytes": self.report.bytes})
        finally:
            self._close_open()
        self.report.groups = len(self._groups_seen)

    def manifest_body(self) -> dict[str, Any]:
        return {"counts": self.report.counts()}

    def _close_open(self) -> None:
        if self._open is not None:
            self._done(self._open)
            self._open = None

    def _group_file(self, group_id: str, suffix: str) -> _HashingFile:
        if self._open is None or self._open_group != group_id:
            self._close_open()
            self._open = _HashingFile(self.out, f"{self._group_slug(group_id)}.{suffix}")
            self._open_group = group_id
        return self._open

    def _group_slug(self, group_id: str) -> str:
        group = self.groups.get(group_id) or {}
        name = group.get("mailNickname") or group.get("displayName") or "group"
        return f"{_slug(name)}-{_slug(group_id, 8)}"

    # -- formats --------------------------------------------------------------------------

    def _write_eml(self, post: _Post) -> None:
        data = self._message_bytes(post, EML_POLICY, mangle_from=False)
        received = _when(post.received)
        stamp = received.strftime("%Y%m%dT%H%M%SZ") if received else "undated"
        name = f"{self._group_slug(post.group_id)}/{stamp}-{message_id(post.id)[1:17]}.eml"
        handle = _HashingFile(self.out, name)
        try:
            handle.write(data)
            handle.posts = 1
        finally:
            self._done(handle)

    def _write_mbox(self, post: _Post) -> None:
        data = self._message_bytes(post, MBOX_POLICY, mangle_from=True)
        received = _when(post.received) or datetime(1970, 1, 1, tzinfo=UTC)
        sender = (post.version.get("sender") or post.version.get("from") or {}).get(
            "emailAddress"
        ) or {}
        envelope = re.sub(r"\s+", "", str(sender.get("address") or ""))
        if not _ENVELOPE.fullmatch(envelope):
            envelope = "MAILER-DAEMON"  # the From_ line is one line of ASCII words
        handle = self._group_file(post.group_id, "mbox")
        handle.write(f"From {envelope} {time.asctime(received.utctimetuple())}\n".encode())
        handle.write(data if data.endswith(b"\n") else data + b"\n")
        handle.write(b"\n")
        handle.posts += 1

    def _write_jsonl(self, post: _Post) -> None:
        doc = dict(post.version)
        stored = self._attachment_rows(post.id)
        attachments, blobs = [], []
        for attachment in doc.get("attachments") or []:
            item = dict(attachment)
            sha256 = (stored.get(item.get("id") or "") or (None, None))[0]
            if sha256:
                item["@groupsync.sha256"] = sha256
                item["@groupsync.path"] = f"attachments/{sha256}"
                blobs.append(sha256)
            attachments.append(item)
        doc["attachments"] = attachments
        doc["@groupsync"] = {
            "groupId": post.group_id,
            "threadId": post.thread_id,
            "topic": post.topic,
            "messageId": message_id(post.id),
            "versionSha256": post.version_sha256,
            "deletedDateTime": post.deleted_at,
            "attachmentsNote": post.attachments_note,
        }
        # The line is made before anything is written, so a post that cannot be leaves no trace.
        line = (json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        for sha256 in blobs:
            if sha256 not in self._blobs_written:
                blob = _HashingFile(self.out, f"attachments/{sha256}")
                try:
                    for chunk in self.archive.iter_blob(sha256):
                        blob.write(chunk)
                finally:
                    self._done(blob)
                self._blobs_written.add(sha256)
        self.report.attachments += len(blobs)
        self.report.attachments_without_bytes += len(attachments) - len(blobs)
        handle = self._group_file(post.group_id, "jsonl")
        handle.write(line)
        handle.posts += 1

    # -- one message ------------------------------------------------------------------------

    def _message_bytes(self, post: _Post, policy: Any, *, mangle_from: bool) -> bytes:
        message = self._message(post, policy)
        buffer = BytesIO()
        BytesGenerator(buffer, mangle_from_=mangle_from, policy=policy).flatten(message)
        return buffer.getvalue()

    def _set(self, message: EmailMessage, name: str, value: str | tuple[str, ...]) -> None:
        """A header whose value repeats across posts (a group, a thread, a person) is made
        once and reused: pieces from ``mailheaders`` (a tuple) as they are, an id (a str)
        through ``email``'s own header classes."""
        key = (name, value)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) > 50_000:
                self._headers.clear()
            if isinstance(value, tuple):
                header = _Prefolded.make(name, value)
            else:
                factory = cast(EmailPolicy, message.policy).header_factory  # EML/MBOX_POLICY
                header = factory(name, header_text(value))
            self._headers[key] = header
        message[name] = header

    def _message(self, post: _Post, policy: Any) -> EmailMessage:
        version = post.version
        group = self.groups.get(post.group_id) or {}
        group_address = _address(
            {"emailAddress": {"name": group.get("displayName"), "address": group.get("mail")}}
        )
        message = EmailMessage(policy=policy)
        message["Message-ID"] = message_id(post.id)
        received = _when(post.received)
        if received is not None:
            message["Date"] = received.astimezone(UTC)
        author = _address(version.get("from")) or group_address
        if author is not None:
            self._set(message, "From", author)
        sender = _address(version.get("sender"))
        if sender is not None:
            self._set(message, "Sender", sender)
        if group_address is not None:
            self._set(message, "To", group_address)
        participants = [
            a for a in (_address(r) for r in version.get("newParticipants") or []) if a
        ]
        if participants:
            self._set(message, "Cc", _address_list(participants))
        self._set(message, "Subject", encoded_words(post.topic or ""))
        root = self.roots.get(post.thread_id)
        parent = post.in_reply_to or (root if root and root != post.id else None)
        if parent:
            message["In-Reply-To"] = message_id(parent)
            chain = [root] if root and root != parent else []
            message["References"] = " ".join(message_id(p) for p in [*chain, parent])
        categories = [c for c in version.get("categories") or [] if isinstance(c, str)]
        if categories:
            self._set(message, "Keywords", encoded_words(", ".join(categories)))
        self._set(message, "X-Groupsync-Group-Id", post.group_id)
        if post.conversation_id:
            self._set(message, "X-Groupsync-Conversation-Id", post.conversation_id)
        self._set(message, "X-Groupsync-Thread-Id", post.thread_id)
        message["X-Groupsync-Post-Id"] = header_text(post.id)
        if post.change_key:
            message["X-Groupsync-ChangeKey"] = header_text(post.change_key)
        message["X-Groupsync-Version-SHA256"] = post.version_sha256
        if post.deleted_at:
            message["X-Groupsync-Deleted"] = header_text(post.deleted_at)
        if post.attachments_note:
            message["X-Groupsync-Note"] = header_text(post.attachments_note)

        body = version.get("body") or {}
        content = body.get("content") or ""
        is_html = (body.get("contentType") or "html").lower() == "html"
        stored = self._attachment_rows(post.id)
        attachments = []
        for attachment in version.get("attachments") or []:
            sha256 = (stored.get(attachment.get("id")) or (None, None))[0]
            attachments.append((attachment, sha256))
        inline = [
            (a, s)
            for a, s in attachments
            if is_html and s and a.get("isInline") and a.get("contentId")
        ]
        # The body itself goes as bytes in base64: it parses back exactly as Graph gave it
        # (line ends and a missing final newline included); the text alternative is ours.
        utf8 = {"charset": "utf-8"}
        if is_html:
            text = to_text(content, "html") + "\n"
            # A line starting "From " would be quoted (">From ") in an mbox: base64 keeps it.
            cte = "base64" if re.search(r"^From ", text, re.MULTILINE) else None
            message.set_content(text, cte=cte)
            message.add_alternative(content.encode("utf-8"), "text", "html", params=utf8)
            if inline:
                # multipart/alternative by now: its payload is the list of its parts
                html_part = cast(list[EmailMessage], message.get_payload())[1]
                for attachment, sha256 in inline:
                    self._add(post, html_part, attachment, sha256, related=True)
        else:
            message.set_content(content.encode("utf-8"), "text", "plain", params=utf8)
        placed = {id(a) for a, _ in inline}
        for attachment, sha256 in attachments:
            if id(attachment) not in placed:
                self._add(post, message, attachment, sha256)
        return message

    def _add(
        self,
        post: _Post,
        container: EmailMessage,
        attachment: dict[str, Any],
        sha256: str | None,
        *,
        related: bool = False,
    ) -> None:
        """One attachment as a part of ``container``; one that cannot be (its bytes gone,
        say) is left out and listed in the failures, and the message goes on."""
        try:
            part = self._part(container, attachment, sha256, related=related)
        except Exception as ex:  # noqa: BLE001 - any attachment must not cost the post
            if isinstance(ex, OSError | sqlite3.Error):
                raise
            self._failed(post, f"attachment {attachment.get('id')}", ex)
            return
        container.attach(part)
        if sha256:
            self.report.attachments += 1
        else:
            self.report.attachments_without_bytes += 1

    def _part(
        self,
        container: EmailMessage,
        attachment: dict[str, Any],
        sha256: str | None,
        *,
        related: bool,
    ) -> EmailMessage:
        kind = "related" if related else "mixed"
        if container.get_content_type() != f"multipart/{kind}":
            getattr(container, f"make_{kind}")()
        part = EmailMessage(policy=container.policy)
        name = attachment.get("name") or "attachment"
        attachment_id = header_text(str(attachment.get("id") or ""))
        headers = [_Prefolded.make("X-Groupsync-Attachment-Id", (attachment_id,))]
        if sha256:
            maintype, subtype = _maintype(attachment.get("contentType"), name)
            part.set_content(self.archive.read_blob(sha256), maintype, subtype)
            content_id = header_text(str(attachment.get("contentId") or "")).strip("<>")
            if related and re.fullmatch(r"[!-;=?-~]+", content_id):
                headers.append(_Prefolded.make("Content-ID", (f"<{content_id}>",)))
        else:
            # No bytes here: an item or reference attachment, or one Graph would not give us.
            graph_type = (attachment.get("@odata.type") or "").rsplit(".", 1)[-1]
            headers.append(
                _Prefolded.make(
                    "X-Groupsync-Attachment-Type", (header_text(graph_type or "attachment"),)
                )
            )
            metadata = json.dumps(attachment, ensure_ascii=False, sort_keys=True, indent=2)
            part.set_content(metadata.encode("utf-8"), "application", "json")
            name = f"{name}.json"
        disposition = "inline" if related else "attachment"
        headers.append(
            _Prefolded.make("Content-Disposition", (f"{disposition};", *filename_params(name)))
        )
        for header in headers:
            part[header.name] = header
        return part


class _Post:
    """One row of the export query, named."""

    __slots__ = (
        "id", "group_id", "thread_id", "conversation_id", "change_key", "deleted_at",
        "in_reply_to", "attachments_note", "topic", "version", "version_sha256", "received",
    )  # fmt: skip

    def __init__(self, row: tuple[Any, ...]) -> None:
        (
            self.id,
            self.group_id,
            self.thread_id,
            self.conversation_id,
            self.change_key,
            self.deleted_at,
            self.in_reply_to,
            self.attachments_note,
            self.topic,
            version_json,
            self.version_sha256,
            self.received,
        ) = row
        self.version: dict[str, Any] = json.loads(version_json)


def new_folder(options: Any, verb: str) -> Path:
    """Check ``options``' dates, then make ``options.out``, which must be new or empty, a
    private folder: an export never mixes with files already there."""
    parse_bound(options.since)
    parse_bound(options.until, end=True)
    out = Path(options.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder; {verb} into a new one")
    try:
        private_dir(out)
    except OSError as ex:
        raise ExportError(f"cannot create {out}: {ex.strerror}") from None
    return out


def manifest_head(
    archive: Archive,
    export_id: int | None,
    fmt: str,
    started: str,
    finished: str,
    head: tuple[int, str] | None,
    filters: dict[str, Any],
) -> dict[str, Any]:
    """What every manifest opens with: the version, the export, its times, the archive with
    its chain head, and how the posts were chosen."""
    return {
        "groupsync": __version__,
        "export_id": export_id,
        "format": fmt,
        "started_at": started,
        "finished_at": finished,
        "archive": {
            "path": str(Path(archive.path).resolve()) if archive.path != ":memory:" else None,
            "chain_head": {"run_id": head[0], "digest": head[1]} if head else None,
        },
        "filters": filters,
    }


def selection(options: Any) -> dict[str, Any]:
    """How an export chose its posts, as its manifest and ``exports`` row record it."""
    return {
        "groups": options.group_ids or None,
        "since": options.since,
        "until": options.until,
        "include_deleted": options.include_deleted,
    }


def export(
    archive: Archive,
    options: ExportOptions,
    *,
    identity: str | None = None,
    os_user: str | None = None,
    now: Callable[[], str] = utc_now,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> ExportReport:
    """Write the export into ``options.out`` (created; it must be empty) and audit it.

    The archive's ``exports`` table records it, unless the archive was opened read-only
    (an evidence copy): then the report's notes say it was not recorded.
    """
    if options.format not in FORMATS:
        raise ExportError(f"unknown format {options.format!r}; one of {', '.join(FORMATS)}")
    out = new_folder(options, "export")
    audit = _Audit(archive, now, options.format, what="export", out=out,
                   filters={**selection(options), "query": options.query},
                   identity=identity, os_user=os_user)  # fmt: skip
    return audit.run(_Exporter(archive, options, progress))


@dataclass
class _Audit:
    """An export's (or a production's) record: its row in the archive's ``exports`` table
    (none in a read-only archive, which the report's notes then say), and the head of its
    manifest. ``what`` names it in messages; ``fmt`` is the format recorded."""

    archive: Archive
    now: Callable[[], str]
    fmt: str
    what: str
    out: Path
    filters: dict[str, Any]
    identity: str | None
    os_user: str | None
    export_id: int | None = None

    def __post_init__(self) -> None:
        self.started = self.now()
        self.head = self.archive.chain_head()

    def run(self, writer: _Writing) -> ExportReport:
        """Record ``writer``'s run: the row started, then failed (a disk error raised as an
        ``ExportError``) or finished once the manifest is written."""
        report = writer.report
        self._start(report)
        try:
            writer.run()
            writer.write_manifest({**self._manifest_head(), **writer.manifest_body()})
        except BaseException as ex:
            self.failed(self.export_id, str(ex) or type(ex).__name__, report.posts)
            if isinstance(ex, OSError):  # a full disk, a folder that went away
                raise ExportError(
                    f"cannot write the {self.what} into {self.out}: {ex.strerror}"
                ) from None
            raise
        self.complete(self.export_id, report)
        return report

    def _start(self, report: ExportReport) -> None:
        """Add the row (in a writable archive) and fill the report's record fields."""
        if self.archive.readonly:
            report.notes.append(
                f"the archive {self.archive.path} is read-only: this {self.what} is not "
                "recorded in its exports table (the manifest still names the archive and its "
                "chain head)"
            )
        else:
            self.export_id = queries.start_export(
                self.archive,
                {
                    "started_at": self.started,
                    "identity": self.identity,
                    "os_user": self.os_user,
                    "format": self.fmt,
                    "out": str(self.out.resolve()),
                    "filters": json.dumps(self.filters, ensure_ascii=False),
                    "chain_digest": self.head[1] if self.head else None,
                },
            )
        report.export_id = self.export_id
        report.chain_digest = self.head[1] if self.head else None

    def _manifest_head(self) -> dict[str, Any]:
        """The manifest's first fields: :func:`manifest_head`'s, then who made it."""
        return {
            **manifest_head(self.archive, self.export_id, self.fmt, self.started, self.now(),
                            self.head, self.filters),  # fmt: skip
            "identity": self.identity,
            "os_user": self.os_user,
        }

    def failed(self, export_id: int | None, error: str, posts: int) -> None:
        if export_id is None:
            return
        queries.fail_export(self.archive, export_id, self.now(), error, posts)

    def complete(self, export_id: int | None, report: ExportReport) -> None:
        if export_id is None:
            return
        queries.finish_export(
            self.archive,
            export_id,
            {
                "status": "partial" if report.failed else "complete",
                "finished_at": self.now(),
                "groups": report.groups,
                "posts": report.posts,
                "attachments": report.attachments,
                "files": report.files,
                "bytes": report.bytes,
                "manifest_sha256": report.manifest_sha256,
                "error": f"{report.failed} item(s) left out: see the manifest's failures"
                if report.failed
                else None,
            },
        )
