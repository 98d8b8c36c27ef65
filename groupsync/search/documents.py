"""Documents from the archive: a post row, its thread and its attachments become one
index document; attachment text is extracted from the archive's blobs (text, HTML, PDF).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..archive import Archive
from ..archive.queries import search as queries
from ..archive.values import json_list
from ..errors import GroupsyncError
from ..html import to_text
from .schema import FLAG_ATTACHMENT, FLAG_DELETED, _key, _thread_key

ATTACHMENT_TEXT_CAP = 100_000  # characters of text indexed per attachment
ATTACHMENT_BYTES_CAP = 32 * 1024 * 1024  # larger attachments are not opened for text


# -- documents from the archive -----------------------------------------------------------


def _recipients(*values: str | None) -> str:
    parts: list[str] = []
    for value in values:
        for recipient in json_list(value):
            email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
            email = email if isinstance(email, dict) else {}
            parts.extend(str(v) for v in (email.get("name"), email.get("address")) if v)
    return "\n".join(parts)


def _epoch(value: str | None) -> int:
    if not value:
        return 0
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return min(max(0, int(moment.timestamp())), 0xFFFFFFFF)  # the column is 32-bit
    except ValueError:
        return 0


class _AttachmentText:
    """Text of attachments by SHA-256, extracted once per run (many posts share files)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.cache: dict[str, str] = {}

    def __call__(
        self, name: str | None, content_type: str | None, sha256: str | None, size: int | None
    ) -> str:
        if not sha256:
            return ""
        kind = _text_kind(name, content_type)
        if kind is None or (size or 0) > ATTACHMENT_BYTES_CAP:
            return ""
        key = f"{kind}:{sha256}"
        if key not in self.cache:
            if len(self.cache) > 2048:
                self.cache.clear()
            try:
                self.cache[key] = _extract(self.archive, kind, sha256)
            except GroupsyncError:
                self.cache[key] = ""
        return self.cache[key]


def _text_kind(name: str | None, content_type: str | None) -> str | None:
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = Path(name or "").suffix.lower()
    if ctype == "application/pdf" or (not ctype and suffix == ".pdf"):
        return "pdf"
    if ctype in ("text/html", "application/xhtml+xml") or (
        not ctype and suffix in (".html", ".htm")
    ):
        return "html"
    if (
        ctype.startswith("text/")
        or ctype in ("application/json", "application/xml")
        or (not ctype and suffix in (".txt", ".csv", ".md", ".json", ".xml", ".log", ".ics"))
    ):
        return "text"
    return None


def _read_blob(archive: Archive, sha256: str, limit: int) -> bytes:
    out = bytearray()
    for chunk in archive.iter_blob(sha256):
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _extract(archive: Archive, kind: str, sha256: str) -> str:
    if kind == "pdf":
        return _pdf_text(_read_blob(archive, sha256, ATTACHMENT_BYTES_CAP))
    raw = _read_blob(archive, sha256, ATTACHMENT_TEXT_CAP * 4)
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    if kind == "html":
        text = to_text(text)
    return text[:ATTACHMENT_TEXT_CAP]


@contextlib.contextmanager
def _quiet_pypdf() -> Iterator[None]:
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _pdf_text(data: bytes) -> str:
    """The text of a PDF, or "" when pypdf cannot read it (a broken PDF is skipped)."""
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - pypdf is a dependency
        return ""
    parts: list[str] = []
    length = 0
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            for page in reader.pages:
                text = page.extract_text() or ""
                parts.append(text)
                length += len(text)
                if length >= ATTACHMENT_TEXT_CAP:
                    break
        except Exception:  # noqa: BLE001 - anything a broken PDF makes pypdf raise
            pass
    return "\n".join(parts)[:ATTACHMENT_TEXT_CAP]


def _attachments_of(archive: Archive, post_ids: list[str] | None) -> dict[str, list[tuple]]:
    """Live attachments (name, contentType, sha256, size) of some posts, or of all."""
    out: dict[str, list[tuple]] = {}
    for post_id, *rest in queries.live_attachments(archive, post_ids):
        out.setdefault(post_id, []).append(tuple(rest))
    return out


def _document(row: tuple, attachments: list[tuple], extract: _AttachmentText) -> dict[str, Any]:
    (post_id, group_id, _conversation, thread_id, _change_key, received, has_attachments,
     categories, body_text, from_name, from_address, sender_name, sender_address,
     new_participants, deleted_at, seq, topic, to_recipients, cc_recipients) = row  # fmt: skip
    flags = (FLAG_ATTACHMENT if has_attachments or attachments else 0) | (
        FLAG_DELETED if deleted_at else 0
    )
    people = [sender_name, sender_address, from_name, from_address]
    doc: dict[str, Any] = {
        "key": _key(post_id),
        "seq": int(seq),
        "thread": _thread_key(thread_id or ""),
        "group": group_id,
        "received": _epoch(received),
        "flags": flags,
        "body": body_text or "",
        "body_pairs": body_text or "",
        "from": "\n".join(dict.fromkeys(p for p in people if p)),
    }
    if topic:
        doc["topic"] = topic
    to = _recipients(to_recipients, cc_recipients, new_participants)
    if to:
        doc["to"] = to
    cats = [str(c) for c in json_list(categories) if c]
    if cats:
        doc["category"] = "\n".join(cats)
    if attachments:
        doc["filename"] = "\n".join(a[0] for a in attachments if a[0])
        texts = [extract(*a) for a in attachments]
        text = "\n".join(t for t in texts if t)
        if text:
            doc["attachment"] = doc["attachment_pairs"] = text
    return doc
