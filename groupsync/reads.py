"""The connector's eight read actions, answered offline from the archive.

Each answer has the JSON shape Power Automate's "Office 365 Groups Mail" connector (that is,
Graph v1.0) gives, so a flow or script can switch between Graph and the archive unchanged.
Items deleted upstream stay in the archive as tombstones; they are left out unless
``include_deleted``, and then carry Graph's delta annotation ``"@removed"`` plus
``"@groupsync.deletedDateTime"``. Every lookup is an indexed query for one group, thread or
post; nothing loads the whole archive.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

from .archive import Archive
from .archive.queries import reads as queries
from .archive.queries.governance import has_governance, purged_post
from .errors import ArchiveError, GroupsyncError, NotFoundError
from .files import create_private, private_dir
from .html import BIDI_CONTROLS, to_text
from .models import Attachment, Conversation, ConversationThread, Group, ItemBody, Post

__all__ = [
    "CONVERSATION_FIELDS",
    "THREAD_FIELDS",
    "SavedAttachment",
    "attachments_note",
    "body_text",
    "get_conversation",
    "get_group",
    "get_post",
    "get_thread",
    "iter_attachments",
    "iter_conversations",
    "iter_groups",
    "iter_post_versions",
    "iter_posts",
    "iter_threads",
    "pending_posts",
    "pending_threads",
    "safe_file_name",
    "save_attachments",
]

CONVERSATION_FIELDS = (
    "id",
    "topic",
    "hasAttachments",
    "lastDeliveredDateTime",
    "uniqueSenders",
    "preview",
)
# What the archive keeps of a thread; ``--live`` asks Graph for the same with ``$select``,
# since Graph returns the recipients only when they are selected.
THREAD_FIELDS = (*CONVERSATION_FIELDS, "isLocked", "toRecipients", "ccRecipients")
GROUP_TYPE = "#microsoft.graph.group"
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
# Bytes read from a blob at a time: a multiple of 3, so each chunk is base64-encoded on its
# own without padding and the pieces join into one valid base64 string.
B64_READ = 3 * 256 * 1024
MAX_NAME_BYTES = 200  # leaves room for " (NNN)" under the usual 255-byte file name limit

# The archive stores JSON canonically (keys sorted, for stable hashes); answers put the keys
# back in the order Graph sends them, which reads better and diffs cleanly against Graph.
_POST_ORDER = (
    "@odata.etag",
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "hasAttachments",
    "body",
    "from",
    "sender",
    "conversationThreadId",
    "conversationId",
    "newParticipants",
)
_ATTACHMENT_ORDER = (
    "@odata.type",
    "id",
    "lastModifiedDateTime",
    "name",
    "contentType",
    "size",
    "isInline",
    "contentId",
    "contentLocation",
)


def _graph_order(data: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: data[k] for k in order if k in data}, **data}


def _removed(item: dict[str, Any], deleted_at: str | None) -> dict[str, Any]:
    """Mark a tombstone the way Graph's delta responses mark removed items."""
    if deleted_at is not None:
        item["@removed"] = {"reason": "deleted"}
        item["@groupsync.deletedDateTime"] = deleted_at
    return item


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _list(text: str | None) -> list[Any]:
    return [] if not text else json.loads(text)


def _gone(kind: str, item_id: str, deleted_at: str) -> NotFoundError:
    return NotFoundError(
        f"{kind} {item_id} was deleted upstream ({deleted_at}); --include-deleted shows it"
    )


# -- groups -------------------------------------------------------------------------------


def _group(text: str, deleted_at: str | None) -> Group:
    data = {"@odata.type": GROUP_TYPE, **json.loads(text)}
    return cast(Group, _removed(data, deleted_at))


def iter_groups(archive: Archive, *, include_deleted: bool = False) -> Iterator[Group]:
    """The archived groups by display name, in Graph's group shape ("List groups").

    The archive cannot tell which of them the identity still belongs to; it lists every
    group it holds, so that the offline answer names every group that can be read offline.
    """
    for text, deleted_at in queries.group_rows(archive, include_deleted):
        yield _group(text, deleted_at)


def get_group(archive: Archive, group_id: str, *, include_deleted: bool = False) -> Group:
    """One archived group, as Graph's ``GET /groups/{id}`` shapes it."""
    row = queries.group_row(archive, group_id)
    if row is None:
        raise NotFoundError(f"group {group_id} not found in the archive")
    if row[1] is not None and not include_deleted:
        raise _gone("group", group_id, row[1])
    return _group(row[0], row[1])


