"""Group mail endpoints: conversations, threads, posts and attachments."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr
from typing import TYPE_CHECKING

from . import payloads
from .data import FILE_ATTACHMENT, ITEM_ATTACHMENT, JSON, decode_b64, format_dt, now_utc
from .query import Query, parse_expand, parse_query, parse_select, parse_top
from .request import (
    Request,
    check_exchange_id,
    collection,
    deny_app_only,
    entity,
    find_thread,
    mailbox_group,
    newest_first,
)
from .responses import (
    Response,
    access_denied,
    bad_request,
    empty_response,
    item_not_found,
    json_response,
    raw_response,
)
from .shapes import (
    ATTACHMENT_SELECTABLE,
    CONVERSATION_FIELDS,
    ITEM_EXPAND,
    POST_RELATIONSHIPS,
    POST_SELECTABLE,
    THREAD_SELECTABLE,
    odata_context,
    quote_key,
    serve_attachment,
    serve_conversation,
    serve_post,
    serve_thread,
)

if TYPE_CHECKING:
    from .app import Simulator

_LIST = {"$select", "$top", "$skiptoken"}
_CONVERSATION = "microsoft.graph.conversation"
_THREAD = "microsoft.graph.conversationThread"
_POST = "microsoft.graph.post"
_ATTACHMENT = "microsoft.graph.attachment"
LOCKED = "The thread is locked; new posts cannot be added to it."


def _sender(sim: Simulator, req: Request, gid: str) -> JSON:
    user = req.identity.user
    return sim.state.group_sender(gid) if user is None else sim.state.user_recipient(user)


def _threads_fragment(gid: str, cid: str | None) -> str:
    if cid is None:
        return f"groups('{gid}')/threads"
    return f"groups('{gid}')/conversations('{quote_key(cid)}')/threads"


def _posts_fragment(gid: str, tid: str, pid: str | None = None) -> str:
    fragment = f"groups('{gid}')/threads('{quote_key(tid)}')/posts"
    return fragment if pid is None else f"{fragment}('{quote_key(pid)}')"


def _conversation(sim: Simulator, req: Request, gid: str, cid: str, write: bool) -> JSON:
    mailbox_group(sim, req, gid, write=write)
    check_exchange_id(cid)
    conv = sim.state.conversation(gid, cid)
    if conv is None:
        raise item_not_found()
    return conv


def _post(
    sim: Simulator, req: Request, params: list[str], *, write: bool = False
) -> tuple[JSON, JSON, JSON]:
    gid, cid, tid, pid, *rest = params
    conv, thread = find_thread(sim, req, gid, cid, tid, write=write, extra_ids=(pid, *rest))
    post = next((p for p in thread["posts"] if p["id"] == pid), None)
    if post is None:
        raise item_not_found()
    return conv, thread, post


# -- conversations --------------------------------------------------------------------------


def list_conversations(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /groups/{id}/conversations``, newest first."""
    gid = params[0]
    mailbox_group(sim, req, gid)
    query = parse_query(req.query_string, _LIST)
    select = parse_select(query, set(CONVERSATION_FIELDS), _CONVERSATION)
    conversations = newest_first(sim, sim.state.conversations(gid))
    return collection(sim, req, query, conversations, lambda c: serve_conversation(c, select),
                      f"groups('{gid}')/conversations", select)


