"""Directory endpoints: /me, /users/{id}/memberOf and /groups."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .data import JSON
from .query import DIRECTORY, Query, parse_query, parse_select
from .request import Request, collection, directory_group, entity
from .responses import Response, bad_request, directory_not_found
from .shapes import GROUP_SELECTABLE, public, serve_group, serve_user

if TYPE_CHECKING:
    from .app import Simulator

_UNIFIED = re.compile(r"^\s*groupTypes/any\(\s*(\w+)\s*:\s*\1\s+eq\s+'Unified'\s*\)\s*$", re.I)
_LIST = {"$select", "$top", "$skiptoken"}
USER_SELECTABLE = {
    "id", "displayName", "mail", "userPrincipalName", "givenName", "surname", "jobTitle",
    "businessPhones", "mobilePhone", "officeLocation", "preferredLanguage",
}


def _me(req: Request) -> JSON:
    if req.identity.user is None:
        raise bad_request("/me request is only valid with delegated authentication flow.")
    return req.identity.user


def _user_select(sim: Simulator, req: Request) -> list[str] | None:
    query = parse_query(req.query_string, {"$select"}, DIRECTORY)
    known = USER_SELECTABLE | {k for u in sim.state.users.values() for k in u}
    return parse_select(query, known, "microsoft.graph.user")


def get_me(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /me``: the signed-in user (delegated tokens only)."""
    user = _me(req)
    select = _user_select(sim, req)
    return entity(req, "users/$entity", serve_user(user, select), select)


def get_user(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /users/{id}`` by id or userPrincipalName."""
    user = _lookup_user(sim, params[0])
    select = _user_select(sim, req)
    return entity(req, "users/$entity", serve_user(user, select), select)


def _lookup_user(sim: Simulator, key: str) -> JSON:
    user = sim.state.user(key)
    if user is None:
        raise directory_not_found(key)
    return user


def _member_of(sim: Simulator, req: Request, user: JSON, groups_only: bool) -> Response:
    query = parse_query(req.query_string, _LIST, DIRECTORY)
    items: list[JSON] = [
        serve_group(g, typed=True) for g in sim.state.member_groups(user["id"])
    ]
    if not groups_only:
        items += [public(r) for r in sim.state.tenant.get("directoryRoles", [])]
    fragment = "groups" if groups_only else "directoryObjects"
    return collection(sim, req, query, items, lambda item: item, fragment)


def me_member_of(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /me/memberOf``: groups and directory roles, each with ``@odata.type``."""
    return _member_of(sim, req, _me(req), groups_only=False)


def me_member_of_groups(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /me/memberOf/microsoft.graph.group``: the cast keeps groups only."""
    return _member_of(sim, req, _me(req), groups_only=True)


def user_member_of(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /users/{id}/memberOf``: the app-only way to find a user's groups."""
    return _member_of(sim, req, _lookup_user(sim, params[0]), groups_only=False)


def user_member_of_groups(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /users/{id}/memberOf/microsoft.graph.group``."""
    return _member_of(sim, req, _lookup_user(sim, params[0]), groups_only=True)


def _group_select(sim: Simulator, query: Query) -> list[str] | None:
    known = GROUP_SELECTABLE | {
        k for g in sim.state.groups.values() for k in g if not k.startswith("@")
    }
    return parse_select(query, known, "microsoft.graph.group")


def list_groups(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /groups``; the only filter accepted is the Microsoft 365 (Unified) one."""
    query = parse_query(req.query_string, _LIST | {"$filter"}, DIRECTORY)
    select = _group_select(sim, query)
    groups = list(sim.state.groups.values())
    flt = query.get("$filter")
    if flt is not None:
        if not _UNIFIED.match(flt):
            raise bad_request(
                f"Unsupported or invalid query filter clause specified: '{flt}'. Only "
                "groupTypes/any(c:c eq 'Unified') is supported.",
                DIRECTORY,
            )
        groups = [g for g in groups if "Unified" in (g.get("groupTypes") or [])]
    return collection(
        sim, req, query, groups, lambda g: serve_group(g, select), "groups", select
    )


def get_group(sim: Simulator, req: Request, params: list[str]) -> Response:
    """``GET /groups/{id}``."""
    group = directory_group(sim, params[0])
    query = parse_query(req.query_string, {"$select"}, DIRECTORY)
    select = _group_select(sim, query)
    return entity(req, "groups/$entity", serve_group(group, select), select)
