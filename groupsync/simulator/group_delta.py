"""``GET /groups/delta``: Graph's change tracking for groups, and the upstream group events
(new, renamed, removed) tests need to exercise it.

As documented (group-delta, delta-query-overview, delta-query-groups): a round starts
with ``/groups/delta`` (query options only there: ``$select``, and ``$filter`` limited to
``id eq '…'`` joined by ``or``, at most 50), pages through ``@odata.nextLink`` (a
``$skiptoken``) and ends with an ``@odata.deltaLink`` (a ``$deltatoken``); following that
link later returns only what changed since, removed groups as ``{"id", "@removed":
{"reason": "changed" | "deleted"}}`` (``changed``: soft-deleted, restorable; ``deleted``:
gone for good). Tokens are opaque and signed. A token older than the directory's
seven-day lifetime, or issued before ``expire_tokens``, is answered 400
``syncStateNotFound`` as the Graph team's announcement of that lifetime shows; a token that
is not ours is 400 ``BadRequest``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import JSON
from .query import DIRECTORY, parse_query, parse_select
from .request import Request
from .responses import Response, SimHTTPError, bad_request, json_response
from .shapes import GROUP_SELECTABLE, odata_context, serve_group

if TYPE_CHECKING:
    from .app import Simulator

TOKEN_LIFETIME = 7 * 24 * 3600  # directory delta links, since July 2020
MAX_FILTER_IDS = 50
EXPIRED_MESSAGE = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again."
)
_ID_EQ = re.compile(r"^\s*id\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
REASONS = ("changed", "deleted")


@dataclass
class GroupChanges:
    """When each group last changed, in generations (one per upstream group event).

    ``changed``: group id (lower case) to the generation of its last change (the loaded
    groups are generation 1); ``removed``: id to (generation, reason, the id as spelled);
    ``epoch`` goes up when every earlier token is to be forgotten.
    """

    generation: int = 1
    changed: dict[str, int] = field(default_factory=dict)
    removed: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    epoch: int = 0

    def bump(self) -> int:
        self.generation += 1
        return self.generation


# -- the endpoint ---------------------------------------------------------------------------


def groups_delta(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /groups/delta`` (also ``delta()`` and ``microsoft.graph.delta``, as SDKs send)."""
    query = parse_query(
        req.query_string, {"$select", "$filter", "$skiptoken", "$deltatoken"}, DIRECTORY
    )
    secret = _secret(sim)
    skip, delta = query.get("$skiptoken"), query.get("$deltatoken")
    changes = sim.group_changes
    if skip is not None or delta is not None:
        state = _decode(secret, skip if skip is not None else delta or "", changes.epoch)
        if delta is not None:  # a new round from where the last one ended
            state = {**state, "since": state["upto"], "upto": changes.generation, "offset": 0}
    else:
        select = None
        if query.get("$select") is not None:
            select = parse_select(query, _selectable(sim), "microsoft.graph.group")
        state = {
            "since": 0,
            "upto": changes.generation,
            "offset": 0,
            "select": select,
            "ids": _filter_ids(query.get("$filter")),
        }
    items = _changes(sim, state)
    size = sim.options.page_size
    page = items[state["offset"] : state["offset"] + size]
    select = state["select"]
    body: JSON = {"@odata.context": odata_context(req.base_url, "groups", select)}
    link_base = req.base_url + "/groups/delta"
    if state["offset"] + size < len(items):
        token = _encode(secret, {**state, "offset": state["offset"] + size}, changes.epoch)
        body["@odata.nextLink"] = f"{link_base}?$skiptoken={token}"
    else:
        token = _encode(secret, {**state, "offset": 0}, changes.epoch)
        body["@odata.deltaLink"] = f"{link_base}?$deltatoken={token}"
    body["value"] = page
    return json_response(200, body)


def _changes(sim: Simulator, state: dict[str, Any]) -> list[JSON]:
    """The round's items: every group on the first round, then what changed in between."""
    since, upto, ids = state["since"], state["upto"], state["ids"]
    changes = sim.group_changes
    out: list[JSON] = []
    for key, group in sim.state.groups.items():
        if ids is not None and key not in ids:
            continue
        if since == 0 or since < changes.changed.get(key, 1) <= upto:
            out.append(serve_group(group, state["select"]))
    if since > 0:
        for key, (generation, reason, spelled) in changes.removed.items():
            if (ids is None or key in ids) and since < generation <= upto:
                out.append({"id": spelled, "@removed": {"reason": reason}})
    return out


def _selectable(sim: Simulator) -> set[str]:
    return GROUP_SELECTABLE | {
        k for g in sim.state.groups.values() for k in g if not k.startswith("@")
    }


