"""The Microsoft Graph client: one throttle, honest retries, Graph errors as exceptions.

Only the base URL and the token provider differ between production
(``https://graph.microsoft.com/v1.0`` with msal tokens) and the simulator.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import httpx

from .errors import (
    GraphError,
    ThrottledError,
    TransportError,
    UnauthorizedError,
)
from .ids import check_id
from .models import (
    Attachment,
    Conversation,
    ConversationThread,
    Group,
    Post,
    has_mailbox,
    parse_attachment,
    parse_conversation,
    parse_group,
    parse_post,
    parse_thread,
)
from .throttle import SYSTEM_CLOCK, Clock, Throttle
from .version import __version__

__all__ = ["GraphClient", "GraphStats", "TokenProvider", "WriteResult"]

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
UNIFIED_FILTER = "groupTypes/any(c:c eq 'Unified')"


class TokenProvider(Protocol):
    """Returns a bearer token; ``force_refresh`` after Graph refused the last one."""

    def __call__(self, force_refresh: bool = False) -> str: ...


@dataclass
class GraphStats:
    """What a client has done, for sync runs and progress bars."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    retry_wait: float = 0.0
    by_mailbox: dict[str, int] = field(default_factory=dict)


@dataclass
class WriteResult:
    """A write's answer. Reply and forward answer with no body, so ``body`` may be ``None``."""

    status: int
    request_id: str | None
    body: dict[str, Any] | None = field(default=None)


class BearerAuth(httpx.Auth):
    """Attach the token; on a 401 get a fresh one and resend, once."""

    def __init__(self, token: TokenProvider) -> None:
        self._token = token

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token()}"
        response = yield request
        if response.status_code == 401:
            response.read()
            request.headers["Authorization"] = f"Bearer {self._token(force_refresh=True)}"
            yield request


def _segment(value: str) -> str:
    """An id as one path segment (``+`` and ``=`` escaped). An id that could step out of
    it (``/``, ``..``, ``?``, a control character) is refused, never sent."""
    return quote(check_id(value), safe="")


