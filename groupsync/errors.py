"""The one exception tree of groupsync.

    GroupsyncError
    ├── ConfigError            bad settings, flags or config file
    ├── AuthError              no token, msal refused, cache unreadable
    ├── ArchiveError           the local database is missing or unusable
    ├── ValidationError        a write that cannot be queued (exit 2, nothing queued)
    ├── NoMailboxError         a security group or distribution list named for mail (exit 2)
    ├── InvalidIdError         an id no Graph id looks like: refused before any request (exit 2)
    ├── GroupRefError          a GROUP that names no archived group (exit 2)
    │   └── AmbiguousGroupError    ... or several of them; lists the candidates (exit 2)
    ├── OutboxError            an outbox item that cannot do what was asked
    └── GraphError             Microsoft Graph answered with an error
        ├── BadRequestError        400: malformed id, unsupported query option
        ├── UnauthorizedError      401 after one token refresh
        ├── ForbiddenError         403: not a member, app-only, locked thread
        ├── NotFoundError          404: unknown group, thread, post or attachment
        ├── ThrottledError         429 that outlasted the retries
        ├── ServiceUnavailableError 5xx that outlasted the retries
        └── TransportError         no answer at all (DNS, refused, timeout)

Four more live beside the code that raises them, in the same tree:
``models.ModelError`` (a payload not in Graph's shape), ``search.QueryError`` (a malformed
query, exit 2), ``lock.LockedError`` (another writer holds the archive, exit 3),
``events.HookError`` and ``export.ExportError`` (exit 2).

Library code raises these; the CLI turns each into one line and a non-zero exit.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "AmbiguousGroupError",
    "ArchiveError",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "ForbiddenError",
    "GraphError",
    "GroupRefError",
    "GroupsyncError",
    "InvalidIdError",
    "NoMailboxError",
    "NotFoundError",
    "OutboxError",
    "ServiceUnavailableError",
    "ThrottledError",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
]


class GroupsyncError(Exception):
    """Base of every error groupsync raises on purpose.

    The CLI prints one line, with control characters (a line break too) shown escaped;
    ``multiline`` errors build every line of their own from escaped text and keep them.
    """

    exit_code = 1
    multiline = False


class ConfigError(GroupsyncError):
    """Settings that cannot work: wrong types, unknown auth mode, missing client id."""

    exit_code = 2


class AuthError(GroupsyncError):
    """No usable access token could be had."""


class ArchiveError(GroupsyncError):
    """The archive database cannot be used for what was asked."""


class ValidationError(GroupsyncError):
    """A write that would fail at Graph: refused before anything is queued."""

    exit_code = 2


class NoMailboxError(GroupsyncError):
    """A group that exists but has no group mailbox, so there is nothing to archive or post."""

    exit_code = 2


class InvalidIdError(GroupsyncError):
    """An id that cannot be Graph's (a path step, ``/``, a control character): refused
    before it reaches a URL or the archive."""

    exit_code = 2


class GroupRefError(GroupsyncError):
    """A group named by text (id, nickname, address, display name) that no archived group
    answers to, and that is no GUID either."""

    exit_code = 2


class AmbiguousGroupError(GroupRefError):
    """A group name that fits several archived groups; ``candidates`` holds their ids, and
    the message one line each (their names escaped by ``ids.printable``)."""

    multiline = True

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class OutboxError(GroupsyncError):
    """An outbox item that does not exist or cannot make the transition asked for."""


class GraphError(GroupsyncError):
    """An error answer from Microsoft Graph.

    ``status`` is the HTTP status, ``code`` Graph's ``error.code``, ``request_id`` the
    ``request-id`` Microsoft support asks for. ``message`` is written for a person.
    """

    # The message of a subclass whose message does not depend on the answer ({status}
    # filled in); the others say theirs in ``describe``.
    fixed_message: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        graph_message: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.graph_message = graph_message
        self.request_id = request_id
        self.retry_after = retry_after

    @classmethod
    def from_response(
        cls,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        what: str | None = None,
        now: float | None = None,
    ) -> GraphError:
        """Build the right subclass from a Graph error answer.

        Branches on the status, never on ``error.message`` (Graph says it may change).
        ``what`` names the resource for the person reading the message.
        """
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        code, graph_message, request_id = parse_error_body(body)
        request_id = request_id or headers.get("request-id")
        subclass = _STATUS_CLASSES.get(status)
        if subclass is None:
            subclass = ServiceUnavailableError if status >= 500 else GraphError
        if subclass.fixed_message is not None:
            message = subclass.fixed_message.format(status=status)
        else:
            message = subclass.describe(status, code, graph_message, what)
        return subclass(
            message,
            status=status,
            code=code,
            graph_message=graph_message,
            request_id=request_id,
            retry_after=parse_retry_after(headers.get("retry-after"), now),
        )

    @staticmethod
    def describe(status: int, code: str | None, graph_message: str | None, what: str | None) -> str:
        detail = graph_message or code or "no details"
        target = f" ({what})" if what else ""
        return f"Graph answered {status}{target}: {detail}"


class BadRequestError(GraphError):
    @staticmethod
    def describe(status: int, code: str | None, graph_message: str | None, what: str | None) -> str:
        if code in {"ErrorInvalidIdMalformed", "Request_BadRequest"} and what:
            return f"{what}: the id is malformed ({graph_message or code})"
        return GraphError.describe(status, code, graph_message, what)


class UnauthorizedError(GraphError):
    fixed_message = "Graph refused the access token (401); run `groupsync login` again"


class ForbiddenError(GraphError):
    @staticmethod
    def describe(status: int, code: str | None, graph_message: str | None, what: str | None) -> str:
        target = what or "this resource"
        return f"access denied to {target}: {graph_message or code or 'forbidden'}"


class NotFoundError(GraphError):
    @staticmethod
    def describe(status: int, code: str | None, graph_message: str | None, what: str | None) -> str:
        if what and what.startswith("group "):
            return (
                f"{what} not found, or you cannot access it "
                "(for a public group you are not a member of, pass its id with --group)"
            )
        return f"{what or 'resource'} not found"


class ThrottledError(GraphError):
    fixed_message = "Graph kept throttling the requests (429) after every retry; try again later"


class ServiceUnavailableError(GraphError):
    fixed_message = "Graph is unavailable ({status}) after every retry; try again later"


class TransportError(GraphError):
    """No HTTP answer: the network, DNS, TLS or a timeout."""


_STATUS_CLASSES: dict[int, type[GraphError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    429: ThrottledError,
}


def parse_error_body(body: bytes) -> tuple[str | None, str | None, str | None]:
    """``(code, message, request_id)`` from Graph's error JSON; Nones when it is not that."""
    try:
        data: Any = json.loads(body or b"null")
    except ValueError:
        return None, None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    inner = error.get("innerError") or error.get("innererror") or {}
    request_id = inner.get("request-id") if isinstance(inner, dict) else None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    return code or None, message or None, request_id


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
