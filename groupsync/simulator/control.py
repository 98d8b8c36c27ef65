"""``/_sim/``: the test-control surface over HTTP, for clients in another process.

No auth, never logged, never throttled: it is the test harness, not Graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from . import group_delta
from .data import JSON, decode_b64
from .payloads import parse_json_object, read_body
from .request import method_not_allowed
from .responses import Response, SimHTTPError, bad_request, empty_response, json_response

if TYPE_CHECKING:
    from .app import Simulator


def _log(sim: Simulator, environ: dict[str, Any]) -> Response:
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    body: JSON = {"total": len(sim.log.entries), "per_endpoint": sim.log.per_endpoint()}
    if "window" in query:
        try:
            window = float(query["window"][0])
        except ValueError:
            raise bad_request("window must be a number of seconds") from None
        body["max_in_window"] = sim.log.max_in_window(window)
    body["entries"] = [
        {"time": t, "method": method, "endpoint": endpoint, "status": status}
        for t, method, endpoint, status in sim.log.entries
    ]
    return json_response(200, body)


def _reset_log(sim: Simulator, body: JSON) -> Response:
    sim.log.reset()
    return empty_response(204)


def _edit_post(sim: Simulator, body: JSON) -> Response:
    post = sim.edit_post(
        _str(body, "group_id"), _str(body, "thread_id"), _str(body, "post_id"),
        content=body.get("content"), categories=body.get("categories"),
    )
    return json_response(200, post)


def _add_post(sim: Simulator, body: JSON) -> Response:
    post = body.get("post")
    if not isinstance(post, dict):
        raise bad_request("'post' must be an object")
    return json_response(201, sim.add_post(_str(body, "group_id"), _str(body, "thread_id"), post))


def _new_thread(sim: Simulator, body: JSON) -> Response:
    post = body.get("post")
    if not isinstance(post, dict):
        raise bad_request("'post' must be an object")
    thread = sim.new_thread(
        _str(body, "group_id"), _str(body, "topic"), post, body.get("conversation_id")
    )
    return json_response(201, thread)


def _delete_thread(sim: Simulator, body: JSON) -> Response:
    sim.delete_thread(_str(body, "group_id"), _str(body, "thread_id"))
    return empty_response(204)


def _add_attachment(sim: Simulator, body: JSON) -> Response:
    try:
        data = decode_b64(body.get("data", ""))
    except ValueError:
        raise bad_request("'data' must be base64") from None
    att = sim.add_attachment(
        _str(body, "group_id"), _str(body, "thread_id"), _str(body, "post_id"),
        _str(body, "name"), str(body.get("content_type") or "application/octet-stream"), data,
        is_inline=bool(body.get("is_inline", False)), content_id=body.get("content_id"),
    )
    return json_response(201, att)


def _down(sim: Simulator, body: JSON) -> Response:
    down = body.get("down")
    if not isinstance(down, bool):
        raise bad_request("'down' must be true or false")
    sim.set_down(down)
    return json_response(200, {"down": sim.down})


def _str(body: JSON, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{key}' is required")
    return value


_POSTS: dict[str, Callable[[Simulator, JSON], Response]] = {
    "reset-log": _reset_log,
    "edit-post": _edit_post,
    "add-post": _add_post,
    "new-thread": _new_thread,
    "delete-thread": _delete_thread,
    "add-attachment": _add_attachment,
    "down": _down,
    "add-group": group_delta.control_add_group,
    "update-group": group_delta.control_update_group,
    "remove-group": group_delta.control_remove_group,
    "expire-group-delta": group_delta.control_expire_tokens,
}


def handle(sim: Simulator, environ: dict[str, Any], path: str) -> Response:
    """Dispatch one ``/_sim/...`` request (also reachable as ``/v1.0/_sim/...`` for clients
    whose base URL ends in /v1.0); unknown ids in bodies answer 404."""
    name = path.removeprefix("/_sim").strip("/")
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    if name == "log":
        if method != "GET":
            raise method_not_allowed(["GET"])
        return _log(sim, environ)
    if name == "sent-mail":
        if method != "GET":
            raise method_not_allowed(["GET"])
        return json_response(200, {"value": list(sim.sent_mail)})
    handler = _POSTS.get(name)
    if handler is None:
        raise SimHTTPError(404, "NotFound", f"No simulator control named '{name}'.")
    if method != "POST":
        raise method_not_allowed(["POST"])
    raw = read_body(environ)
    body = parse_json_object(raw) if raw.strip() else {}
    try:
        return handler(sim, body)
    except KeyError as exc:
        raise SimHTTPError(404, "NotFound", str(exc.args[0] if exc.args else exc)) from None
