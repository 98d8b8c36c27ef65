"""The sample_data file format: reading, normalising, derived fields and atomic saving.

See ``sample_data/README.md``. Stored objects stay in Graph's own shapes (plus ``@sim.*``
keys), so persisting a group is just writing its conversations back out.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
import tempfile
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"
REFERENCE_ATTACHMENT = "#microsoft.graph.referenceAttachment"
ATTACHMENT_TYPES = (FILE_ATTACHMENT, ITEM_ATTACHMENT, REFERENCE_ATTACHMENT)
OPEN_EXTENSION = "#microsoft.graph.openTypeExtension"
EXTENSION_ID_PREFIX = "Microsoft.OutlookServices.OpenTypeExtension."
PREVIEW_LENGTH = 255
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ID_PREFIXES = {
    "conversation": b"\x00\x04\x24\x00\x10\x00",
    "thread": b"\x00\x04\x24\x00\x03\x24",
    "post": b"\x00\x03\x24\x00\x46\x00",
    "attachment": b"\x00\x03\x24\x00\x12\x00",
}
_ID_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]+$")


class DataError(ValueError):
    """The data directory does not follow sample_data/README.md."""


def now_utc() -> datetime:
    """The current time at seconds precision, as Graph reports it."""
    return datetime.now(UTC).replace(microsecond=0)


def format_dt(moment: datetime) -> str:
    """``2017-07-31T18:59:05Z``, the format of every timestamp in the samples."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_dt(value: Any) -> datetime:
    """Parse a Graph timestamp leniently; unparseable values sort as the epoch."""
    if not isinstance(value, str):
        return _EPOCH
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _EPOCH
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def later_than(floor: str | None, moment: datetime) -> datetime:
    """``moment``, pushed one second past ``floor`` if needed, so a change is always visible."""
    if floor is not None and moment <= parse_dt(floor):
        return parse_dt(floor) + timedelta(seconds=1)
    return moment


def looks_like_exchange_id(value: str) -> bool:
    """Exchange ids are (urlsafe) base64; anything else is rejected as malformed."""
    return len(value) >= 8 and bool(_ID_CHARS.match(value))


class IdFactory:
    """Exchange-style ids and change keys, seeded and unique within the tenant."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"groupsync-sim-ids-{seed}")
        self.taken: set[str] = set()

    def new(self, kind: str) -> str:
        """A fresh urlsafe-base64 id that looks like ``AAQkA...`` and was never issued."""
        while True:
            raw = _ID_PREFIXES[kind] + self._rng.randbytes(46)
            value = base64.urlsafe_b64encode(raw).decode("ascii")
            if value not in self.taken:
                self.taken.add(value)
                return value

    def change_key(self) -> str:
        """A fresh changeKey in the shape of the samples (``CwAAABYAAAD...``)."""
        raw = b"\x0b\x00\x00\x00\x16\x00\x00\x00" + self._rng.randbytes(22)
        return base64.b64encode(raw).decode("ascii")


class _TextExtractor(HTMLParser):
    """Body text the way Graph's ``preview`` shows it: tags dropped, links as ``text<url>``."""

    _SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "a":
            self._hrefs.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "a" and self._hrefs:
            href = self._hrefs.pop()
            if href and not href.startswith("mailto:"):
                self.parts.append(f"<{href}>")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def body_text(body: Any) -> str:
    """The plain text of an itemBody, whitespace collapsed."""
    if not isinstance(body, dict):
        return ""
    content = body.get("content") or ""
    if str(body.get("contentType", "html")).lower() == "html":
        parser = _TextExtractor()
        parser.feed(content)
        parser.close()
        content = "".join(parser.parts)
    return " ".join(content.split())


def text_to_html(text: str) -> str:
    """Exchange stores group posts as HTML even when they were sent as text."""
    lines = "<br>".join(escape(line) for line in text.splitlines())
    return f"<html><body><div>{lines}</div></body></html>"


