"""Graph's group-mail resources as typed dicts, and checks that a payload really is one.

The dicts keep Graph's own keys, so what the archive stores and what the read commands
print round-trips to the connector's JSON shapes. ``parse_*`` check the keys that are
present (Graph's ``$select`` leaves out the rest) and raise ``ModelError`` naming the field
when a type is wrong: a simulator or a Graph change that breaks the shape fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from .errors import GroupsyncError

__all__ = [
    "Attachment",
    "Conversation",
    "ConversationThread",
    "EmailAddress",
    "Group",
    "ItemBody",
    "ModelError",
    "Post",
    "Recipient",
    "group_kind",
    "has_mailbox",
    "parse_attachment",
    "parse_conversation",
    "parse_datetime",
    "parse_group",
    "parse_post",
    "parse_thread",
]


class ModelError(GroupsyncError):
    """A Graph payload does not have the shape Graph documents."""


class EmailAddress(TypedDict):
    name: NotRequired[str | None]
    address: NotRequired[str | None]


class Recipient(TypedDict):
    emailAddress: EmailAddress


class ItemBody(TypedDict):
    contentType: str
    content: str


Group = TypedDict(
    "Group",
    {
        "id": str,
        "displayName": NotRequired[str | None],
        "description": NotRequired[str | None],
        "mail": NotRequired[str | None],
        "mailNickname": NotRequired[str | None],
        "groupTypes": NotRequired[list[str]],
        "visibility": NotRequired[str | None],
        "mailEnabled": NotRequired[bool | None],
        "securityEnabled": NotRequired[bool | None],
        "createdDateTime": NotRequired[str | None],
        "@odata.type": NotRequired[str],
    },
)


class Conversation(TypedDict):
    id: str
    topic: NotRequired[str]
    hasAttachments: NotRequired[bool]
    lastDeliveredDateTime: NotRequired[str]
    uniqueSenders: NotRequired[list[str]]
    preview: NotRequired[str]
    threads: NotRequired[list[ConversationThread]]


class ConversationThread(TypedDict):
    id: str
    topic: NotRequired[str]
    hasAttachments: NotRequired[bool]
    lastDeliveredDateTime: NotRequired[str]
    uniqueSenders: NotRequired[list[str]]
    preview: NotRequired[str]
    isLocked: NotRequired[bool]
    toRecipients: NotRequired[list[Recipient]]
    ccRecipients: NotRequired[list[Recipient]]


Attachment = TypedDict(
    "Attachment",
    {
        "@odata.type": NotRequired[str],
        "id": str,
        "name": NotRequired[str | None],
        "contentType": NotRequired[str | None],
        "size": NotRequired[int],
        "isInline": NotRequired[bool],
        "lastModifiedDateTime": NotRequired[str | None],
        "contentId": NotRequired[str | None],
        "contentLocation": NotRequired[str | None],
        "contentBytes": NotRequired[str],
        "item": NotRequired[dict[str, Any]],
    },
)

Post = TypedDict(
    "Post",
    {
        "@odata.etag": NotRequired[str],
        "id": str,
        "createdDateTime": NotRequired[str],
        "lastModifiedDateTime": NotRequired[str],
        "changeKey": NotRequired[str],
        "categories": NotRequired[list[str]],
        "receivedDateTime": NotRequired[str],
        "hasAttachments": NotRequired[bool],
        "body": NotRequired[ItemBody | None],
        "from": NotRequired[Recipient | None],
        "sender": NotRequired[Recipient | None],
        "newParticipants": NotRequired[list[Recipient]],
        "conversationId": NotRequired[str | None],
        "conversationThreadId": NotRequired[str | None],
        "attachments": NotRequired[list[Attachment]],
        "extensions": NotRequired[list[dict[str, Any]]],
        "inReplyTo": NotRequired[dict[str, Any] | None],
    },
)

ATTACHMENT_TYPES = (
    "#microsoft.graph.fileAttachment",
    "#microsoft.graph.itemAttachment",
    "#microsoft.graph.referenceAttachment",
)


def parse_datetime(value: str) -> datetime:
    """Graph's DateTimeOffset (``2017-07-31T18:59:05Z``, maybe with fractions) as aware UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ModelError(f"not a Graph date and time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _is_datetime(value: Any) -> bool:
    # Only the type: Microsoft's own documented examples carry placeholders such as
    # "datetime-value", and a sync must not stop on one odd date. parse_datetime is strict.
    return isinstance(value, str)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_recipient(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("emailAddress"), dict):
        return False
    address = value["emailAddress"]
    return all(isinstance(address.get(k), str | None) for k in ("name", "address"))


