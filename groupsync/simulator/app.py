"""The simulator as a WSGI application, its options, and upstream-event helpers for tests."""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from . import control
from .data import FILE_ATTACHMENT, JSON, encode_b64
from .faults import (
    ConcurrencyGate,
    FaultInjector,
    MailboxLimits,
    RateLimiter,
    gateway_timeout,
    mailbox_of,
    service_down,
)
from .group_delta import GroupChanges
from .log import RequestLog
from .payloads import read_body
from .query import Pager
from .request import Identity, Request
from .responses import Response, SimHTTPError, bad_request, error_response
from .routes import resolve, template_for
from .shapes import serve_attachment, serve_post, serve_thread
from .state import TenantState

WRITE_METHODS = {"POST", "PATCH", "DELETE"}
PREFIX = "/v1.0"
StartResponse = Callable[..., Any]


@dataclass
class SimulatorOptions:
    """How the simulator pages, throttles and fails. Fields may be changed between requests.

    Parameters: ``page_size`` (default page of every collection), ``max_top`` (``$top`` is
    clamped to it), ``rate`` (``(calls, seconds)``: more in any sliding window get 429),
    ``fail_rate`` (probability of a 503/504 before anything is applied), ``write_504_rate``
    (probability that an applied write is still answered 504), ``latency_ms`` (sleep per
    request), ``max_concurrency`` (requests in flight beyond it get 429; 0 = unlimited),
    ``seed`` (for every random choice), ``persist`` (write changed groups back to the data
    dir), ``thread_order`` (``"newest"`` or ``"random"``), ``empty_page_every`` (insert an
    empty page at every Nth page boundary), ``truncate_posts_at`` (posts lists stop at N
    posts without a nextLink; 0 = off), ``mailbox_rate`` (``(calls, seconds)`` per group
    mailbox, Graph's 10,000/600 scaled down as needed; ``None`` = off) and
    ``concurrency_scope`` (``"app"``: ``max_concurrency`` for all requests together, the
    docs' wording; ``"mailbox"``: for each mailbox, the reading of Q&A answers).
    """

    page_size: int = 10
    max_top: int = 50
    rate: tuple[int, float] | None = None
    fail_rate: float = 0.0
    write_504_rate: float = 0.0
    latency_ms: int = 0
    max_concurrency: int = 4
    seed: int = 0
    persist: bool = False
    thread_order: str = "newest"
    empty_page_every: int = 0
    truncate_posts_at: int = 0
    mailbox_rate: tuple[int, float] | None = None
    concurrency_scope: str = "app"

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.max_top < 1:
            raise ValueError("page_size and max_top must be at least 1")
        if not (0 <= self.fail_rate <= 1 and 0 <= self.write_504_rate <= 1):
            raise ValueError("fail_rate and write_504_rate are probabilities in [0, 1]")
        if self.thread_order not in ("newest", "random"):
            raise ValueError("thread_order must be 'newest' or 'random'")
        for rate in (self.rate, self.mailbox_rate):
            if rate is not None and (len(rate) != 2 or rate[0] < 1 or rate[1] <= 0):
                raise ValueError("rate and mailbox_rate must be (calls >= 1, seconds > 0)")
        if self.concurrency_scope not in ("app", "mailbox"):
            raise ValueError("concurrency_scope must be 'app' or 'mailbox'")
        if min(self.latency_ms, self.max_concurrency, self.empty_page_every,
               self.truncate_posts_at) < 0:
            raise ValueError("latency_ms, max_concurrency, empty_page_every and "
                             "truncate_posts_at cannot be negative")