def recipient(name: str | None, address: str | None) -> JSON:
    """A Graph ``recipient``."""
    return {"emailAddress": {"name": name, "address": address}}


def decode_b64(value: Any) -> bytes:
    """Decode Edm.Binary (standard or urlsafe base64); raises ValueError when it is not."""
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from exc


def encode_b64(data: bytes) -> str:
    """Encode bytes as Graph's ``contentBytes``."""
    return base64.b64encode(data).decode("ascii")


def read_json(path: Path) -> Any:
    """Read one data file, naming the file in any error."""
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: {exc}") from exc


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write via a temp file in the same directory and ``os.replace``, so readers never see
    a half-written group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def normalise_attachment(att: JSON, data_dir: Path, default_modified: str, ids: IdFactory) -> JSON:
    """Fill the base attachment fields; read ``@sim.contentFile`` into ``contentBytes``."""
    if not isinstance(att, dict):
        raise DataError(f"attachment is not an object: {att!r}")
    out = dict(att)
    kind = out.get("@odata.type") or FILE_ATTACHMENT
    if not kind.startswith("#"):
        kind = "#" + kind
    out["@odata.type"] = kind
    if not out.get("id"):
        out["id"] = ids.new("attachment")
    ids.taken.add(out["id"])
    out.setdefault("lastModifiedDateTime", default_modified)
    out.setdefault("name", None)
    out.setdefault("contentType", None)
    out.setdefault("isInline", False)
    if kind == FILE_ATTACHMENT:
        content_file = out.pop("@sim.contentFile", None)
        if content_file is not None:
            try:
                data = (data_dir / content_file).read_bytes()
            except OSError as exc:
                raise DataError(f"attachment {out['id']}: {exc}") from exc
            out["contentBytes"] = encode_b64(data)
            out["size"] = len(data)
        out.setdefault("contentBytes", "")
        if "size" not in out:
            try:
                out["size"] = len(decode_b64(out["contentBytes"]))
            except ValueError as exc:
                raise DataError(f"attachment {out['id']}: bad contentBytes") from exc
        out.setdefault("contentId", None)
        out.setdefault("contentLocation", None)
    else:
        out.setdefault("size", 0)
    return out


def normalise_extension(ext: JSON) -> JSON:
    """Open extensions are served with ``#microsoft.graph.openTypeExtension`` and an id."""
    out = dict(ext)
    out["@odata.type"] = OPEN_EXTENSION
    name = out.get("extensionName") or str(out.get("id") or "").removeprefix(EXTENSION_ID_PREFIX)
    out["extensionName"] = name
    out["id"] = EXTENSION_ID_PREFIX + name
    return out


def normalise_post(post: JSON, data_dir: Path, group_sender: JSON, ids: IdFactory) -> JSON:
    """Fill what a data file may leave out of a post."""
    if not isinstance(post, dict):
        raise DataError(f"post is not an object: {post!r}")
    out = dict(post)
    if not out.get("id"):
        out["id"] = ids.new("post")
    ids.taken.add(out["id"])
    if not out.get("changeKey"):
        out["changeKey"] = ids.change_key()
    stamp = out.get("receivedDateTime") or out.get("createdDateTime") or format_dt(now_utc())
    out.setdefault("receivedDateTime", stamp)
    out.setdefault("createdDateTime", stamp)
    out.setdefault("lastModifiedDateTime", out["createdDateTime"])
    out.setdefault("categories", [])
    out.setdefault("body", {"contentType": "html", "content": ""})
    out.setdefault("from", group_sender)
    out.setdefault("sender", out["from"])
    out.setdefault("newParticipants", [])
    out["extensions"] = [normalise_extension(e) for e in out.get("extensions") or []]
    out["attachments"] = [
        normalise_attachment(a, data_dir, out["lastModifiedDateTime"], ids)
        for a in out.get("attachments") or []
    ]
    return out