def _require_group(archive: Archive, group_id: str, include_deleted: bool) -> None:
    row = queries.group_row(archive, group_id)
    if row is None:
        raise NotFoundError(
            f"group {group_id} not found in the archive; "
            f"run `groupsync sync --group {group_id}` first"
        )
    if row[1] is not None and not include_deleted:
        raise _gone("group", group_id, row[1])


# -- conversations ------------------------------------------------------------------------

def _conversation_fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """The six fields a conversation and a thread share, in Graph's order."""
    return {
        "id": row[0],
        "topic": row[1],
        "hasAttachments": _flag(row[2]),
        "lastDeliveredDateTime": row[3],
        "uniqueSenders": _list(row[4]),
        "preview": row[5],
    }


def _conversation(row: tuple[Any, ...]) -> Conversation:
    return cast(Conversation, _removed(_conversation_fields(row), row[6]))


def iter_conversations(
    archive: Archive, group_id: str, *, include_deleted: bool = False
) -> Iterator[Conversation]:
    """A group's conversations, newest delivery first ("List group conversations")."""
    _require_group(archive, group_id, include_deleted)
    rows = queries.conversation_rows(archive, group_id, include_deleted)
    return (_conversation(row) for row in rows)


def get_conversation(
    archive: Archive, group_id: str, conversation_id: str, *, include_deleted: bool = False
) -> Conversation:
    """One conversation of a group ("Get a conversation")."""
    _require_group(archive, group_id, include_deleted)
    row = queries.conversation_row(archive, group_id, conversation_id)
    if row is None:
        raise NotFoundError(
            f"conversation {conversation_id} not found in group {group_id}'s archive"
        )
    if row[6] is not None and not include_deleted:
        raise _gone("conversation", conversation_id, row[6])
    return _conversation(row)


# -- threads ------------------------------------------------------------------------------

def _thread(row: tuple[Any, ...]) -> ConversationThread:
    item = {
        **_conversation_fields(row),
        "isLocked": _flag(row[6]),
        "toRecipients": _list(row[7]),
        "ccRecipients": _list(row[8]),
    }
    return cast(ConversationThread, _removed(item, row[9]))


def _thread_row(
    archive: Archive, group_id: str, thread_id: str, include_deleted: bool
) -> tuple[Any, ...]:
    _require_group(archive, group_id, include_deleted)
    row = queries.thread_row(archive, group_id, thread_id)
    return _found(row, 9, "thread", thread_id, f"group {group_id}", include_deleted)


def _found(
    row: Any, deleted_at: int, kind: str, item_id: str, where: str, include_deleted: bool
) -> Any:
    """``row`` if it is there and live (or deleted ones are asked for); else the error a
    read gives: not found, or gone upstream (``row[deleted_at]``)."""
    if row is None:
        raise NotFoundError(f"{kind} {item_id} not found in {where}'s archive")
    if row[deleted_at] is not None and not include_deleted:
        raise _gone(kind, item_id, row[deleted_at])
    return row


def iter_threads(
    archive: Archive,
    group_id: str,
    *,
    conversation_id: str | None = None,
    include_deleted: bool = False,
) -> Iterator[ConversationThread]:
    """A group's threads (or one conversation's), newest delivery first ("List threads")."""
    if conversation_id is not None:
        get_conversation(archive, group_id, conversation_id, include_deleted=include_deleted)
    else:
        _require_group(archive, group_id, include_deleted)
    rows = queries.thread_rows(archive, group_id, conversation_id, include_deleted)
    pending = pending_threads(archive, group_id, conversation_id)
    return iter(pending[::-1] + [_thread(row) for row in rows])


def get_thread(
    archive: Archive, group_id: str, thread_id: str, *, include_deleted: bool = False
) -> ConversationThread:
    """One thread of a group ("Get a thread")."""
    return _thread(_thread_row(archive, group_id, thread_id, include_deleted))


# -- posts --------------------------------------------------------------------------------


def _purged(archive: Archive, post_id: str, deleted_at: str | None) -> Post | None:
    """What is left of a post a retention purge removed: its ids and dates, an empty body
    and ``"@groupsync.purged"`` (when, and which purge); None if it was not purged."""
    row = purged_post(archive, post_id) if has_governance(archive) else None
    if row is None:
        return None
    data = {
        "id": row["id"],
        "createdDateTime": row["createdDateTime"],
        "lastModifiedDateTime": row["lastModifiedDateTime"],
        "changeKey": row["changeKey"],
        "receivedDateTime": row["receivedDateTime"],
        "body": {"contentType": "text", "content": ""},
        "conversationId": row["conversation_id"],
        "conversationThreadId": row["thread_id"],
        "@groupsync.purged": {"purgedDateTime": row["purged_at"], "purgeId": row["purge_id"]},
    }
    return cast(Post, _removed(data, deleted_at))