def _filter_ids(text: str | None) -> list[str] | None:
    """The ids of ``id eq '…' or id eq '…'`` (the only filter group delta takes)."""
    if text is None:
        return None
    parts = re.split(r"\s+or\s+", text.strip(), flags=re.IGNORECASE)
    ids = []
    for part in parts:
        match = _ID_EQ.match(part)
        if match is None:
            raise bad_request(
                f"Unsupported or invalid query filter clause specified: '{text}'. Delta "
                "query only supports filtering by id.",
                DIRECTORY,
            )
        ids.append(match.group(1).lower())
    if len(ids) > MAX_FILTER_IDS:
        raise bad_request(
            f"Delta query supports filtering by at most {MAX_FILTER_IDS} ids.", DIRECTORY
        )
    return ids


# -- tokens ---------------------------------------------------------------------------------


def _secret(sim: Simulator) -> bytes:
    return hashlib.sha256(f"groupsync-sim-group-delta-{sim.options.seed}".encode()).digest()


def _encode(secret: bytes, state: dict[str, Any], epoch: int) -> str:
    doc = {**state, "epoch": epoch, "issued": int(time.time())}
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    signature = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()[:24]
    raw = json.dumps({"p": payload, "s": signature}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(secret: bytes, token: str, epoch: int) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        outer = json.loads(raw)
        payload, signature = str(outer["p"]), str(outer["s"])
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()[:24]
        if not hmac.compare_digest(signature, expected):
            raise ValueError("signature")
        doc = json.loads(payload)
        state = {k: doc[k] for k in ("since", "upto", "offset", "select", "ids")}
        issued, token_epoch = int(doc["issued"]), int(doc["epoch"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_request("The delta token is malformed.") from None
    if token_epoch != epoch or time.time() - issued > TOKEN_LIFETIME:
        raise SimHTTPError(400, "syncStateNotFound", EXPIRED_MESSAGE)
    return state


# -- upstream group events (tests; Graph has other APIs for these) --------------------------


def add_group(sim: Simulator, group: JSON) -> JSON:
    """A new group (Unified unless ``groupTypes`` says otherwise), with an empty mailbox."""
    if not isinstance(group.get("id"), str) or not group["id"]:
        raise bad_request("'group' needs an 'id'")
    with sim._lock:
        key = group["id"].lower()
        stored = {"groupTypes": ["Unified"], "@sim.members": [], **copy.deepcopy(group)}
        sim.state.groups[key] = stored
        sim.state.mailboxes.setdefault(key, [])
        sim.group_changes.removed.pop(key, None)
        sim.group_changes.changed[key] = sim.group_changes.bump()
        return serve_group(stored)


def update_group(sim: Simulator, group_id: str, fields: JSON) -> JSON:
    """Change a group's properties upstream (a rename: ``displayName``, ``mail`` …)."""
    with sim._lock:
        group = sim.state.group(group_id)
        if group is None:
            raise KeyError(f"no group {group_id}")
        group.update({k: copy.deepcopy(v) for k, v in fields.items() if k != "id"})
        sim.group_changes.changed[group_id.lower()] = sim.group_changes.bump()
        return serve_group(group)


def remove_group(sim: Simulator, group_id: str, reason: str = "changed") -> None:
    """Delete a group upstream: ``changed`` (soft, restorable) or ``deleted`` (permanent)."""
    if reason not in REASONS:
        raise bad_request("'reason' is 'changed' or 'deleted'")
    with sim._lock:
        group = sim.state.group(group_id)
        if group is None:
            raise KeyError(f"no group {group_id}")
        key = group_id.lower()
        del sim.state.groups[key]
        sim.state.mailboxes.pop(key, None)
        sim.group_changes.changed.pop(key, None)
        sim.group_changes.removed[key] = (sim.group_changes.bump(), reason, group["id"])


def expire_tokens(sim: Simulator) -> None:
    """Forget every delta and skip token issued so far (Graph's token cache lost them)."""
    with sim._lock:
        sim.group_changes.epoch += 1


# -- /_sim/ controls ------------------------------------------------------------------------


def control_add_group(sim: Simulator, body: JSON) -> Response:
    group = body.get("group")
    if not isinstance(group, dict):
        raise bad_request("'group' must be an object")
    return json_response(201, add_group(sim, group))


def control_update_group(sim: Simulator, body: JSON) -> Response:
    fields = body.get("fields")
    group_id = body.get("group_id")
    if not isinstance(fields, dict) or not isinstance(group_id, str):
        raise bad_request("'group_id' and 'fields' (an object) are required")
    return json_response(200, update_group(sim, group_id, fields))


def control_remove_group(sim: Simulator, body: JSON) -> Response:
    group_id = body.get("group_id")
    if not isinstance(group_id, str):
        raise bad_request("'group_id' is required")
    remove_group(sim, group_id, str(body.get("reason") or "changed"))
    return json_response(200, {"removed": group_id})


def control_expire_tokens(sim: Simulator, body: JSON) -> Response:
    expire_tokens(sim)
    return json_response(200, {"epoch": sim.group_changes.epoch})
