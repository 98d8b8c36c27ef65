"""Request bodies of the write operations, validated the way Graph rejects them."""

from __future__ import annotations

import json
from typing import Any

from .data import (
    ATTACHMENT_TYPES,
    FILE_ATTACHMENT,
    ITEM_ATTACHMENT,
    JSON,
    OPEN_EXTENSION,
    decode_b64,
    encode_b64,
    text_to_html,
)
from .responses import SimHTTPError, bad_request

_MISSING = object()
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
BAD_JSON = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and "
    "payload is of valid JSON format."
)


def read_body(environ: dict[str, Any]) -> bytes:
    """The raw request body, refusing anything absurdly large before reading it."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise bad_request("Invalid Content-Length header.") from None
    if length > MAX_BODY_BYTES:
        raise SimHTTPError(413, "RequestEntityTooLarge", "The request body is too large.")
    if length <= 0:
        return b""
    return environ["wsgi.input"].read(length)


def parse_json_object(raw: bytes) -> JSON:
    """A JSON object body, or Graph's 400 for an empty or unreadable payload."""
    if not raw.strip():
        raise bad_request("Empty Payload. JSON content expected.")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise bad_request(BAD_JSON) from None
    if not isinstance(value, dict):
        raise bad_request(BAD_JSON)
    return value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise bad_request(message, "ErrorInvalidRequest")


def recipients(value: Any, field: str) -> list[JSON]:
    """A list of Graph ``recipient`` objects, each with an address."""
    if value is None:
        return []
    _require(isinstance(value, list), f"'{field}' must be a collection of recipients.")
    result = []
    for item in value:
        address: Any = item.get("emailAddress") if isinstance(item, dict) else None
        _require(
            isinstance(address, dict) and isinstance(address.get("address"), str)
            and "@" in address["address"],
            f"Each of '{field}' needs emailAddress.address.",
        )
        result.append({"emailAddress": {"name": address.get("name"),
                                         "address": address["address"]}})
    return result


def item_body(value: Any) -> JSON:
    """An itemBody; text is stored as HTML because group posts are HTML in Exchange."""
    _require(isinstance(value, dict), "The post needs a 'body' with contentType and content.")
    content = value.get("content")
    _require(isinstance(content, str), "'body.content' must be a string.")
    kind = str(value.get("contentType", "html")).lower()
    _require(kind in ("text", "html"), "'body.contentType' must be 'text' or 'html'.")
    if kind == "text":
        return {"contentType": "html", "content": text_to_html(content)}
    return {"contentType": "html", "content": content}


def attachment(value: Any) -> JSON:
    """A new attachment: file (base64 under 3 MB), item or reference."""
    _require(isinstance(value, dict), "An attachment must be an object.")
    kind = value.get("@odata.type")
    _require(isinstance(kind, str), "An attachment needs '@odata.type'.")
    kind = kind if kind.startswith("#") else "#" + kind
    _require(kind in ATTACHMENT_TYPES, f"Unsupported attachment type '{kind}'.")
    _require(isinstance(value.get("name"), str) and bool(value["name"]),
             "An attachment needs a 'name'.")
    out: JSON = {"@odata.type": kind, "name": value["name"],
                 "contentType": value.get("contentType"),
                 "isInline": bool(value.get("isInline", False))}
    if kind == FILE_ATTACHMENT:
        try:
            data = decode_b64(value.get("contentBytes"))
        except ValueError:
            raise bad_request("'contentBytes' must be base64.", "ErrorInvalidRequest") from None
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise SimHTTPError(
                413, "ErrorMessageSizeExceeded",
                "Attachments of group posts must be smaller than 3 MB.",
            )
        out.update(contentBytes=encode_b64(data), size=len(data),
                   contentId=value.get("contentId"), contentLocation=None)
    elif kind == ITEM_ATTACHMENT:
        _require(isinstance(value.get("item"), dict), "An itemAttachment needs an 'item'.")
        out["item"] = value["item"]
        out["size"] = len(json.dumps(value["item"]))
    return out


def extension(value: Any) -> JSON:
    """An open extension to store with the post."""
    _require(isinstance(value, dict), "An extension must be an object.")
    kind = str(value.get("@odata.type", "")).lstrip("#")
    _require(kind == OPEN_EXTENSION.lstrip("#"),
             "Only '#microsoft.graph.openTypeExtension' extensions are supported.")
    _require(isinstance(value.get("extensionName"), str) and bool(value["extensionName"]),
             "An open extension needs an 'extensionName'.")
    return dict(value)