def _post(
    text: str | None, post_id: str, deleted_at: str | None, archive: Archive | None = None
) -> Post:
    """The latest version as Graph sent it, minus what a plain list or get leaves out."""
    if text is None:
        purged = _purged(archive, post_id, deleted_at) if archive is not None else None
        if purged is not None:
            return purged
        raise ArchiveError(f"post {post_id} has no stored version in the archive")
    data = _graph_order(json.loads(text), _POST_ORDER)
    data.pop("attachments", None)  # only there when the sync asked for $expand=attachments
    data.pop("@odata.context", None)
    return cast(Post, _removed(data, deleted_at))


def iter_posts(
    archive: Archive, group_id: str, thread_id: str, *, include_deleted: bool = False
) -> Iterator[Post]:
    """A thread's posts, oldest first, each its latest version ("List posts")."""
    _thread_row(archive, group_id, thread_id, include_deleted)
    rows = queries.post_rows(archive, thread_id, include_deleted)
    posts = [_post(text, post_id, deleted_at, archive) for post_id, deleted_at, text in rows]
    return iter(posts + pending_posts(archive, group_id, thread_id))


def _post_row(
    archive: Archive, group_id: str, thread_id: str, post_id: str, include_deleted: bool
) -> tuple[str, str | None, str | None, str | None]:
    _thread_row(archive, group_id, thread_id, include_deleted)
    row = queries.post_row(archive, thread_id, post_id)
    return cast(
        tuple[str, str | None, str | None, str | None],
        _found(row, 1, "post", post_id, f"thread {thread_id}", include_deleted),
    )


def get_post(
    archive: Archive,
    group_id: str,
    thread_id: str,
    post_id: str,
    *,
    include_deleted: bool = False,
) -> Post:
    """One post, its latest version ("Get a post")."""
    post_id, deleted_at, text, _ = _post_row(archive, group_id, thread_id, post_id, include_deleted)
    return _post(text, post_id, deleted_at, archive)


def iter_post_versions(
    archive: Archive,
    group_id: str,
    thread_id: str,
    post_id: str,
    *,
    include_deleted: bool = False,
) -> Iterator[dict[str, Any]]:
    """Every version of a post ever seen, oldest first, each exactly as stored.

    Each carries ``"@groupsync.version"``: its changeKey, the SHA-256 of the stored
    canonical JSON (so anyone can verify the record without the annotation) and when the
    archive first saw it. A deleted post's latest version carries the tombstone.
    """
    _, deleted_at, _, _ = _post_row(archive, group_id, thread_id, post_id, include_deleted)
    rows = queries.post_version_rows(archive, post_id)

    def versions() -> Iterator[dict[str, Any]]:
        for index, (change_key, text, sha256, first_seen_at) in enumerate(rows, 1):
            data = _graph_order(json.loads(text), _POST_ORDER)
            data["@groupsync.version"] = {
                "changeKey": change_key,
                "sha256": sha256,
                "first_seen_at": first_seen_at,
            }
            yield _removed(data, deleted_at) if index == len(rows) else data

    return versions()


def body_text(body: ItemBody | dict[str, Any] | None, limit: int | None = None) -> str:
    """A post body as one line of plain text, for tables."""
    if not body or not isinstance(body.get("content"), str):
        return ""
    text = " ".join(to_text(body["content"], body.get("contentType") or "html").split())
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text


# -- the outbox's offline echo ------------------------------------------------------------

def _outbox_mark(item_id: int, action: str, state: str) -> dict[str, Any]:
    return {"id": item_id, "action": action, "state": state}


def _graph_time(value: str) -> str:
    return value[:19] + "Z" if len(value) >= 19 else value


def pending_posts(archive: Archive, group_id: str, thread_id: str) -> list[Post]:
    """Replies queued in the outbox for this thread, shaped as posts and flagged pending."""
    rows = queries.pending_reply_rows(archive, group_id, thread_id)
    return [_pending_post(row, thread_id) for row in rows]