def _is_recipients(value: Any) -> bool:
    return isinstance(value, list) and all(_is_recipient(v) for v in value)


def _is_body(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("contentType") in {"text", "html"}
        and isinstance(value.get("content"), str)
    )


def _nullable(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _is(kind: type | tuple[type, ...]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, kind) and not (kind is int and isinstance(v, bool))


_STR = _is(str)
_BOOL = _is(bool)
_OPT_STR = _nullable(_STR)

_CONVERSATION = {
    "id": _STR,
    "topic": _STR,
    "hasAttachments": _BOOL,
    "lastDeliveredDateTime": _is_datetime,
    "uniqueSenders": _is_str_list,
    "preview": _STR,
}
_THREAD = {
    **_CONVERSATION,
    "isLocked": _BOOL,
    "toRecipients": _is_recipients,
    "ccRecipients": _is_recipients,
}
_POST = {
    "id": _STR,
    "@odata.etag": _STR,
    "changeKey": _STR,
    "createdDateTime": _is_datetime,
    "lastModifiedDateTime": _is_datetime,
    "receivedDateTime": _is_datetime,
    "categories": _is_str_list,
    "hasAttachments": _BOOL,
    "body": _nullable(_is_body),
    "from": _nullable(_is_recipient),
    "sender": _nullable(_is_recipient),
    "newParticipants": _is_recipients,
    "conversationId": _OPT_STR,
    "conversationThreadId": _OPT_STR,
    "extensions": _is(list),
    "inReplyTo": _nullable(_is(dict)),
}
_ATTACHMENT = {
    "@odata.type": lambda v: v in ATTACHMENT_TYPES,
    "id": _STR,
    "name": _OPT_STR,
    "contentType": _OPT_STR,
    "size": _is(int),
    "isInline": _BOOL,
    "lastModifiedDateTime": _nullable(_is_datetime),
    "contentId": _OPT_STR,
    "contentLocation": _OPT_STR,
    "contentBytes": _OPT_STR,
    "item": _nullable(_is(dict)),
}
_GROUP = {
    "id": _STR,
    "displayName": _OPT_STR,
    "description": _OPT_STR,
    "mail": _OPT_STR,
    "mailNickname": _OPT_STR,
    "groupTypes": _is_str_list,
    "visibility": _OPT_STR,
    "createdDateTime": _nullable(_is_datetime),
}


def _check(
    kind: str,
    data: Any,
    checks: Mapping[str, Callable[[Any], bool]],
    nested: tuple[str, Callable[[Any], Any]] | None = None,
) -> Any:
    """``data`` as a ``kind``, checked; ``nested`` names the list of items it carries (a
    conversation's threads, a post's attachments) and how each of them is checked."""
    if not isinstance(data, dict):
        raise ModelError(f"{kind}: expected a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("id"), str) or not data["id"]:
        raise ModelError(f"{kind}: missing id")
    for key, check in checks.items():
        if key in data and not check(data[key]):
            raise ModelError(f"{kind} {data['id']}: {key} has an unexpected value {data[key]!r}")
    if nested is not None:
        key, parse = nested
        for item in data.get(key) or []:
            parse(item)
    return data


def has_mailbox(group: Mapping[str, Any]) -> bool:
    """Only Microsoft 365 groups (``groupTypes`` holding "Unified") have conversations.

    Security groups and distribution lists are groups to the directory too (``memberOf``
    lists them), but their ``/conversations`` and ``/threads`` answer 404.
    """
    return "Unified" in (group.get("groupTypes") or [])


def group_kind(group: Mapping[str, Any]) -> str:
    """What a person calls the group, from the directory's flags."""
    if has_mailbox(group):
        return "Microsoft 365 group"
    if group.get("mailEnabled") and group.get("securityEnabled"):
        return "mail-enabled security group"
    if group.get("mailEnabled"):
        return "distribution list"
    return "security group"


def parse_group(data: Any) -> Group:
    return _check("group", data, _GROUP)


def parse_conversation(data: Any) -> Conversation:
    return _check("conversation", data, _CONVERSATION, ("threads", parse_thread))


def parse_thread(data: Any) -> ConversationThread:
    return _check("conversationThread", data, _THREAD)


def parse_attachment(data: Any) -> Attachment:
    return _check("attachment", data, _ATTACHMENT)


def parse_post(data: Any) -> Post:
    return _check("post", data, _POST, ("attachments", parse_attachment))
