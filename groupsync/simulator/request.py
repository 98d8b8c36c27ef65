"""One Graph request: who is calling, what it addresses, and the checks Graph makes first."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .data import JSON, looks_like_exchange_id, parse_dt
from .payloads import parse_json_object
from .query import Query, parse_top
from .responses import (
    Response,
    SimHTTPError,
    access_denied,
    bad_request,
    directory_not_found,
    item_not_found,
    json_response,
)
from .shapes import odata_context
from .state import is_guid

if TYPE_CHECKING:
    from collections.abc import Callable

    from .app import Simulator

_PATH_SAFE = "-_.~!$&'()*+,;=:@"


@dataclass
class Identity:
    """The caller: a delegated user, or an application (token starting with ``app``)."""

    user: JSON | None

    @property
    def app_only(self) -> bool:
        """App-only tokens have no signed-in user."""
        return self.user is None


@dataclass
class Request:
    """What a handler needs from the WSGI environ, decoded once."""

    environ: dict[str, Any]
    method: str
    segments: list[str]
    identity: Identity
    base_url: str
    query_string: str = ""
    raw_body: bytes = field(default=b"", repr=False)

    @property
    def path_url(self) -> str:
        """The absolute URL of this resource, without query, for ``@odata.nextLink``."""
        return self.base_url + "".join("/" + quote(s, safe=_PATH_SAFE) for s in self.segments)

    @property
    def path_key(self) -> str:
        """What a ``$skiptoken`` is bound to."""
        return "/".join(self.segments).lower()

    def json(self) -> JSON:
        """The body as a JSON object (400 if it is empty or not JSON)."""
        return parse_json_object(self.raw_body)


def check_exchange_id(value: str) -> None:
    """Exchange refuses ids that cannot be base64 before it looks anything up."""
    if not looks_like_exchange_id(value):
        raise SimHTTPError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def directory_group(sim: Simulator, gid: str) -> JSON:
    """A group by id, with the directory's 400/404 for bad or unknown ids."""
    if not is_guid(gid):
        raise SimHTTPError(400, "Request_BadRequest", f"Invalid object identifier '{gid}'.")
    group = sim.state.group(gid)
    if group is None:
        raise directory_not_found(gid)
    return group


def mailbox_group(sim: Simulator, req: Request, gid: str, *, write: bool = False) -> JSON:
    """A group whose conversations the caller may read (or, with ``write``, post to).

    Members read and write; non-members read Public groups only; applications read any.
    Only Microsoft 365 groups (``groupTypes`` with "Unified") have a group mailbox: security
    groups and distribution lists answer 404 on every conversation and thread path.
    """
    group = directory_group(sim, gid)
    if "Unified" not in (group.get("groupTypes") or []):
        raise no_mailbox()
    user = req.identity.user
    if user is None or sim.state.is_member(gid, user["id"]):
        return group
    if write or str(group.get("visibility", "")).lower() == "private":
        raise access_denied()
    return group


def no_mailbox() -> SimHTTPError:
    """The Outlook service's 404 for a directory group that has no mailbox.

    Graph documents the 404 (graph-api.md, /me/memberOf) but not its body; this is the
    error Outlook REST gives for a mailbox it cannot find (code UNCONFIRMED for groups).
    """
    return SimHTTPError(404, "ResourceNotFound", "Resource could not be discovered.")


def deny_app_only(req: Request) -> None:
    """Conversation writes and attachment listing are not supported with app permissions."""
    if req.identity.app_only:
        raise access_denied()


def find_thread(
    sim: Simulator, req: Request, gid: str, cid: str | None, tid: str, *, write: bool = False,
    extra_ids: tuple[str, ...] = (),
) -> tuple[JSON, JSON]:
    """``(conversation, thread)`` addressed by either path form, or the right error."""
    mailbox_group(sim, req, gid, write=write)
    for value in (cid, tid, *extra_ids):
        if value is not None:
            check_exchange_id(value)
    if cid is not None and sim.state.conversation(gid, cid) is None:
        raise item_not_found()
    found = sim.state.thread(gid, tid)
    if found is None or (cid is not None and found[0]["id"] != cid):
        raise item_not_found()
    return found


def newest_first(sim: Simulator, objects: list[JSON]) -> list[JSON]:
    """Threads and conversations by ``lastDeliveredDateTime`` desc, or a seeded shuffle.

    The shuffle keys on each id, so the order is stable while paging yet tells a client
    nothing about recency.
    """
    if sim.options.thread_order == "random":
        seed = sim.options.seed

        def shuffled(obj: JSON) -> str:
            return hashlib.sha256(f"{seed}:{obj['id']}".encode()).hexdigest()

        return sorted(objects, key=shuffled)
    return sorted(objects, key=lambda o: parse_dt(o.get("lastDeliveredDateTime")), reverse=True)


def collection(
    sim: Simulator,
    req: Request,
    query: Query,
    items: list[JSON],
    serve: Callable[[JSON], JSON],
    fragment: str,
    select: list[str] | None = None,
) -> Response:
    """A paged collection response with ``@odata.context`` and, if more, ``@odata.nextLink``."""
    top = parse_top(query, sim.options.max_top)
    page = sim.pager.page(
        items,
        query=query,
        path_url=req.path_url,
        path_key=req.path_key,
        size=top or sim.options.page_size,
        empty_every=sim.options.empty_page_every,
    )
    body: JSON = {"@odata.context": odata_context(req.base_url, fragment, select)}
    if page.next_link:
        body["@odata.nextLink"] = page.next_link
    body["value"] = [serve(item) for item in page.items]
    return json_response(200, body)


def entity(req: Request, fragment: str, obj: JSON, select: list[str] | None = None,
           status: int = 200) -> Response:
    """A single resource with its ``@odata.context``."""
    return json_response(
        status, {"@odata.context": odata_context(req.base_url, fragment, select), **obj}
    )


def method_not_allowed(allowed: list[str]) -> SimHTTPError:
    """Graph's 405 for a verb the resource does not support."""
    return SimHTTPError(
        405,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
        [("Allow", ", ".join(sorted(allowed)))],
    )


def unknown_segment(segment: str) -> SimHTTPError:
    """Graph's answer for a path it cannot route."""
    return bad_request(f"Resource not found for the segment '{segment}'.")