def _pending_post(row: tuple[Any, ...], thread_id: str | None) -> Post:
    item_id, action, state, _, conversation_id, _, post_id, _, body, created, _, _ = row
    request = json.loads(body)
    post = request.get("post") or (request.get("posts") or [None])[0]
    if post is None:
        post = (request.get("threads") or [{}])[0].get("posts", [{}])[0]
    attachments = post.get("attachments") or []
    out: dict[str, Any] = {
        "id": f"outbox-{item_id}",
        "createdDateTime": _graph_time(created),
        "lastModifiedDateTime": _graph_time(created),
        "receivedDateTime": _graph_time(created),
        "categories": post.get("categories") or [],
        "hasAttachments": bool(attachments),
        "body": post.get("body"),
        "conversationId": conversation_id,
        "conversationThreadId": thread_id,
        "newParticipants": post.get("newParticipants") or [],
        "@groupsync.outbox": _outbox_mark(item_id, action, state),
    }
    if post_id:
        out["@groupsync.inReplyTo"] = post_id
    return cast(Post, out)


def pending_threads(
    archive: Archive, group_id: str, conversation_id: str | None = None
) -> list[ConversationThread]:
    """New threads and conversations queued in the outbox, shaped as threads."""
    rows = queries.pending_thread_rows(archive, group_id, conversation_id)
    threads = []
    for row in rows:
        post = _pending_post(row, None)
        threads.append(
            cast(
                ConversationThread,
                {
                    "id": f"outbox-{row[0]}",
                    "topic": row[7],
                    "hasAttachments": post["hasAttachments"],
                    "lastDeliveredDateTime": post["receivedDateTime"],
                    "uniqueSenders": [],
                    "preview": body_text(post.get("body"), 255),
                    "isLocked": False,
                    "toRecipients": post.get("newParticipants") or [],
                    "ccRecipients": [],
                    # Not a Graph property, so not one of Post's keys.
                    "@groupsync.outbox": cast(dict[str, Any], post)["@groupsync.outbox"],
                },
            )
        )
    return threads


# -- attachments --------------------------------------------------------------------------

def _attachment_rows(
    archive: Archive, post_id: str, include_deleted: bool
) -> list[tuple[str, str | None, str, str | None, int | None, str | None]]:
    return queries.attachment_rows(archive, post_id, include_deleted)


def _base64(archive: Archive, sha256: str) -> str:
    """A blob as base64, encoded piece by piece (whole groups of 3 bytes per piece)."""
    pieces: list[str] = []
    carry = b""
    for chunk in archive.iter_blob(sha256, chunk_size=B64_READ):
        data = carry + chunk
        cut = len(data) - len(data) % 3
        pieces.append(base64.b64encode(data[:cut]).decode("ascii"))
        carry = data[cut:]
    pieces.append(base64.b64encode(carry).decode("ascii"))
    return "".join(pieces)


def iter_attachments(
    archive: Archive,
    group_id: str,
    thread_id: str,
    post_id: str,
    *,
    include_deleted: bool = False,
    content: bool = True,
) -> Iterator[Attachment]:
    """A post's attachments in Graph's polymorphic shape ("List attachments").

    File attachments whose bytes the archive holds get ``contentBytes`` (base64), as Graph
    sends them; ``content=False`` leaves it out for listings that only show metadata. One
    attachment's bytes are in memory at a time.
    """
    _post_row(archive, group_id, thread_id, post_id, include_deleted)
    rows = _attachment_rows(archive, post_id, include_deleted)

    def attachments() -> Iterator[Attachment]:
        for _, _, text, sha256, size, deleted_at in rows:
            data = _graph_order(json.loads(text), _ATTACHMENT_ORDER)
            if content and data.get("@odata.type") == FILE_ATTACHMENT and size is not None:
                data["contentBytes"] = _base64(archive, cast(str, sha256))
            yield cast(Attachment, _removed(data, deleted_at))

    return attachments()


def attachments_note(archive: Archive, group_id: str, thread_id: str, post_id: str) -> str | None:
    """Why a post's attachments are not in the archive, when the sync could not read them."""
    return _post_row(archive, group_id, thread_id, post_id, True)[3]


@dataclass(frozen=True)
class SavedAttachment:
    """What ``save_attachments`` did with one attachment.

    ``path``, ``size`` and ``sha256`` when its bytes were written; ``skipped`` (the reason)
    when there were none to write.
    """

    id: str
    name: str | None
    path: str | None = None
    size: int | None = None
    sha256: str | None = None
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "name"}


