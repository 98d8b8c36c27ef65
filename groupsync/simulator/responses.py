"""HTTP responses in Graph's wire format, including its error JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
ACCESS_DENIED = "Access is denied. Check credentials and try again."
ITEM_NOT_FOUND = "The specified object was not found in the store."


@dataclass
class Response:
    """A fully buffered response; buffering keeps the in-flight count exact."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status_line(self) -> str:
        """The WSGI status string, e.g. ``"404 Not Found"``."""
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        return f"{self.status} {phrase}"


class SimHTTPError(Exception):
    """Raised anywhere while handling a request; becomes Graph's error JSON.

    Parameters: ``status`` (HTTP status), ``code`` and ``message`` (Graph's ``error.code`` and
    ``error.message``), ``headers`` (extra response headers such as ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """Serialise ``obj`` the way Graph does (UTF-8 JSON, OData content type)."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, [("Content-Type", JSON_TYPE), *(headers or [])])


def empty_response(status: int) -> Response:
    """A response with no body (202 reply, 200 forward, 204 delete)."""
    return Response(status, b"", [])


def raw_response(status: int, data: bytes, content_type: str) -> Response:
    """Bytes as they are, e.g. an attachment's ``$value``."""
    return Response(status, data, [("Content-Type", content_type)])


def error_response(error: SimHTTPError, request_id: str, client_request_id: str | None) -> Response:
    """Graph's error object, with ``innerError`` carrying the request ids and date."""
    inner = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id or request_id,
    }
    body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
    return json_response(error.status, body, error.headers)


def bad_request(message: str, code: str = "BadRequest") -> SimHTTPError:
    """400 with Graph's generic code unless a more specific one is given."""
    return SimHTTPError(400, code, message)


def directory_not_found(key: str) -> SimHTTPError:
    """The directory's 404 for a group or user id it does not hold (Request_ResourceNotFound,
    not Exchange's ErrorItemNotFound)."""
    return SimHTTPError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


def item_not_found() -> SimHTTPError:
    """404 for an unknown conversation, thread, post or attachment (Exchange store)."""
    return SimHTTPError(404, "ErrorItemNotFound", ITEM_NOT_FOUND)


def access_denied(message: str = ACCESS_DENIED) -> SimHTTPError:
    """403 as Exchange answers it for group mailboxes."""
    return SimHTTPError(403, "ErrorAccessDenied", message)