def post(value: Any, field: str = "post") -> JSON:
    """The fields of a post sent in a write, ready for ``TenantState.new_post``."""
    _require(isinstance(value, dict), f"'{field}' must be a post object.")
    categories = value.get("categories", [])
    _require(isinstance(categories, list) and all(isinstance(c, str) for c in categories),
             "'categories' must be a collection of strings.")
    attachments = value.get("attachments", [])
    extensions = value.get("extensions", [])
    _require(isinstance(attachments, list), "'attachments' must be a collection.")
    _require(isinstance(extensions, list), "'extensions' must be a collection.")
    return {
        "body": item_body(value.get("body")),
        "categories": categories,
        "newParticipants": recipients(value.get("newParticipants"), "newParticipants"),
        "attachments": [attachment(a) for a in attachments],
        "extensions": [extension(e) for e in extensions],
    }


def _posts(value: Any, field: str) -> list[JSON]:
    _require(isinstance(value, list) and bool(value), f"'{field}' must list at least one post.")
    return [post(p, field) for p in value]


def _topic(body: JSON, required: bool) -> str | None:
    topic = body.get("topic")
    if topic is None and not required:
        return None
    _require(isinstance(topic, str) and bool(topic.strip()), "A 'topic' is required.")
    return topic


def create_conversation(body: JSON) -> tuple[str, list[list[JSON]]]:
    """``{"topic", "threads": [{"posts": [post]}]}``."""
    topic = _topic(body, required=True)
    threads: Any = body.get("threads")
    _require(isinstance(threads, list) and bool(threads), "'threads' must list one thread.")
    result = []
    for thread in threads:
        _require(isinstance(thread, dict), "Each of 'threads' must be an object.")
        result.append(_posts(thread.get("posts"), "threads.posts"))
    return str(topic), result


def create_thread(body: JSON, topic_required: bool) -> tuple[str | None, list[JSON]]:
    """``{"topic", "posts": [post]}``; the topic may be inherited inside a conversation."""
    return _topic(body, topic_required), _posts(body.get("posts"), "posts")


def action_parameter(body: JSON, name: str) -> Any:
    """The value of an action parameter, whatever the case of its name (``_MISSING`` if absent).

    Graph's ``$metadata`` spells the parameters of ``reply`` and ``forward`` ``Post``,
    ``Comment`` and ``ToRecipients``, and Microsoft's SDKs (msgraph-sdk's
    ``ReplyPostRequestBody``, ``ForwardPostRequestBody``) send them so, while the documented
    requests (learn.microsoft.com/graph/api/conversationthread-reply, post-reply,
    post-forward) write ``post``, ``comment``, ``toRecipients``. Both are Microsoft's own
    clients of the same service, so the names are matched case-insensitively. A name given
    twice in different cases is ambiguous and refused.
    """
    found = [key for key in body if isinstance(key, str) and key.lower() == name.lower()]
    _require(len(found) <= 1, f"The parameter '{name}' was given more than once.")
    return body[found[0]] if found else _MISSING


def reply(body: JSON) -> JSON:
    """``{"post": post}`` (parameter name in any case)."""
    value = action_parameter(body, "post")
    _require(value is not _MISSING, "The request needs a 'post'.")
    return post(value)


def forward(body: JSON) -> tuple[str | None, list[JSON]]:
    """``{"comment", "toRecipients": [recipient]}`` (parameter names in any case)."""
    comment = action_parameter(body, "comment")
    comment = None if comment is _MISSING else comment
    _require(comment is None or isinstance(comment, str), "'comment' must be a string.")
    to = action_parameter(body, "toRecipients")
    to = recipients(None if to is _MISSING else to, "toRecipients")
    _require(bool(to), "'toRecipients' must name at least one recipient.")
    return comment, to


def patch_thread(body: JSON) -> bool:
    """Only ``isLocked`` may change; the topic is fixed once a thread exists."""
    unknown = sorted(set(body) - {"isLocked"})
    _require(not unknown, f"Property '{unknown[0] if unknown else ''}' cannot be updated.")
    _require(isinstance(body.get("isLocked"), bool), "'isLocked' must be true or false.")
    return bool(body["isLocked"])
