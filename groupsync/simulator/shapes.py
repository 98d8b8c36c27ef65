"""What each resource looks like on the wire: default properties, ``$select``, ``$expand``."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from .data import FILE_ATTACHMENT, ITEM_ATTACHMENT, JSON
from .query import project

CONVERSATION_FIELDS = (
    "id", "topic", "hasAttachments", "lastDeliveredDateTime", "uniqueSenders", "preview",
)
THREAD_FIELDS = (*CONVERSATION_FIELDS, "isLocked")
THREAD_SELECTABLE = {*THREAD_FIELDS, "toRecipients", "ccRecipients"}
# A post's default properties are those of Graph's list-posts example (docs-contrib
# api/conversationthread-list-posts.md); the back-references and newParticipants come only
# when $select names them, the stricter reading of a resource page that lists them but an
# example that never shows them.
POST_FIELDS = (
    "@odata.etag", "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
    "receivedDateTime", "hasAttachments", "body", "from", "sender",
)
POST_SELECT_ONLY = ("conversationThreadId", "conversationId", "newParticipants")
POST_SELECTABLE = (set(POST_FIELDS) - {"@odata.etag"}) | set(POST_SELECT_ONLY)
POST_RELATIONSHIPS = {"attachments", "extensions", "inReplyTo"}
_POST_HIDDEN = {"attachments", "extensions", "inReplyTo"}
ATTACHMENT_BASE = ("@odata.type", "id", "lastModifiedDateTime", "name", "contentType", "size",
                   "isInline")
FILE_EXTRA = ("contentId", "contentLocation", "contentBytes")
ATTACHMENT_SELECTABLE = {*ATTACHMENT_BASE[1:], *FILE_EXTRA}
ITEM_EXPAND = "microsoft.graph.itemAttachment/item"
GROUP_SELECTABLE = {
    "id", "displayName", "description", "mail", "mailNickname", "groupTypes", "visibility",
    "mailEnabled", "securityEnabled", "createdDateTime", "classification", "deletedDateTime",
    "expirationDateTime", "isAssignableToRole", "membershipRule", "onPremisesSyncEnabled",
    "preferredDataLocation", "preferredLanguage", "proxyAddresses", "renewedDateTime",
    "resourceBehaviorOptions", "resourceProvisioningOptions", "securityIdentifier", "theme",
}


def public(obj: JSON) -> JSON:
    """Drop the simulator's own ``@sim.*`` keys."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("@sim.")}


def serve_group(group: JSON, select: list[str] | None = None, typed: bool = False) -> JSON:
    """A directory group; ``typed`` adds ``@odata.type`` as in memberOf collections."""
    out = public(group)
    if typed:
        out = {"@odata.type": "#microsoft.graph.group", **out}
    return project(out, select, ("@odata.type",))


def serve_conversation(conv: JSON, select: list[str] | None = None) -> JSON:
    """A conversation with its default properties (threads only through navigation)."""
    out = {k: copy.deepcopy(conv.get(k)) for k in CONVERSATION_FIELDS}
    return project(out, select, ())


def serve_thread(thread: JSON, select: list[str] | None = None) -> JSON:
    """A thread; recipients appear only when ``$select``ed, as documented."""
    if select is None:
        return {k: copy.deepcopy(thread.get(k)) for k in THREAD_FIELDS}
    return project({k: copy.deepcopy(thread.get(k)) for k in THREAD_SELECTABLE}, select, ())


def serve_attachment(att: JSON, select: list[str] | None = None, expand_item: bool = False) -> JSON:
    """An attachment with its polymorphic fields; ``item`` only for the itemAttachment expand."""
    kind = att.get("@odata.type", FILE_ATTACHMENT)
    keys = ATTACHMENT_BASE + (FILE_EXTRA if kind == FILE_ATTACHMENT else ())
    out = {k: copy.deepcopy(att.get(k)) for k in keys}
    out["@odata.type"] = kind
    out = project(out, select, ("@odata.type",))
    if expand_item and kind == ITEM_ATTACHMENT:
        out["item"] = copy.deepcopy(att.get("item"))
    return out


def serve_post(
    post: JSON,
    select: list[str] | None = None,
    expand: str | None = None,
    *,
    in_reply_to: JSON | None = None,
    hide_attachments: bool = False,
) -> JSON:
    """A post with its default properties, plus one expanded relationship if asked.

    ``hide_attachments`` mirrors the reported app-only behaviour of ``$expand=attachments``
    (an empty list rather than an error).
    """
    out = {k: copy.deepcopy(post.get(k)) for k in POST_FIELDS}
    if select is not None:
        out.update({k: copy.deepcopy(post.get(k)) for k in POST_SELECT_ONLY})
    extra = {
        k: copy.deepcopy(v) for k, v in post.items()
        if k not in out and k not in _POST_HIDDEN and k not in POST_SELECT_ONLY
        and not k.startswith("@sim.")
    }
    out.update(extra)
    out = project(out, select, ("@odata.etag",))
    if expand == "attachments":
        atts = [] if hide_attachments else post.get("attachments", [])
        out["attachments"] = [serve_attachment(a) for a in atts]
    elif expand == "extensions":
        out["extensions"] = copy.deepcopy(post.get("extensions", []))
    elif expand == "inReplyTo":
        out["inReplyTo"] = None if in_reply_to is None else serve_post(in_reply_to)
    return out


def serve_user(user: JSON, select: list[str] | None = None) -> JSON:
    """A directory user."""
    return project(public(user), select, ("@odata.type",))


def odata_context(base_url: str, fragment: str, select: list[str] | None = None) -> str:
    """``@odata.context`` in Graph's form, with the ``$select`` list when there is one."""
    suffix = f"({','.join(select)})" if select else ""
    if fragment.endswith("/$entity") and select:
        fragment = fragment.removesuffix("/$entity") + suffix + "/$entity"
        suffix = ""
    return f"{base_url}/$metadata#{fragment}{suffix}"


def quote_key(value: Any) -> str:
    """An entity key inside ``@odata.context``, percent-encoded like the samples show."""
    return quote(str(value), safe="-_.~")
