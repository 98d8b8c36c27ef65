"""OData query options as Graph accepts them on group mail, and server-driven paging."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from .responses import SimHTTPError, bad_request

ODATA_OPTIONS = {
    "$select", "$top", "$expand", "$skiptoken", "$filter", "$orderby", "$search", "$count",
    "$skip", "$format", "$deltatoken", "$apply", "$levels", "$compute", "$index", "$id",
}
EXCHANGE = "ErrorInvalidUrlQuery"
DIRECTORY = "Request_UnsupportedQuery"


@dataclass
class Query:
    """The ``$``-options of one request, decoded, with the raw pairs kept for nextLinks."""

    options: dict[str, str] = field(default_factory=dict)
    raw_pairs: list[str] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The value of ``$name`` (lower-case), or None."""
        return self.options.get(name)


def parse_query(query_string: str, allowed: set[str], code: str = EXCHANGE) -> Query:
    """Decode the query string and refuse options this endpoint does not support.

    Graph answers 400 for a known OData option an endpoint does not implement and for
    ``$``-options it does not know at all; plain (non-``$``) parameters are ignored.
    """
    query = Query()
    for pair in query_string.split("&"):
        if not pair:
            continue
        query.raw_pairs.append(pair)
        raw_key, _, raw_value = pair.partition("=")
        key = unquote_plus(raw_key).strip()
        if not key.startswith("$"):
            continue
        name = key.lower()
        if name in query.options:
            raise bad_request(f"Query option '{key}' was specified more than once.", code)
        if name not in allowed:
            if name in ODATA_OPTIONS:
                raise bad_request(
                    f"The query parameter '{key}' is not supported on this resource.", code
                )
            raise bad_request(f"Query option '{key}' is not supported.", "BadRequest")
        query.options[name] = unquote_plus(raw_value)
    return query


def parse_select(query: Query, properties: set[str], type_name: str) -> list[str] | None:
    """``$select`` as a list of known property names, or None when absent."""
    value = query.get("$select")
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise bad_request("Invalid $select value: it names no property.")
    lowered = {p.lower(): p for p in properties}
    result = []
    for name in names:
        if name.lower() not in lowered:
            raise bad_request(
                f"Could not find a property named '{name}' on type '{type_name}'."
            )
        result.append(lowered[name.lower()])
    return result


def parse_expand(query: Query, relationships: set[str], type_name: str) -> str | None:
    """``$expand`` of exactly one relationship, as Graph allows on posts."""
    value = query.get("$expand")
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if len(names) != 1:
        raise bad_request(
            "Only one relationship can be expanded in a single request; "
            f"'$expand={value}' names {len(names)}.",
            EXCHANGE,
        )
    lowered = {r.lower(): r for r in relationships}
    name = names[0].split("(")[0]
    if name.lower() not in lowered:
        raise bad_request(f"Could not find a property named '{name}' on type '{type_name}'.")
    return lowered[name.lower()]


def parse_top(query: Query, max_top: int) -> int | None:
    """``$top`` clamped to the server's maximum page size."""
    value = query.get("$top")
    if value is None:
        return None
    try:
        top = int(value)
    except ValueError:
        raise bad_request(f"Invalid value '{value}' for query option '$top'.") from None
    if top < 1:
        raise bad_request(f"Invalid value '{value}' for query option '$top'.")
    return min(top, max_top)


def project(obj: dict[str, Any], select: list[str] | None, keep: tuple[str, ...]) -> dict[str, Any]:
    """Keep ``keep`` annotations plus ``id`` and the selected properties (null if unset)."""
    if select is None:
        return obj
    out = {k: obj[k] for k in keep if k in obj}
    out["id"] = obj.get("id")
    for name in select:
        out[name] = obj.get(name)
    return out


@dataclass
class Page:
    """One page of a collection and the absolute link to the next, if any."""

    items: list[Any]
    next_link: str | None


class Pager:
    """Offset paging behind an opaque, signed ``$skiptoken``.

    The token is urlsafe base64 of a small JSON object carrying the offset, the number of page
    boundaries crossed (to insert empty pages) and an HMAC tying it to the path, so a tampered
    or foreign token is a 400 rather than a silently wrong page.
    """

    def __init__(self, seed: int) -> None:
        self._secret = hashlib.sha256(f"groupsync-sim-skiptoken-{seed}".encode()).digest()

    def page(
        self,
        items: list[Any],
        *,
        query: Query,
        path_url: str,
        path_key: str,
        size: int,
        empty_every: int = 0,
    ) -> Page:
        """Cut ``items`` at the position the request's ``$skiptoken`` points to."""
        offset, boundaries, empty = 0, 0, False
        token = query.get("$skiptoken")
        if token is not None:
            offset, boundaries, empty = self._decode(token, path_key)

        def link(next_offset: int, crossed: int, next_empty: bool) -> str:
            token = self._encode(next_offset, crossed, next_empty, path_key)
            return _next_link(path_url, query.raw_pairs, token)

        if empty:
            return Page([], link(offset, boundaries, False))
        chunk = items[offset : offset + size]
        if offset + size >= len(items):
            return Page(chunk, None)
        crossed = boundaries + 1
        insert_empty = empty_every > 0 and crossed % empty_every == 0
        return Page(chunk, link(offset + size, crossed, insert_empty))

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:16]

    def _encode(self, offset: int, boundaries: int, empty: bool, path_key: str) -> str:
        payload = f"{offset}:{boundaries}:{int(empty)}:{path_key}"
        doc = {"o": offset, "b": boundaries, "e": int(empty), "s": self._sign(payload)}
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def _decode(self, token: str, path_key: str) -> tuple[int, int, bool]:
        invalid = SimHTTPError(400, "BadRequest", "The $skiptoken value is invalid or expired.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            doc = json.loads(raw)
            offset, boundaries, empty = int(doc["o"]), int(doc["b"]), bool(doc["e"])
            signature = str(doc["s"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise invalid from None
        payload = f"{offset}:{boundaries}:{int(empty)}:{path_key}"
        if offset < 0 or not hmac.compare_digest(signature, self._sign(payload)):
            raise invalid
        return offset, boundaries, empty


def _next_link(path_url: str, raw_pairs: list[str], token: str) -> str:
    kept = [
        pair for pair in raw_pairs
        if unquote_plus(pair.partition("=")[0]).strip().lower() != "$skiptoken"
    ]
    return f"{path_url}?{'&'.join([*kept, f'$skiptoken={token}'])}"