def create_conversation(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``POST /groups/{id}/conversations``: 201 with the conversation id and thread ids only."""
    gid = params[0]
    mailbox_group(sim, req, gid, write=True)
    deny_app_only(req)
    topic, (first, *others) = payloads.create_conversation(req.json())
    sender = _sender(sim, req, gid)
    conv, _ = sim.state.create_thread(gid, topic, first, sender)
    for posts in others:
        sim.state.create_thread(gid, topic, posts, sender, conv)
    sim.wrote(gid)
    body = {"id": conv["id"], "threads": [{"id": t["id"]} for t in conv["threads"]]}
    return entity(req, f"groups('{gid}')/conversations/$entity", body, status=201)


def get_conversation(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /groups/{id}/conversations/{id}``."""
    gid, cid = params
    conv = _conversation(sim, req, gid, cid, write=False)
    query = parse_query(req.query_string, {"$select"})
    select = parse_select(query, set(CONVERSATION_FIELDS), _CONVERSATION)
    return entity(req, f"groups('{gid}')/conversations/$entity",
                  serve_conversation(conv, select), select)


def delete_conversation(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``DELETE /groups/{id}/conversations/{id}``: 204 and every thread gone."""
    gid, cid = params
    conv = _conversation(sim, req, gid, cid, write=True)
    sim.state.delete_conversation(gid, conv)
    sim.wrote(gid)
    return empty_response(204)


# -- threads --------------------------------------------------------------------------------


def list_threads(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /groups/{id}/threads`` or ``.../conversations/{id}/threads``, newest first."""
    gid, cid = params[0], (params[1] if len(params) > 1 else None)
    if cid is None:
        mailbox_group(sim, req, gid)
        threads = sim.state.threads(gid)
    else:
        threads = list(_conversation(sim, req, gid, cid, write=False)["threads"])
    query = parse_query(req.query_string, _LIST)
    select = parse_select(query, THREAD_SELECTABLE, _THREAD)
    return collection(sim, req, query, newest_first(sim, threads),
                      lambda t: serve_thread(t, select), _threads_fragment(gid, cid), select)


def create_thread(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``POST /groups/{id}/threads`` (new conversation) or ``.../conversations/{id}/threads``."""
    gid, cid = params[0], (params[1] if len(params) > 1 else None)
    if cid is None:
        mailbox_group(sim, req, gid, write=True)
        conv = None
    else:
        conv = _conversation(sim, req, gid, cid, write=True)
    deny_app_only(req)
    topic, posts = payloads.create_thread(req.json(), topic_required=cid is None)
    _, thread = sim.state.create_thread(gid, topic, posts, _sender(sim, req, gid), conv)
    sim.wrote(gid)
    return entity(req, f"groups('{gid}')/threads/$entity", serve_thread(thread), status=201)


def get_thread(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET .../threads/{id}``; ``$select`` can add the recipients."""
    gid, cid, tid = params
    _, thread = find_thread(sim, req, gid, cid, tid)
    query = parse_query(req.query_string, {"$select"})
    select = parse_select(query, THREAD_SELECTABLE, _THREAD)
    return entity(req, f"groups('{gid}')/threads/$entity", serve_thread(thread, select), select)


def update_thread(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``PATCH .../threads/{id}``: only ``isLocked`` is writable.

    Answers ``200 OK`` with an empty JSON object, as documented
    (learn.microsoft.com/graph/api/conversationthread-update, "Response").
    """
    gid, cid, tid = params
    _, thread = find_thread(sim, req, gid, cid, tid, write=True)
    sim.state.set_locked(thread, payloads.patch_thread(req.json()))
    sim.wrote(gid)
    return json_response(200, {})


def delete_thread(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``DELETE .../threads/{id}``: 204; the last thread takes its conversation along."""
    gid, cid, tid = params
    conv, thread = find_thread(sim, req, gid, cid, tid, write=True)
    sim.state.delete_thread(gid, conv, thread)
    sim.wrote(gid)
    return empty_response(204)


def reply_to_thread(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``POST .../threads/{id}/reply``: 202 Accepted and no body (so no new post id)."""
    gid, cid, tid = params
    conv, thread = find_thread(sim, req, gid, cid, tid, write=True)
    deny_app_only(req)
    if thread["isLocked"]:
        raise access_denied(LOCKED)
    fields = payloads.reply(req.json())
    if thread["posts"]:
        fields["@sim.inReplyTo"] = thread["posts"][-1]["id"]
    sim.state.append_post(gid, conv, thread, fields, _sender(sim, req, gid))
    sim.wrote(gid)
    return empty_response(202)


# -- posts ----------------------------------------------------------------------------------


def _post_options(
    req: Request, allowed: set[str]
) -> tuple[Query, list[str] | None, str | None]:
    query = parse_query(req.query_string, allowed)
    select = parse_select(query, POST_SELECTABLE, _POST)
    expand = parse_expand(query, POST_RELATIONSHIPS, _POST)
    return query, select, expand


def _serve_post(sim: Simulator, req: Request, conv: JSON, post: JSON, select: list[str] | None,
                expand: str | None) -> JSON:
    parent = None
    if expand == "inReplyTo" and post.get("@sim.inReplyTo"):
        parent = sim.state.post_in_conversation(conv, post["@sim.inReplyTo"])
    return serve_post(post, select, expand, in_reply_to=parent,
                      hide_attachments=req.identity.app_only)


def list_posts(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET .../threads/{id}/posts``, oldest first, optionally cut at ``truncate_posts_at``."""
    gid, cid, tid = params
    conv, thread = find_thread(sim, req, gid, cid, tid)
    query, select, expand = _post_options(req, _LIST | {"$expand"})
    posts = list(thread["posts"])

    def serve(post: JSON) -> JSON:
        return _serve_post(sim, req, conv, post, select, expand)

    fragment = _posts_fragment(gid, tid)
    limit = sim.options.truncate_posts_at
    if limit > 0:
        top = parse_top(query, sim.options.max_top)
        kept = posts[: min(limit, top or limit)]
        body = {"@odata.context": odata_context(req.base_url, fragment, select),
                "value": [serve(p) for p in kept]}
        return json_response(200, body)
    return collection(sim, req, query, posts, serve, fragment, select)


def get_post(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET .../posts/{id}`` with ``$expand`` of attachments, extensions or inReplyTo."""
    conv, _, post = _post(sim, req, params)
    _, select, expand = _post_options(req, {"$select", "$expand"})
    return entity(req, _posts_fragment(params[0], params[2]) + "/$entity",
                  _serve_post(sim, req, conv, post, select, expand), select)


def reply_to_post(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``POST .../posts/{id}/reply``: 200 OK and no body."""
    conv, thread, post = _post(sim, req, params, write=True)
    if thread["isLocked"]:
        raise access_denied(LOCKED)
    fields = payloads.reply(req.json())
    fields["@sim.inReplyTo"] = post["id"]
    sim.state.append_post(params[0], conv, thread, fields, _sender(sim, req, params[0]))
    sim.wrote(params[0])
    return empty_response(200)


def forward_post(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``POST .../posts/{id}/forward``: 200 OK, no body; the mail is recorded in sent_mail."""
    _, _, post = _post(sim, req, params, write=True)
    comment, to = payloads.forward(req.json())
    sim.sent_mail.append({
        "group_id": params[0], "thread_id": params[2], "post_id": post["id"],
        "comment": comment, "recipients": to, "sentDateTime": format_dt(now_utc()),
    })
    return empty_response(200)


# -- attachments ----------------------------------------------------------------------------


def list_attachments(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET .../posts/{id}/attachments`` (not available to app-only callers)."""
    _, _, post = _post(sim, req, params)
    deny_app_only(req)
    query = parse_query(req.query_string, _LIST | {"$expand"})
    select = parse_select(query, ATTACHMENT_SELECTABLE, _ATTACHMENT)
    item = parse_expand(query, {ITEM_EXPAND}, _ATTACHMENT) is not None
    return collection(sim, req, query, list(post["attachments"]),
                      lambda a: serve_attachment(a, select, item),
                      _posts_fragment(params[0], params[2], params[3]) + "/attachments", select)


def create_attachment(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``POST .../posts/{id}/attachments``: 201 with the attachment; the post gets a new
    changeKey."""
    conv, thread, post = _post(sim, req, params, write=True)
    deny_app_only(req)
    att = sim.state.add_attachment(conv, thread, post, payloads.attachment(req.json()))
    sim.wrote(params[0])
    fragment = _posts_fragment(params[0], params[2], params[3]) + "/attachments/$entity"
    return entity(req, fragment, serve_attachment(att), status=201)


def _attachment(sim: Simulator, req: Request, params: list[str]) -> JSON:
    _, _, post = _post(sim, req, params)
    att = next((a for a in post["attachments"] if a["id"] == params[4]), None)
    if att is None:
        raise item_not_found()
    return att


def get_attachment(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET .../attachments/{id}``."""
    att = _attachment(sim, req, params)
    query = parse_query(req.query_string, {"$select", "$expand"})
    select = parse_select(query, ATTACHMENT_SELECTABLE, _ATTACHMENT)
    item = parse_expand(query, {ITEM_EXPAND}, _ATTACHMENT) is not None
    fragment = _posts_fragment(params[0], params[2], params[3]) + "/attachments/$entity"
    return entity(req, fragment, serve_attachment(att, select, item), select)


def attachment_value(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET .../attachments/{id}/$value``: the raw file, or MIME for an item attachment."""
    att = _attachment(sim, req, params)
    parse_query(req.query_string, set())
    kind = att.get("@odata.type")
    if kind == FILE_ATTACHMENT:
        data = decode_b64(att.get("contentBytes") or "")
        content_type = att.get("contentType") or "application/octet-stream"
    elif kind == ITEM_ATTACHMENT:
        data = _item_mime(att.get("item") or {})
        content_type = "message/rfc822"
    else:
        raise bad_request("$value is not supported for reference attachments.",
                          "ErrorInvalidRequest")
    return raw_response(200, data, content_type)


def _item_mime(item: JSON) -> bytes:
    message = EmailMessage()
    message["Subject"] = str(item.get("subject") or "")
    sender = ((item.get("from") or {}).get("emailAddress")) or {}
    if sender.get("address"):
        message["From"] = formataddr((sender.get("name") or "", sender["address"]))
    body = item.get("body") or {}
    subtype = "html" if str(body.get("contentType", "text")).lower() == "html" else "plain"
    message.set_content(str(body.get("content") or ""), subtype=subtype)
    return message.as_bytes()