def normalise_conversations(
    conversations: Any, data_dir: Path, group: JSON, ids: IdFactory, where: Path
) -> list[JSON]:
    """Check the nesting of one group file and fill defaults on every level."""
    if not isinstance(conversations, list):
        raise DataError(f"{where}: 'conversations' must be a list")
    group_sender = recipient(group.get("displayName"), group.get("mail"))
    result = []
    for conv in conversations:
        if not isinstance(conv, dict) or not isinstance(conv.get("threads", []), list):
            raise DataError(f"{where}: bad conversation {conv!r:.80}")
        conv = dict(conv)
        conv["id"] = conv.get("id") or ids.new("conversation")
        ids.taken.add(conv["id"])
        conv.setdefault("topic", "")
        threads = []
        for thread in conv.get("threads", []):
            if not isinstance(thread, dict) or not isinstance(thread.get("posts", []), list):
                raise DataError(f"{where}: bad thread {thread!r:.80}")
            thread = dict(thread)
            thread["id"] = thread.get("id") or ids.new("thread")
            ids.taken.add(thread["id"])
            thread.setdefault("topic", conv["topic"])
            thread.setdefault("isLocked", False)
            thread.setdefault("toRecipients", [])
            thread.setdefault("ccRecipients", [])
            thread["posts"] = [
                normalise_post(p, data_dir, group_sender, ids) for p in thread.get("posts", [])
            ]
            recompute_thread(thread, conv["id"])
            threads.append(thread)
        conv["threads"] = threads
        recompute_conversation(conv)
        result.append(conv)
    return result


def has_attachments(post: JSON) -> bool:
    """Exchange's ``hasAttachments``: inline attachments do not count.

    Graph documents it on the message resource ("This property doesn't include inline
    attachments, so if a message contains only inline attachments, this property is false");
    posts live in the same store, so a post whose only attachments are pasted images or a
    signature logo says false, and so do its thread and conversation.
    """
    return any(not a.get("isInline") for a in post.get("attachments") or [])


def recompute_thread(thread: JSON, conversation_id: str) -> None:
    """Derive the thread's summary fields and each post's back-references from its posts."""
    posts = sorted(thread["posts"], key=lambda p: parse_dt(p.get("receivedDateTime")))
    thread["posts"] = posts
    senders: list[str] = []
    for post in posts:
        post["conversationId"] = conversation_id
        post["conversationThreadId"] = thread["id"]
        post["@odata.etag"] = f'W/"{post["changeKey"]}"'
        post["hasAttachments"] = has_attachments(post)
        name = ((post.get("sender") or {}).get("emailAddress") or {}).get("name")
        if name and name not in senders:
            senders.append(name)
    thread["uniqueSenders"] = senders
    thread["hasAttachments"] = any(p["hasAttachments"] for p in posts)
    if posts:
        newest = posts[-1]
        thread["lastDeliveredDateTime"] = newest["receivedDateTime"]
        thread["preview"] = body_text(newest.get("body"))[:PREVIEW_LENGTH]
    else:
        thread.setdefault("lastDeliveredDateTime", None)
        thread.setdefault("preview", "")


def recompute_conversation(conv: JSON) -> None:
    """A conversation summarises its threads the way a thread summarises its posts."""
    threads = conv["threads"]
    senders: list[str] = []
    for thread in threads:
        for name in thread["uniqueSenders"]:
            if name not in senders:
                senders.append(name)
    conv["uniqueSenders"] = senders
    conv["hasAttachments"] = any(t["hasAttachments"] for t in threads)
    if threads:
        newest = max(threads, key=lambda t: parse_dt(t.get("lastDeliveredDateTime")))
        conv["lastDeliveredDateTime"] = newest["lastDeliveredDateTime"]
        conv["preview"] = newest["preview"]
    else:
        conv.setdefault("lastDeliveredDateTime", None)
        conv.setdefault("preview", "")