class GraphClient:
    """A Graph v1.0 client for group mail.

    Parameters: ``base_url`` (e.g. ``https://graph.microsoft.com/v1.0``), ``token`` (a
    ``TokenProvider``), ``transport`` (an httpx transport; tests pass the simulator's
    WSGI app or a ``MockTransport``), ``throttle`` (shared sliding window; ``None`` = off),
    ``max_concurrency`` (requests in flight at once for the app; Outlook allows 4),
    ``mailbox_concurrency`` (in flight at once per group mailbox; 0 = no cap of its own),
    ``max_attempts``
    per read (``max_network_attempts`` when no answer comes at all, so a dead network
    fails in seconds, not minutes), ``backoff_cap`` seconds, ``clock`` and ``rng`` for
    tests, and ``log``, a callable that receives one dict per retry or refusal (never a
    token).
    """

    def __init__(
        self,
        base_url: str,
        token: TokenProvider,
        *,
        transport: httpx.BaseTransport | None = None,
        throttle: Throttle | None = None,
        max_concurrency: int = 4,
        mailbox_concurrency: int = 0,
        timeout: float = 60.0,
        max_attempts: int = 10,
        max_network_attempts: int = 3,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        rng: Callable[[], float] = random.random,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self.throttle = throttle if throttle is not None else Throttle(None, clock=clock)
        self.stats = GraphStats()
        self.max_attempts = max_attempts
        self.max_network_attempts = max_network_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self.rng = rng
        self.log = log
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self.mailbox_concurrency = mailbox_concurrency
        self._mailbox_slots: dict[str, threading.BoundedSemaphore] = {}
        self.in_flight = 0  # requests sent and not yet answered, for progress and benchmarks
        self._stats_lock = threading.Lock()
        self._http = httpx.Client(
            transport=transport,
            auth=BearerAuth(token),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={"User-Agent": f"groupsync/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_concurrency),
        )

    def close(self) -> None:
        """Close the HTTP connections and the throttle's state file (the client owns both)."""
        self._http.close()
        self.throttle.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the core -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        what: str | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one call through the throttle; retry it only when that is safe.

        Reads (``GET``, or ``idempotent=True``) are retried on 429 (after ``Retry-After``),
        on 500/502/503/504 and on network errors, with capped, jittered exponential backoff.
        Writes are sent once: a 429 or 504 may come back although Graph applied the write,
        so deciding to resend is the outbox's job, after it has looked.
        """
        if idempotent is None:
            idempotent = method.upper() == "GET"
        full = self._url(url)
        mailbox = mailbox_of(full, self.base_url)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, full, params=params, json=json, mailbox=mailbox)
            except httpx.TransportError as ex:
                sent = not isinstance(ex, httpx.ConnectError | httpx.ConnectTimeout)
                if idempotent and attempt < min(self.max_attempts, self.max_network_attempts):
                    self._retry_wait(attempt, None, reason=type(ex).__name__, what=what)
                    continue
                error: GraphError = TransportError(
                    f"no answer from Graph at {self._origin} ({what or method + ' ' + url}): "
                    f"{type(ex).__name__}: {ex}".rstrip(": ")
                )
                error.sent = sent  # type: ignore[attr-defined]
                raise error from None
            status = response.status_code
            if status < 400:
                return response
            if status == 429:
                self._count("throttled")
            elif status >= 500:
                self._count("server_errors")
            error = GraphError.from_response(
                status, response.content, dict(response.headers), what=what, now=self.clock.time()
            )
            if status == 429 and error.retry_after is not None:
                self.throttle.block(error.retry_after, mailbox)
            if idempotent and status in RETRYABLE_STATUS and attempt < self.max_attempts:
                self._retry_wait(
                    attempt,
                    error.retry_after,
                    reason=str(status),
                    what=what,
                    request_id=error.request_id,
                    shared=status == 429 and error.retry_after is not None,
                )
                continue
            if isinstance(error, UnauthorizedError | ThrottledError) or status >= 500:
                self._emit(
                    event="gave-up",
                    status=status,
                    what=what,
                    request_id=error.request_id,
                    code=error.code,
                )
            raise error

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        json: Any,
        mailbox: str | None,
    ) -> httpx.Response:
        # The mailbox's slot and window first, the app's slot last: a call waiting for a
        # busy or throttled mailbox must not hold a slot another mailbox could use.
        with self._mailbox_slot(mailbox), self.throttle.acquire(mailbox), self._slots:
            with self._stats_lock:
                self.stats.requests += 1
                if mailbox is not None:
                    self.stats.by_mailbox[mailbox] = self.stats.by_mailbox.get(mailbox, 0) + 1
                self.in_flight += 1
            try:
                response = self._http.request(method, url, params=params, json=json)
                response.read()
            finally:
                with self._stats_lock:
                    self.in_flight -= 1
            return response

    def _mailbox_slot(self, mailbox: str | None) -> threading.BoundedSemaphore | nullcontext[None]:
        if not self.mailbox_concurrency or mailbox is None:
            return nullcontext()
        with self._stats_lock:
            slot = self._mailbox_slots.get(mailbox)
            if slot is None:
                slot = self._mailbox_slots[mailbox] = threading.BoundedSemaphore(
                    self.mailbox_concurrency
                )
            return slot

    def _retry_wait(
        self,
        attempt: int,
        retry_after: float | None,
        *,
        reason: str,
        what: str | None,
        request_id: str | None = None,
        shared: bool = False,
    ) -> None:
        if retry_after is not None:
            wait = retry_after
        else:
            ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
            wait = ceiling * (0.5 + self.rng() / 2)
        self._count("retries")
        with self._stats_lock:
            self.stats.retry_wait += wait
        self._emit(
            event="retry",
            reason=reason,
            wait=round(wait, 3),
            attempt=attempt,
            what=what,
            request_id=request_id,
        )
        if not shared:
            # A 429's Retry-After went into the shared throttle: acquire() waits it out.
            self.clock.sleep(wait)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _emit(self, **event: Any) -> None:
        if self.log is not None:
            self.log({k: v for k, v in event.items() if v is not None})

    def _url(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            # A nextLink is followed verbatim, but the bearer token only goes back to Graph.
            if _origin(url) != self._origin:
                raise GraphError(f"refusing to follow a link to another host: {_origin(url)}")
            return url
        return self.base_url + "/" + url.lstrip("/")

    def get_json(
        self, url: str, params: Mapping[str, str] | None = None, *, what: str | None = None
    ) -> dict[str, Any]:
        response = self.request("GET", url, params=params, what=what)
        try:
            data = response.json()
        except ValueError:
            raise GraphError(f"Graph sent something that is not JSON ({what or url})") from None
        if not isinstance(data, dict):
            raise GraphError(f"Graph sent an unexpected answer ({what or url})")
        return data

    def fetch_pages(
        self, url: str, params: Mapping[str, str] | None = None, *, what: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each page of a collection, following ``@odata.nextLink`` verbatim until absent.

        Empty pages with a nextLink are normal in Graph; they are followed too.
        """
        page = self.get_json(url, params, what=what)
        while True:
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            page = self.get_json(next_link, what=what)

    def paginate(
        self, url: str, params: Mapping[str, str] | None = None, *, what: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a collection across pages."""
        for page in self.fetch_pages(url, params, what=what):
            value = page.get("value")
            if not isinstance(value, list):
                raise GraphError(f"Graph sent a page without a value list ({what or url})")
            yield from value

    def write(
        self, method: str, url: str, body: Any = None, *, what: str | None = None
    ) -> WriteResult:
        """Send one write, once. Graph's empty 202/200/204 answers give ``body=None``."""
        response = self.request(method, url, json=body, what=what, idempotent=False)
        data = None
        if response.content.strip():
            try:
                data = response.json()
            except ValueError:
                data = None
        return WriteResult(response.status_code, response.headers.get("request-id"), data)

    # -- groups ---------------------------------------------------------------------------

    def get_me(self) -> dict[str, Any]:
        return self.get_json("me", what="the signed-in user")

    def list_member_of(self, user_id: str | None = None) -> Iterator[Group]:
        """The identity's groups that have a mailbox (``/me/memberOf``).

        memberOf also lists directory roles, security groups and distribution lists; only
        Microsoft 365 groups have conversations, so the others are left out here rather than
        asked for mail and answered 404.
        """
        path = f"users/{_segment(user_id)}/memberOf" if user_id else "me/memberOf"
        for item in self.paginate(path, what="group memberships"):
            if item.get("@odata.type") == "#microsoft.graph.group" and has_mailbox(item):
                yield parse_group(item)

    def list_groups(self, top: int | None = None) -> Iterator[Group]:
        """Every Microsoft 365 (mailbox-bearing) group in the organisation."""
        params = {"$filter": UNIFIED_FILTER}
        if top:
            params["$top"] = str(top)
        for item in self.paginate("groups", params, what="groups"):
            if has_mailbox(item):
                yield parse_group(item)

    def group_delta_pages(
        self, delta_link: str | None = None, *, select: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The pages of one round of ``GET /groups/delta``, from the start or from a stored
        ``@odata.deltaLink``; the last page carries the next round's ``@odata.deltaLink``.

        Graph's delta accepts no ``groupTypes`` filter (only ``id eq``), so every kind of
        group comes back: the caller keeps the mailbox ones. Query options go in the first
        request only; Graph encodes them into the links it returns.
        """
        if delta_link is not None:
            return self.fetch_pages(delta_link, what="group changes")
        params = {"$select": ",".join(select)} if select else None
        return self.fetch_pages("groups/delta", params, what="group changes")

    def get_group(self, group_id: str) -> Group:
        return parse_group(self.get_json(f"groups/{_segment(group_id)}", what=f"group {group_id}"))

    # -- conversations, threads, posts, attachments -----------------------------------------

    @staticmethod
    def _params(
        select: list[str] | None = None, top: int | None = None, expand: str | None = None
    ) -> dict[str, str]:
        params: dict[str, str] = {}
        if select:
            params["$select"] = ",".join(select)
        if top:
            params["$top"] = str(top)
        if expand:
            params["$expand"] = expand
        return params

    def list_conversations(
        self, group_id: str, *, select: list[str] | None = None, top: int | None = None
    ) -> Iterator[Conversation]:
        path = f"groups/{_segment(group_id)}/conversations"
        for item in self.paginate(path, self._params(select, top), what=f"group {group_id}"):
            yield parse_conversation(item)

    def get_conversation(self, group_id: str, conversation_id: str) -> Conversation:
        path = f"groups/{_segment(group_id)}/conversations/{_segment(conversation_id)}"
        return parse_conversation(self.get_json(path, what=f"conversation {conversation_id}"))

    def thread_pages(
        self,
        group_id: str,
        *,
        conversation_id: str | None = None,
        select: list[str] | None = None,
        top: int | None = None,
    ) -> Iterator[list[ConversationThread]]:
        """Thread pages, so a sync can stop early without fetching the next page."""
        path = f"groups/{_segment(group_id)}"
        if conversation_id:
            path += f"/conversations/{_segment(conversation_id)}"
        what = f"group {group_id}" if not conversation_id else f"conversation {conversation_id}"
        for page in self.fetch_pages(path + "/threads", self._params(select, top), what=what):
            yield [parse_thread(t) for t in page.get("value") or []]

    def list_threads(
        self,
        group_id: str,
        *,
        conversation_id: str | None = None,
        select: list[str] | None = None,
        top: int | None = None,
    ) -> Iterator[ConversationThread]:
        for page in self.thread_pages(
            group_id, conversation_id=conversation_id, select=select, top=top
        ):
            yield from page

    def get_thread(
        self, group_id: str, thread_id: str, *, select: list[str] | None = None
    ) -> ConversationThread:
        path = f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}"
        return parse_thread(self.get_json(path, self._params(select), what=f"thread {thread_id}"))

    def list_posts(
        self,
        group_id: str,
        thread_id: str,
        *,
        select: list[str] | None = None,
        expand: str | None = None,
        top: int | None = None,
    ) -> Iterator[Post]:
        path = f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}/posts"
        params = self._params(select, top, expand)
        for item in self.paginate(path, params, what=f"thread {thread_id}"):
            yield parse_post(item)

    def get_post(
        self,
        group_id: str,
        thread_id: str,
        post_id: str,
        *,
        select: list[str] | None = None,
        expand: str | None = None,
    ) -> Post:
        path = (
            f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}/posts/{_segment(post_id)}"
        )
        data = self.get_json(path, self._params(select, None, expand), what=f"post {post_id}")
        return parse_post(data)

    def list_attachments(self, group_id: str, thread_id: str, post_id: str) -> Iterator[Attachment]:
        path = (
            f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}"
            f"/posts/{_segment(post_id)}/attachments"
        )
        for item in self.paginate(path, what=f"attachments of post {post_id}"):
            yield parse_attachment(item)

    # -- writes (sent once; the outbox decides about resending) ----------------------------

    def create_conversation(self, group_id: str, conversation: dict[str, Any]) -> WriteResult:
        return self.write(
            "POST",
            f"groups/{_segment(group_id)}/conversations",
            conversation,
            what=f"group {group_id}",
        )

    def create_thread(
        self, group_id: str, thread: dict[str, Any], *, conversation_id: str | None = None
    ) -> WriteResult:
        path = f"groups/{_segment(group_id)}"
        if conversation_id:
            path += f"/conversations/{_segment(conversation_id)}"
        return self.write("POST", path + "/threads", thread, what=f"group {group_id}")

    def reply_to_thread(self, group_id: str, thread_id: str, post: dict[str, Any]) -> WriteResult:
        path = f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}/reply"
        return self.write("POST", path, {"post": post}, what=f"thread {thread_id}")

    def reply_to_post(
        self, group_id: str, thread_id: str, post_id: str, post: dict[str, Any]
    ) -> WriteResult:
        path = (
            f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}"
            f"/posts/{_segment(post_id)}/reply"
        )
        return self.write("POST", path, {"post": post}, what=f"post {post_id}")

    def forward_post(
        self,
        group_id: str,
        thread_id: str,
        post_id: str,
        to: list[dict[str, Any]],
        comment: str | None = None,
    ) -> WriteResult:
        path = (
            f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}"
            f"/posts/{_segment(post_id)}/forward"
        )
        body: dict[str, Any] = {"toRecipients": to}
        if comment is not None:
            body["comment"] = comment
        return self.write("POST", path, body, what=f"post {post_id}")

    def delete_thread(self, group_id: str, thread_id: str) -> WriteResult:
        path = f"groups/{_segment(group_id)}/threads/{_segment(thread_id)}"
        return self.write("DELETE", path, what=f"thread {thread_id}")


def mailbox_of(url: str, base_url: str) -> str | None:
    """The group mailbox a call counts against (``/groups/{id}/<anything>``), or ``None`` for
    directory calls (``/groups``, ``/groups/{id}``, ``/me/memberOf``), which Outlook's
    per-mailbox limits do not cover."""
    path = urlsplit(url).path
    base = urlsplit(base_url).path.rstrip("/")
    if path.startswith(base + "/"):
        path = path[len(base) + 1 :]
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0].lower() == "groups" and parts[1]:
        return unquote(parts[1])
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