_UNSAFE = re.compile(f'[\\x00-\\x1f\\x7f<>:"|?*{BIDI_CONTROLS}]')


def safe_file_name(name: str | None, fallback: str = "attachment") -> str:
    """A name that stays inside the folder it is written to, on any common file system.

    Path separators split the name and ``.``/``..`` parts are dropped, so
    ``../../evil.txt`` becomes ``evil.txt`` and ``a/b.txt`` becomes ``a_b.txt``; control,
    bidi-control (``invoice\u202egpj.exe``, which shows as ``invoiceexe.jpg``, is saved as
    ``invoice_gpj.exe``) and Windows-reserved characters become ``_``; leading dots (hidden
    files) and trailing dots and spaces go; long names are cut to ``MAX_NAME_BYTES`` keeping
    the extension.
    """
    parts = [p for p in re.split(r"[/\\]+", name or "") if p.strip() not in ("", ".", "..")]
    text = _UNSAFE.sub("_", "_".join(parts))
    text = re.sub(r"\.{2,}", ".", text).strip().lstrip(".").rstrip(". ")
    if not text:
        text = fallback
    if len(text.encode("utf-8")) > MAX_NAME_BYTES:
        suffix = Path(text).suffix
        suffix = suffix if len(suffix.encode("utf-8")) <= 16 else ""
        stem = text[: len(text) - len(suffix)] if suffix else text
        room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ")
        text = (stem or fallback) + suffix
    return text


def _create(directory: Path, name: str) -> tuple[Path, IO[bytes]]:
    """Open a new file for ``name`` in ``directory``, never over an existing one.

    A name taken (by an earlier attachment or a file already there, case-insensitively on
    file systems that fold case) gets `` (2)``, `` (3)``… before the extension.
    """
    suffix = Path(name).suffix
    stem = name[: len(name) - len(suffix)] if suffix else name
    for n in range(1, 10_000):
        path = directory / (name if n == 1 else f"{stem} ({n}){suffix}")
        try:
            return path, create_private(path)
        except FileExistsError:
            continue
    raise ArchiveError(f"no free file name for {name!r} in {directory}")


def _skip_reason(kind: str | None, sha256: str | None, size: int | None) -> str | None:
    if kind == "#microsoft.graph.referenceAttachment":
        return "reference attachment: a link to a file kept elsewhere, no bytes"
    if kind == "#microsoft.graph.itemAttachment":
        return "item attachment: an Outlook item, the archive keeps no bytes for it"
    if sha256 is None:
        return "its bytes are not in the archive"
    if size is None:
        return f"blob {sha256} is missing from the archive"
    return None


def save_attachments(
    archive: Archive,
    group_id: str,
    thread_id: str,
    post_id: str,
    directory: str | Path,
    *,
    include_deleted: bool = False,
) -> Iterator[SavedAttachment]:
    """Write a post's file attachments into ``directory``, streamed from the archive.

    Names go through ``safe_file_name``; nothing is overwritten. The SHA-256 of what was
    written is checked against the archive's, so a saved file is the file Graph sent.
    Attachments without bytes are reported as skipped, with the reason.
    """
    _post_row(archive, group_id, thread_id, post_id, include_deleted)
    rows = _attachment_rows(archive, post_id, include_deleted)
    try:
        folder = private_dir(directory)
    except OSError as ex:
        raise GroupsyncError(f"cannot create {directory}: {ex.strerror}") from None

    def saved() -> Iterator[SavedAttachment]:
        for attachment_id, name, text, sha256, size, _ in rows:
            kind = json.loads(text).get("@odata.type")
            reason = _skip_reason(kind, sha256, size)
            if reason is not None:
                yield SavedAttachment(attachment_id, name, skipped=reason)
                continue
            try:
                yield _write_blob(archive, folder, attachment_id, name, cast(str, sha256))
            except OSError as ex:
                raise GroupsyncError(f"cannot save into {folder}: {ex.strerror}") from None

    return saved()


def _write_blob(
    archive: Archive, folder: Path, attachment_id: str, name: str | None, sha256: str
) -> SavedAttachment:
    path, handle = _create(folder, safe_file_name(name))
    digest = hashlib.sha256()
    written = 0
    try:
        with handle:
            for chunk in archive.iter_blob(sha256):
                handle.write(chunk)
                digest.update(chunk)
                written += len(chunk)
        if digest.hexdigest() != sha256:
            raise ArchiveError(f"blob {sha256} in the archive does not match its SHA-256")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SavedAttachment(attachment_id, name, str(path), written, sha256)