class Simulator:
    """A WSGI app that answers like Graph v1.0 for group mail.

    Parameters: ``state`` (the loaded tenant), ``options``. Attributes: ``log`` (every
    ``/v1.0`` request), ``state`` (mutable tenant), ``sent_mail`` (forwards, newest last).
    One lock serialises the handlers; latency and throttling happen outside it so that
    concurrent clients really overlap.
    """

    def __init__(self, state: TenantState, options: SimulatorOptions | None = None) -> None:
        self.state = state
        self.options = options or SimulatorOptions()
        self.log = RequestLog()
        self.sent_mail: list[JSON] = []
        self.pager = Pager(self.options.seed)
        self.down = False
        self.group_changes = GroupChanges()
        self._lock = threading.RLock()
        self._rate = RateLimiter()
        self._gate = ConcurrencyGate()
        self._mailboxes = MailboxLimits()
        self._faults = FaultInjector(self.options.seed)

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        client_request_id = environ.get("HTTP_CLIENT_REQUEST_ID")
        path = environ.get("PATH_INFO") or "/"
        try:
            control_path = path.removeprefix(PREFIX)
            if control_path == "/_sim" or control_path.startswith("/_sim/"):
                response = control.handle(self, environ, control_path)
            elif path == PREFIX or path.startswith(PREFIX + "/"):
                response = self._graph(environ, request_id, client_request_id)
            else:
                version = path.strip("/").split("/")[0]
                raise bad_request(f"Invalid version: {version}")
        except SimHTTPError as exc:
            response = error_response(exc, request_id, client_request_id)
        headers = [*response.headers, ("request-id", request_id),
                   ("Content-Length", str(len(response.body)))]
        if client_request_id:
            headers.append(("client-request-id", client_request_id))
        start_response(response.status_line, headers)
        return [response.body]

    def _graph(self, environ: dict[str, Any], request_id: str, client_id: str | None) -> Response:
        arrived = time.time()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        segments = _segments(environ)
        try:
            response = self._handle(environ, method, segments)
        except SimHTTPError as exc:
            response = error_response(exc, request_id, client_id)
        except Exception:  # a simulator bug still answers like a server, and says why
            if environ.get("wsgi.errors") is not None:
                environ["wsgi.errors"].write(traceback.format_exc())
            error = SimHTTPError(500, "generalException", "An internal simulator error occurred.")
            response = error_response(error, request_id, client_id)
        self.log.record(arrived, method, template_for(segments), response.status)
        return response

    def _handle(self, environ: dict[str, Any], method: str, segments: list[str]) -> Response:
        if self.down:
            raise service_down()
        identity = self._authenticate(environ)
        options = self.options
        if options.rate is not None:
            self._rate.check(time.monotonic(), int(options.rate[0]), float(options.rate[1]))
        gate = self._concurrency_gate(segments)
        gate.enter(options.max_concurrency)
        try:
            if options.latency_ms:
                time.sleep(options.latency_ms / 1000)
            self._faults.before(options.fail_rate)
            _, handler, params = resolve(method, segments)
            # The body is read before taking the lock, so a slow sender stalls only itself.
            body = read_body(environ) if method in WRITE_METHODS else b""
            req = Request(environ, method, segments, identity, _base_url(environ),
                          str(environ.get("QUERY_STRING", "")), body)
            with self._lock:
                response = handler(self, req, params)
            if (method in WRITE_METHODS and response.status < 300
                    and self._faults.after_write(options.write_504_rate)):
                raise gateway_timeout()
            return response
        finally:
            gate.leave()

    def _concurrency_gate(self, segments: list[str]) -> ConcurrencyGate:
        """Graph's per-mailbox window, then the gate the concurrency reading picks: the
        app's, or the mailbox's (directory calls keep the app's under both readings)."""
        mailbox = mailbox_of(segments)
        rate = self.options.mailbox_rate
        if mailbox is not None and rate is not None:
            self._mailboxes.check_window(mailbox, time.monotonic(), int(rate[0]), float(rate[1]))
        if mailbox is not None and self.options.concurrency_scope == "mailbox":
            return self._mailboxes.gate(mailbox)
        return self._gate

    def _authenticate(self, environ: dict[str, Any]) -> Identity:
        scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SimHTTPError(
                401, "InvalidAuthenticationToken", "Access token is empty.",
                [("WWW-Authenticate", 'Bearer realm="", authorization_uri='
                  '"https://login.microsoftonline.com/common/oauth2/authorize"')],
            )
        return Identity(None if token.startswith("app") else self.state.me)

    def wrote(self, group_id: str) -> None:
        """Called by handlers after a change to a group, to persist it if asked to."""
        if self.options.persist:
            self.state.save_group(group_id)

    # -- upstream events (Graph has no API for these; tests of the sync engine need them) ---

    def set_down(self, down: bool) -> None:
        """While down, every ``/v1.0`` request gets 503 (``/_sim/`` keeps working)."""
        self.down = bool(down)

    def add_post(self, group_id: str, thread_id: str, post: JSON) -> JSON:
        """Deliver a post into a thread as if sent by mail; returns it as Graph serves it."""
        with self._lock:
            conv, thread = self._thread(group_id, thread_id)
            sender = post.get("sender") or self.state.user_recipient(self.state.me)
            stored = self.state.append_post(group_id, conv, thread, dict(post), sender)
            self.wrote(group_id)
            return serve_post(stored)

    def edit_post(
        self, group_id: str, thread_id: str, post_id: str, *, content: str | None = None,
        categories: list[str] | None = None,
    ) -> JSON:
        """Change a post upstream: new changeKey/etag and lastModifiedDateTime, while the
        thread's lastDeliveredDateTime stays put."""
        with self._lock:
            conv, thread, post = self._post(group_id, thread_id, post_id)
            self.state.edit_post(conv, thread, post, content=content, categories=categories)
            self.wrote(group_id)
            return serve_post(post)

    def new_thread(
        self, group_id: str, topic: str, post: JSON, conversation_id: str | None = None
    ) -> JSON:
        """Start a thread (in a new conversation unless one is given).

        Returns the thread as Graph serves it plus ``conversationId`` and ``posts``.
        """
        with self._lock:
            self._group(group_id)
            conv = None
            if conversation_id is not None:
                conv = self.state.conversation(group_id, conversation_id)
                if conv is None:
                    raise KeyError(f"no conversation {conversation_id} in group {group_id}")
            sender = post.get("sender") or self.state.user_recipient(self.state.me)
            conv, thread = self.state.create_thread(group_id, topic, [dict(post)], sender, conv)
            self.wrote(group_id)
            return {**serve_thread(thread), "conversationId": conv["id"],
                    "posts": [serve_post(p) for p in thread["posts"]]}

    def delete_thread(self, group_id: str, thread_id: str) -> None:
        """Remove a thread upstream (and its conversation if it was the last thread)."""
        with self._lock:
            conv, thread = self._thread(group_id, thread_id)
            self.state.delete_thread(group_id, conv, thread)
            self.wrote(group_id)

    def add_attachment(
        self, group_id: str, thread_id: str, post_id: str, name: str, content_type: str,
        data: bytes, is_inline: bool = False, content_id: str | None = None,
    ) -> JSON:
        """Attach a file to an existing post, which gives the post a new changeKey."""
        with self._lock:
            conv, thread, post = self._post(group_id, thread_id, post_id)
            att = {"@odata.type": FILE_ATTACHMENT, "name": name, "contentType": content_type,
                   "contentBytes": encode_b64(data), "size": len(data), "isInline": is_inline,
                   "contentId": content_id, "contentLocation": None}
            stored = self.state.add_attachment(conv, thread, post, att)
            self.wrote(group_id)
            return serve_attachment(stored)

    def _group(self, group_id: str) -> None:
        if self.state.group(group_id) is None:
            raise KeyError(f"no group {group_id}")

    def _thread(self, group_id: str, thread_id: str) -> tuple[JSON, JSON]:
        self._group(group_id)
        found = self.state.thread(group_id, thread_id)
        if found is None:
            raise KeyError(f"no thread {thread_id} in group {group_id}")
        return found

    def _post(self, group_id: str, thread_id: str, post_id: str) -> tuple[JSON, JSON, JSON]:
        self._thread(group_id, thread_id)
        found = self.state.post(group_id, thread_id, post_id)
        if found is None:
            raise KeyError(f"no post {post_id} in thread {thread_id}")
        return found


def make_app(data_dir: str | Path, options: SimulatorOptions | None = None) -> Simulator:
    """Load a tenant in the sample_data format and wrap it as a Graph v1.0 WSGI app."""
    options = options or SimulatorOptions()
    return Simulator(TenantState.load(data_dir, seed=options.seed), options)


def _segments(environ: dict[str, Any]) -> list[str]:
    """Path segments after ``/v1.0``, split before percent-decoding when the raw URI is known
    (so an id containing an encoded ``/`` stays one segment)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    path = None
    if raw:
        raw_path = urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
        if raw_path == PREFIX or raw_path.startswith(PREFIX + "/"):
            path = raw_path
    if path is None:
        path = str(environ.get("PATH_INFO", ""))
        segments = path[len(PREFIX):].split("/")[1:]
    else:
        segments = [unquote(s) for s in path[len(PREFIX):].split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()
    return segments


def _base_url(environ: dict[str, Any]) -> str:
    """``scheme://host[:port]/v1.0`` as the client addressed us, for absolute nextLinks."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = f"{host}:{port}"
    return f"{scheme}://{host}{environ.get('SCRIPT_NAME', '')}{PREFIX}"
