from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from groupsync.errors import (
    BadRequestError,
    ForbiddenError,
    GraphError,
    InvalidIdError,
    NotFoundError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
    UnauthorizedError,
)
from groupsync.graph import GraphClient
from groupsync.throttle import Throttle

from .conftest import graph_sample

BASE = "https://graph.example/v1.0"
GROUP = "02bd9fd6-8f93-4758-87c3-1fb73740a315"


class App:
    """Scripted Graph: answers from a list, records every request."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.auth: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.auth.append(request.headers.get("Authorization"))
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer


def error(status: int, code: str = "Whatever", message: str = "", headers=None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "rid-1"}}}
    return httpx.Response(status, json=body, headers=headers or {})


class Tokens:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return f"token-{len(self.calls)}"


def client(app: App, clock, token=None, **kw) -> GraphClient:
    return GraphClient(
        BASE,
        token or Tokens(),
        transport=httpx.MockTransport(app),
        throttle=Throttle(None, clock=clock),
        clock=clock,
        rng=lambda: 1.0,
        **kw,
    )


def page(items, next_link=None):
    body = {"value": items}
    if next_link:
        body["@odata.nextLink"] = next_link
    return httpx.Response(200, json=body)


def test_follows_next_link_verbatim_through_empty_pages(clock):
    link2 = f"{BASE}/groups/{GROUP}/threads?$top=2&$skiptoken=opaque%2Btoken"
    link3 = f"{BASE}/groups/{GROUP}/threads?$top=2&$skiptoken=second"
    app = App(
        page([{"id": "t1"}, {"id": "t2"}], link2),
        page([], link3),
        page([{"id": "t3"}]),
    )
    with client(app, clock) as graph:
        threads = list(graph.list_threads(GROUP, top=2))
    assert [t["id"] for t in threads] == ["t1", "t2", "t3"]
    assert str(app.requests[0].url) == f"{BASE}/groups/{GROUP}/threads?%24top=2"
    assert str(app.requests[1].url) == link2
    assert str(app.requests[2].url) == link3


def test_refuses_a_next_link_to_another_host(clock):
    app = App(page([{"id": "t1"}], "https://evil.example/v1.0/steal"))
    with client(app, clock) as graph, pytest.raises(GraphError, match="another host"):
        list(graph.list_threads(GROUP))
    assert len(app.requests) == 1


def test_ids_are_escaped_as_one_path_segment(clock):
    """Real Exchange ids hold ``+`` and ``/`` (reported by Graph users): one segment each."""
    app = App(httpx.Response(200, json={"id": "a-b_c+d/e=="}))
    with client(app, clock) as graph:
        graph.get_thread(GROUP, "a-b_c+d/e==")
    assert app.requests[0].url.raw_path.endswith(b"/threads/a-b_c%2Bd%2Fe%3D%3D")


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a\\b", "a?b", "a#b", "a%2Fb", "a%2e%2E", "a\x1b[2Jb",
            "a\x85b", "a\x7fb", "a\u202eb"],
)
def test_ids_that_could_leave_their_segment_are_never_sent(clock, bad):
    app = App(httpx.Response(200, json={"id": "x"}))
    with client(app, clock) as graph, pytest.raises(InvalidIdError, match="not a valid id"):
        graph.get_post(GROUP, "t-1", bad)
    with client(app, clock) as graph, pytest.raises(InvalidIdError):
        list(graph.list_threads(bad))
    assert app.requests == []


def test_429_waits_retry_after_then_succeeds(clock):
    app = App(
        error(429, headers={"Retry-After": "7"}),
        error(429, headers={"Retry-After": "3"}),
        httpx.Response(200, json={"id": GROUP}),
    )
    with client(app, clock) as graph:
        assert graph.get_group(GROUP)["id"] == GROUP
        assert graph.stats.throttled == 2
        assert graph.stats.requests == 3
    assert sum(clock.sleeps) == pytest.approx(10.0, abs=0.01)


def test_429_with_an_http_date(clock):
    when = datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=20)
    app = App(
        error(429, headers={"Retry-After": format_datetime(when, usegmt=True)}),
        httpx.Response(200, json={"id": GROUP}),
    )
    with client(app, clock) as graph:
        graph.get_group(GROUP)
    assert sum(clock.sleeps) == pytest.approx(20.0, abs=1.0)


def test_backoff_without_retry_after_is_exponential_and_capped(clock):
    app = App(*[error(503) for _ in range(6)], httpx.Response(200, json={"id": GROUP}))
    with client(app, clock, backoff_base=1.0, backoff_cap=8.0) as graph:
        graph.get_group(GROUP)
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_gives_up_after_max_attempts(clock):
    app = App(*[error(504, code="GatewayTimeout") for _ in range(3)])
    with client(app, clock, max_attempts=3) as graph, pytest.raises(ServiceUnavailableError):
        graph.get_group(GROUP)
    assert len(app.requests) == 3


def test_429_storm_gives_a_clear_error(clock):
    app = App(*[error(429, code="UnknownError") for _ in range(3)])
    graph = client(app, clock, max_attempts=3)
    with graph, pytest.raises(ThrottledError, match="throttling"):
        graph.get_group(GROUP)


def test_network_errors_are_retried_for_reads(clock):
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    app = App(refuse, refuse, httpx.Response(200, json={"id": GROUP}))
    with client(app, clock) as graph:
        assert graph.get_group(GROUP)["id"] == GROUP
        assert graph.stats.retries == 2


@pytest.mark.parametrize("status", [429, 503, 504])
def test_writes_are_never_blindly_retried(clock, status):
    app = App(error(status, headers={"Retry-After": "1"}))
    with client(app, clock) as graph, pytest.raises(GraphError) as info:
        graph.reply_to_thread(GROUP, "thread1", {"body": {"contentType": "text", "content": "hi"}})
    assert len(app.requests) == 1
    assert info.value.status == status


def test_write_network_error_says_whether_it_was_sent(clock):
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    with client(App(refuse), clock) as graph, pytest.raises(TransportError) as info:
        graph.delete_thread(GROUP, "t")
    assert info.value.sent is False
    with client(App(timeout), clock) as graph, pytest.raises(TransportError) as info:
        graph.delete_thread(GROUP, "t")
    assert info.value.sent is True


def test_reply_answers_are_bodiless(clock):
    app = App(httpx.Response(202, headers={"request-id": "abc"}))
    with client(app, clock) as graph:
        result = graph.reply_to_thread(
            GROUP, "t1", {"body": {"contentType": "html", "content": "x"}}
        )
    assert (result.status, result.body, result.request_id) == (202, None, "abc")
    assert json.loads(app.requests[0].content) == {
        "post": {"body": {"contentType": "html", "content": "x"}}
    }


def test_401_refreshes_the_token_once(clock):
    tokens = Tokens()
    app = App(
        error(401, code="InvalidAuthenticationToken"), httpx.Response(200, json={"id": GROUP})
    )
    with client(app, clock, token=tokens) as graph:
        graph.get_group(GROUP)
    assert tokens.calls == [False, True]
    assert app.auth == ["Bearer token-1", "Bearer token-2"]


def test_401_twice_is_an_error_without_the_token(clock):
    tokens = Tokens()
    app = App(error(401), error(401))
    with client(app, clock, token=tokens) as graph, pytest.raises(UnauthorizedError) as info:
        graph.get_group(GROUP)
    assert "token-" not in str(info.value)
    assert "groupsync login" in str(info.value)


@pytest.mark.parametrize(
    "status,code,cls,message",
    [
        (404, "Request_ResourceNotFound", NotFoundError, f"group {GROUP} not found, or you cannot"),
        (403, "ErrorAccessDenied", ForbiddenError, f"access denied to group {GROUP}"),
        (400, "Request_BadRequest", BadRequestError, f"group {GROUP}: the id is malformed"),
    ],
)
def test_errors_map_to_the_tree(clock, status, code, cls, message):
    app = App(error(status, code=code, message="Graph says no"))
    with client(app, clock) as graph, pytest.raises(cls) as info:
        graph.get_group(GROUP)
    assert str(info.value).startswith(message)
    assert info.value.request_id == "rid-1"
    assert info.value.code == code


def test_member_of_keeps_mailbox_groups_only(clock):
    group = "#microsoft.graph.group"
    app = App(
        page(
            [
                {"@odata.type": group, "id": "g1", "displayName": "A", "groupTypes": ["Unified"]},
                {"@odata.type": "#microsoft.graph.directoryRole", "id": "r1"},
                {"@odata.type": group, "id": "s1", "groupTypes": [], "securityEnabled": True},
                {"@odata.type": group, "id": "d1", "groupTypes": [], "mailEnabled": True},
                {"@odata.type": group, "id": "y1", "groupTypes": ["DynamicMembership"]},
            ]
        )
    )
    with client(app, clock) as graph:
        assert [g["id"] for g in graph.list_member_of()] == ["g1"]


def test_list_groups_asks_for_microsoft_365_groups_only(clock):
    app = App(page([{"id": "g1"}]))
    with client(app, clock) as graph:
        list(graph.list_groups())
    assert app.requests[0].url.params["$filter"] == "groupTypes/any(c:c eq 'Unified')"


def test_throttle_is_used_for_every_call(clock):
    app = App(*[httpx.Response(200, json={"id": GROUP}) for _ in range(5)])
    graph = GraphClient(
        BASE,
        Tokens(),
        transport=httpx.MockTransport(app),
        throttle=Throttle((2, 10.0), clock=clock),
        clock=clock,
    )
    with graph:
        for _ in range(5):
            graph.get_group(GROUP)
        assert graph.throttle.stats.waits == 2
    assert sum(clock.sleeps) == pytest.approx(20.0, abs=0.1)


@pytest.mark.parametrize(
    "name,method",
    [
        ("list-threads.json", None),
        ("list-conversations.json", "conversations"),
        ("list-posts.json", "posts"),
        ("list-attachments.json", "attachments"),
    ],
)
def test_documented_payloads_parse(clock, name, method):
    sample = graph_sample(name)
    app = App(httpx.Response(200, json=sample))
    with client(app, clock) as graph:
        items = {
            None: lambda: list(graph.list_threads(GROUP)),
            "conversations": lambda: list(graph.list_conversations(GROUP)),
            "posts": lambda: list(graph.list_posts(GROUP, "t")),
            "attachments": lambda: list(graph.list_attachments(GROUP, "t", "p")),
        }[method]()
    assert items == sample["value"]


def test_documented_thread_and_created_conversation_parse(clock):
    thread = graph_sample("get-thread.json")
    created = graph_sample("create-conversation-response.json")
    app = App(httpx.Response(200, json=thread), httpx.Response(201, json=created))
    with client(app, clock) as graph:
        assert graph.get_thread(GROUP, thread["id"])["topic"] == "New Training Plans"
        result = graph.create_conversation(GROUP, {"topic": "x", "threads": []})
    assert result.status == 201
    assert result.body["threads"][0]["id"].startswith("AAQkAG")
