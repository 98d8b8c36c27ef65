"""The Graph simulator answers like Graph v1.0 does for group mail (../shared/graph-api.md)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from groupsync.simulator import (
    DataError,
    Simulator,
    SimulatorOptions,
    make_app,
    serve_in_thread,
)

from .conftest import graph_sample

ROOT = Path(__file__).resolve().parent.parent
BASE = "http://graph.test/v1.0"

ME = "0495221e-151b-400f-82a1-25367fbf22fa"
OTHER = "0bfd4182-2a71-4b14-97dc-baaf19a30000"
GROUP = "11111111-1111-4111-8111-111111111111"
PRIVATE = "22222222-2222-4222-8222-222222222222"
PUBLIC = "33333333-3333-4333-8333-333333333333"
ABSENT = "44444444-4444-4444-8444-444444444444"
ROLE = "55555555-5555-4555-8555-555555555555"
THREADS = 25
BIG_POSTS = 23
PNG = b"\x89PNG\r\n\x1a\nfake image"


def xid(*parts: Any) -> str:
    """A deterministic Exchange-style (urlsafe base64) id."""
    raw = ":".join(str(p) for p in ("groupsync-test", *parts)).encode()
    return base64.urlsafe_b64encode(raw).decode()


def rec(name: str, address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name, "address": address}}


LEA = rec("Léa Fontaine", "lea@contoso.test")
JONAS = rec("Jonas Müller", "jonas@contoso.test")


def stamp(day: int, minute: int = 0) -> str:
    return f"2024-01-{day + 1:02d}T10:{minute:02d}:00Z"


def make_post(t: int, p: int, **extra: Any) -> dict[str, Any]:
    when = stamp(t, p)
    return {
        "id": xid("post", t, p),
        "changeKey": f"CQAAABYAAAB{t:03d}{p:03d}",
        "createdDateTime": when,
        "lastModifiedDateTime": when,
        "receivedDateTime": when,
        "categories": [],
        "body": {"contentType": "html", "content": f"<p>Post <b>{p}</b> of thread {t}</p>"},
        "from": rec("Team", "team@contoso.test"),
        "sender": LEA if p % 2 == 0 else JONAS,
        **extra,
    }


def big_thread_posts() -> list[dict[str, Any]]:
    posts = [make_post(0, p) for p in range(BIG_POSTS)]
    posts[1]["attachments"] = [
        {"@odata.type": "#microsoft.graph.fileAttachment", "id": xid("att", 1),
         "name": "notes.txt", "contentType": "text/plain", "isInline": False,
         "lastModifiedDateTime": stamp(0, 1),
         "contentBytes": base64.b64encode(b"hello notes").decode()},
        {"@odata.type": "#microsoft.graph.fileAttachment", "id": xid("att", 2),
         "name": "logo.png", "contentType": "image/png", "isInline": True,
         "contentId": "logo@1", "@sim.contentFile": "files/logo.png"},
        {"@odata.type": "#microsoft.graph.itemAttachment", "id": xid("att", 3),
         "name": "Fwd", "item": {"@odata.type": "#microsoft.graph.message", "subject": "Fwd",
                                 "body": {"contentType": "text", "content": "inner"}}},
        {"@odata.type": "#microsoft.graph.referenceAttachment", "id": xid("att", 4),
         "name": "plan.docx"},
    ]
    posts[2]["extensions"] = [{"@odata.type": "microsoft.graph.openTypeExtension",
                               "extensionName": "Com.Contoso.Ref", "ticket": "T-1"}]
    posts[2]["@sim.inReplyTo"] = posts[1]["id"]
    return posts


def write_tenant(root: Path) -> Path:
    """A small tenant in the sample_data format (see sample_data/README.md)."""
    (root / "groups").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "files" / "logo.png").write_bytes(PNG)
    users = [
        {"id": ME, "displayName": "Léa Fontaine", "mail": "lea@contoso.test",
         "userPrincipalName": "lea@contoso.test"},
        {"id": OTHER, "displayName": "Jonas Müller", "mail": "jonas@contoso.test",
         "userPrincipalName": "jonas@contoso.test"},
    ]
    roles = [{"@odata.type": "#microsoft.graph.directoryRole", "id": ROLE,
              "displayName": "Global Reader"}]
    (root / "tenant.json").write_text(json.dumps(
        {"tenantId": ABSENT, "me": ME, "users": users, "directoryRoles": roles}))

    def group(gid: str, name: str, visibility: str, members: list[str], unified: bool = True):
        return {"id": gid, "displayName": name, "description": "", "mail": f"{name}@contoso.test",
                "mailNickname": name, "groupTypes": ["Unified"] if unified else [],
                "visibility": visibility, "mailEnabled": unified, "securityEnabled": not unified,
                "createdDateTime": "2023-01-01T00:00:00Z", "@sim.members": members}

    groups = [group(GROUP, "team", "Private", [ME, OTHER]),
              group(PRIVATE, "secret", "Private", [OTHER]),
              group(PUBLIC, "news", "Public", [OTHER]),
              group(ROLE.replace("5", "6"), "sec", "Private", [ME], unified=False)]
    (root / "groups.json").write_text(json.dumps({"value": groups}))
    conversations = []
    for t in range(1, THREADS):
        thread = {"id": xid("thread", t), "topic": f"Topic {t}", "isLocked": t == 2,
                  "toRecipients": [rec("Team", "team@contoso.test")], "ccRecipients": [],
                  "posts": [make_post(t, 0), make_post(t, 1)]}
        conversations.append({"id": xid("conv", t), "topic": f"Topic {t}", "threads": [thread]})
    conversations[0]["threads"].insert(
        0, {"id": xid("thread", 0), "topic": "Big", "posts": big_thread_posts()})
    (root / "groups" / f"{GROUP}.json").write_text(json.dumps({"conversations": conversations}))
    for gid in (PRIVATE, PUBLIC):
        single = {"id": xid("conv", gid), "topic": "Hello", "threads": [
            {"id": xid("thread", gid), "topic": "Hello", "posts": [make_post(0, 0)]}]}
        (root / "groups" / f"{gid}.json").write_text(json.dumps({"conversations": [single]}))
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_tenant(tmp_path / "tenant")


def client_for(app: Simulator, token: str = "t") -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE,
                        headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def sim(data_dir: Path) -> Simulator:
    return make_app(data_dir, SimulatorOptions(max_concurrency=0))


@pytest.fixture
def client(sim: Simulator):
    with client_for(sim) as c:
        yield c


@pytest.fixture
def app_client(sim: Simulator):
    with client_for(sim, token="app-only-token") as c:
        yield c


T0 = f"/groups/{GROUP}/threads/{xid('thread', 0)}"
T1 = f"/groups/{GROUP}/threads/{xid('thread', 1)}"
P1 = f"{T0}/posts/{xid('post', 0, 1)}"


def all_pages(client: httpx.Client, url: str, **params: Any) -> list[dict[str, Any]]:
    pages = [client.get(url, params=params).json()]
    while "@odata.nextLink" in pages[-1]:
        pages.append(client.get(pages[-1]["@odata.nextLink"]).json())
    return pages


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    return error


# -- loading and derived fields --------------------------------------------------------------


def test_load_derives_summary_fields(client):
    thread = client.get(T0).json()
    assert thread["lastDeliveredDateTime"] == stamp(0, BIG_POSTS - 1)
    assert thread["preview"] == f"Post {BIG_POSTS - 1} of thread 0"
    assert thread["uniqueSenders"] == ["Léa Fontaine", "Jonas Müller"]
    assert thread["hasAttachments"] is True
    post = client.get(P1).json()
    assert "conversationThreadId" not in post and "conversationId" not in post
    post = client.get(P1, params={"$select": "conversationThreadId,conversationId"}).json()
    assert post["conversationThreadId"] == xid("thread", 0)
    assert post["conversationId"] == xid("conv", 1)
    post = client.get(P1).json()
    assert post["@odata.etag"] == f'W/"{post["changeKey"]}"'
    assert post["hasAttachments"] is True
    logo = client.get(f"{P1}/attachments/{xid('att', 2)}").json()
    assert base64.b64decode(logo["contentBytes"]) == PNG and logo["size"] == len(PNG)


def test_bad_data_dir_is_a_data_error(tmp_path):
    (tmp_path / "tenant.json").write_text("{not json")
    with pytest.raises(DataError, match="tenant.json"):
        make_app(tmp_path)


def test_real_sample_data_loads():
    sample = ROOT / "sample_data"
    if not (sample / "groups.json").exists():
        pytest.skip("sample_data/ is not written yet")
    app = make_app(sample)
    with client_for(app) as c:
        groups = c.get("/me/memberOf/microsoft.graph.group").json()["value"]
        assert groups
        threads = c.get(f"/groups/{groups[0]['id']}/threads").json()["value"]
        posts = c.get(f"/groups/{groups[0]['id']}/threads/{threads[0]['id']}/posts")
    assert posts.status_code == 200 and posts.json()["value"]


# -- paging ----------------------------------------------------------------------------------


def test_paging_threads_follows_absolute_next_links(client):
    pages = all_pages(client, f"/groups/{GROUP}/threads", **{"$select": "topic,isLocked"})
    assert [len(p["value"]) for p in pages] == [10, 10, 5]
    for page in pages[:-1]:
        link = urlsplit(page["@odata.nextLink"])
        assert (link.scheme, link.netloc) == ("http", "graph.test")
        assert link.path == f"/v1.0/groups/{GROUP}/threads"
        query = parse_qs(link.query)
        assert query["$select"] == ["topic,isLocked"] and query["$skiptoken"]
    ids = [t["id"] for p in pages for t in p["value"]]
    assert len(set(ids)) == THREADS
    assert ids[0] == xid("thread", THREADS - 1)
    dates = [t["lastDeliveredDateTime"] for p in all_pages(client, f"/groups/{GROUP}/threads")
             for t in p["value"]]
    assert dates == sorted(dates, reverse=True)


def test_top_is_honoured_and_clamped(data_dir):
    app = make_app(data_dir, SimulatorOptions(max_top=7))
    with client_for(app) as c:
        pages = all_pages(c, f"/groups/{GROUP}/threads", **{"$top": "100"})
        assert [len(p["value"]) for p in pages] == [7, 7, 7, 4]
        assert "%24top=100" in pages[0]["@odata.nextLink"] or "$top=100" in pages[0][
            "@odata.nextLink"]
        assert len(c.get(f"{T0}/posts", params={"$top": 3}).json()["value"]) == 3
        assert_graph_error(c.get(f"{T0}/posts", params={"$top": "x"}), 400, "BadRequest")


def test_empty_pages_with_next_link_are_inserted(data_dir):
    app = make_app(data_dir, SimulatorOptions(empty_page_every=2))
    with client_for(app) as c:
        pages = all_pages(c, f"/groups/{GROUP}/threads")
    assert [len(p["value"]) for p in pages] == [10, 10, 0, 5]
    assert "@odata.nextLink" in pages[2]
    assert len({t["id"] for p in pages for t in p["value"]}) == THREADS


def test_posts_page_oldest_first(client):
    pages = all_pages(client, f"{T0}/posts")
    posts = [p for page in pages for p in page["value"]]
    assert [len(p["value"]) for p in pages] == [10, 10, 3]
    assert [p["id"] for p in posts] == [xid("post", 0, n) for n in range(BIG_POSTS)]


def test_truncate_posts_at_cuts_without_next_link(data_dir):
    app = make_app(data_dir, SimulatorOptions(truncate_posts_at=5))
    with client_for(app) as c:
        body = c.get(f"{T0}/posts").json()
    assert len(body["value"]) == 5 and "@odata.nextLink" not in body


@pytest.mark.parametrize("token", ["garbage!", "eyJvIjo1fQ", None])
def test_bad_skiptoken_is_400(client, token):
    if token is None:
        link = client.get(f"/groups/{GROUP}/threads").json()["@odata.nextLink"]
        good = parse_qs(urlsplit(link).query)["$skiptoken"][0]
        doc = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
        doc["o"] = 3
        token = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    response = client.get(f"/groups/{GROUP}/threads", params={"$skiptoken": token})
    assert_graph_error(response, 400, "BadRequest")


def test_thread_order_random_is_seeded_and_stable(data_dir):
    def listing(options: SimulatorOptions) -> list[str]:
        with client_for(make_app(data_dir, options)) as c:
            return [t["id"] for t in c.get(f"/groups/{GROUP}/threads").json()["value"]]

    shuffled = listing(SimulatorOptions(thread_order="random", page_size=50))
    newest = listing(SimulatorOptions(page_size=50))
    assert shuffled == listing(SimulatorOptions(thread_order="random", page_size=50))
    assert sorted(shuffled) == sorted(newest) and shuffled != newest


# -- query options ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["$filter", "$orderby", "$search", "$count", "$skip"])
@pytest.mark.parametrize("path", [f"/groups/{GROUP}/conversations", f"/groups/{GROUP}/threads",
                                  f"{T0}/posts"])
def test_unsupported_query_options_are_400(client, option, path):
    value = {"$filter": "hasAttachments eq true", "$orderby": "lastDeliveredDateTime desc",
             "$search": '"x"', "$count": "true", "$skip": "5"}[option]
    error = assert_graph_error(client.get(path, params={option: value}), 400,
                               "ErrorInvalidUrlQuery")
    assert option in error["message"]


def test_unknown_dollar_option_is_400_plain_parameter_ignored(client):
    assert_graph_error(client.get(f"{T0}/posts", params={"$frobnicate": "1"}), 400, "BadRequest")
    assert client.get(f"{T0}/posts", params={"api-version": "1"}).status_code == 200


def test_select_on_threads_and_recipients_only_when_selected(client):
    default = client.get(f"/groups/{GROUP}/threads").json()["value"][0]
    assert set(default) == {"id", "topic", "hasAttachments", "lastDeliveredDateTime",
                            "uniqueSenders", "preview", "isLocked"}
    body = client.get(f"/groups/{GROUP}/threads",
                      params={"$select": "topic,toRecipients,ccRecipients"}).json()
    assert set(body["value"][0]) == {"id", "topic", "toRecipients", "ccRecipients"}
    assert body["value"][0]["toRecipients"] == [rec("Team", "team@contoso.test")]
    assert body["@odata.context"].endswith("/threads(topic,toRecipients,ccRecipients)")
    post = client.get(f"{T0}/posts", params={"$select": "changeKey"}).json()["value"][0]
    assert set(post) == {"@odata.etag", "id", "changeKey"}
    assert_graph_error(client.get(T0, params={"$select": "nope"}), 400, "BadRequest")


def test_expand_one_relationship_on_posts(client):
    atts = client.get(P1, params={"$expand": "attachments"}).json()["attachments"]
    assert [a["@odata.type"] for a in atts] == [
        "#microsoft.graph.fileAttachment", "#microsoft.graph.fileAttachment",
        "#microsoft.graph.itemAttachment", "#microsoft.graph.referenceAttachment"]
    p2 = f"{T0}/posts/{xid('post', 0, 2)}"
    ext = client.get(p2, params={"$expand": "extensions"}).json()["extensions"]
    assert ext == [{"@odata.type": "#microsoft.graph.openTypeExtension",
                    "id": "Microsoft.OutlookServices.OpenTypeExtension.Com.Contoso.Ref",
                    "extensionName": "Com.Contoso.Ref", "ticket": "T-1"}]
    parent = client.get(p2, params={"$expand": "inReplyTo"}).json()["inReplyTo"]
    assert parent["id"] == xid("post", 0, 1)
    listed = client.get(f"{T0}/posts", params={"$expand": "attachments"}).json()["value"]
    assert [len(p["attachments"]) for p in listed[:3]] == [0, 4, 0]
    assert "attachments" not in client.get(P1).json()
    two = client.get(P1, params={"$expand": "attachments,extensions"})
    assert_graph_error(two, 400, "ErrorInvalidUrlQuery")


# -- errors ----------------------------------------------------------------------------------


def test_missing_or_wrong_auth_is_401(sim):
    with httpx.Client(transport=httpx.WSGITransport(app=sim), base_url=BASE) as c:
        response = c.get(T0)
        assert_graph_error(response, 401, "InvalidAuthenticationToken")
        assert "WWW-Authenticate" in response.headers
        basic = c.get(T0, headers={"Authorization": "Basic abc"})
        assert_graph_error(basic, 401, "InvalidAuthenticationToken")


@pytest.mark.parametrize(
    "path,status,code",
    [
        (f"/groups/{GROUP}/threads/bad!id", 400, "ErrorInvalidIdMalformed"),
        (f"/groups/{GROUP}/threads/AAQk", 400, "ErrorInvalidIdMalformed"),
        (f"{T0}/posts/not*an*id", 400, "ErrorInvalidIdMalformed"),
        ("/groups/not-a-guid/threads", 400, "Request_BadRequest"),
        (f"/groups/{ABSENT}/threads", 404, "Request_ResourceNotFound"),
        (f"/groups/{ABSENT}", 404, "Request_ResourceNotFound"),
        (f"/groups/{GROUP}/threads/{xid('thread', 999)}", 404, "ErrorItemNotFound"),
        (f"{T0}/posts/{xid('post', 9, 9)}", 404, "ErrorItemNotFound"),
        (f"{P1}/attachments/{xid('att', 99)}", 404, "ErrorItemNotFound"),
        (f"/groups/{GROUP}/conversations/{xid('conv', 999)}", 404, "ErrorItemNotFound"),
        (f"/groups/{GROUP}/conversations/{xid('conv', 5)}/threads/{xid('thread', 0)}", 404,
         "ErrorItemNotFound"),
        (f"/groups/{PRIVATE}/threads", 403, "ErrorAccessDenied"),
        (f"/groups/{GROUP}/frobs", 400, "BadRequest"),
    ],
)
def test_error_answers(client, path, status, code):
    error = assert_graph_error(client.get(path), status, code)
    if code == "Request_ResourceNotFound":
        assert error["message"] == (f"Resource '{ABSENT}' does not exist or one of its queried "
                                    "reference-property objects are not present.")
    if status == 400 and code == "BadRequest":
        assert error["message"] == "Resource not found for the segment 'frobs'."


def test_public_group_readable_but_not_writable_by_non_member(client):
    assert client.get(f"/groups/{PUBLIC}/threads").status_code == 200
    response = client.post(f"/groups/{PUBLIC}/threads/{xid('thread', PUBLIC)}/reply",
                           json={"post": {"body": {"contentType": "text", "content": "hi"}}})
    assert_graph_error(response, 403, "ErrorAccessDenied")


def test_wrong_method_is_405(client):
    response = client.put(T0, json={})
    assert_graph_error(response, 405, "Request_BadRequest")
    assert "PATCH" in response.headers["Allow"]


def test_app_only_identity(app_client, sim):
    assert app_client.get(f"/groups/{PRIVATE}/threads").status_code == 200
    error = assert_graph_error(app_client.get("/me"), 400, "BadRequest")
    assert error["message"] == "/me request is only valid with delegated authentication flow."
    assert_graph_error(app_client.get("/me/memberOf"), 400, "BadRequest")
    post = {"body": {"contentType": "text", "content": "x"}}
    writes = [
        (f"/groups/{GROUP}/conversations", {"topic": "t", "threads": [{"posts": [post]}]}),
        (f"/groups/{GROUP}/threads", {"topic": "t", "posts": [post]}),
        (f"/groups/{GROUP}/conversations/{xid('conv', 3)}/threads", {"posts": [post]}),
        (f"{T1}/reply", {"post": post}),
    ]
    for path, body in writes:
        assert_graph_error(app_client.post(path, json=body), 403, "ErrorAccessDenied")
    assert_graph_error(app_client.get(f"{P1}/attachments"), 403, "ErrorAccessDenied")
    expanded = app_client.get(P1, params={"$expand": "attachments"}).json()
    assert expanded["attachments"] == []
    groups = app_client.get(f"/users/{ME}/memberOf").json()["value"]
    assert {g["id"] for g in groups} == {GROUP, ROLE.replace("5", "6"), ROLE}


def test_locked_thread_refuses_replies(client):
    t2 = f"/groups/{GROUP}/threads/{xid('thread', 2)}"
    post = {"post": {"body": {"contentType": "text", "content": "late"}}}
    assert_graph_error(client.post(f"{t2}/reply", json=post), 403, "ErrorAccessDenied")
    reply_post = client.post(f"{t2}/posts/{xid('post', 2, 0)}/reply", json=post)
    assert_graph_error(reply_post, 403, "ErrorAccessDenied")
    assert client.patch(t2, json={"isLocked": False}).status_code == 200
    assert client.post(f"{t2}/reply", json=post).status_code == 202
    locked = client.patch(T1, json={"isLocked": True})
    assert (locked.status_code, locked.json()) == (200, {})
    assert locked.headers["Content-Type"].startswith("application/json")
    assert client.get(T1).json()["isLocked"] is True
    assert_graph_error(client.patch(T1, json={"topic": "new"}), 400, "ErrorInvalidRequest")


@pytest.mark.parametrize(
    "content,code",
    [(b"", "BadRequest"), (b"{nope", "BadRequest"), (b"[]", "BadRequest"),
     (b'{"post": {}}', "ErrorInvalidRequest"),
     (b'{"post": {"body": {"contentType": "rtf", "content": "x"}}}', "ErrorInvalidRequest")],
)
def test_bad_write_bodies_are_400(client, content, code):
    response = client.post(f"{T1}/reply", content=content,
                           headers={"Content-Type": "application/json"})
    assert_graph_error(response, 400, code)


def test_attachment_over_3mb_is_refused(client):
    big = base64.b64encode(b"x" * (3 * 1024 * 1024 + 1)).decode()
    att = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "big.bin",
           "contentBytes": big}
    response = client.post(f"{T1}/reply", json={"post": {
        "body": {"contentType": "text", "content": "big"}, "attachments": [att]}})
    assert_graph_error(response, 413, "ErrorMessageSizeExceeded")
    assert len(client.get(f"{T1}/posts").json()["value"]) == 2


# -- writes ----------------------------------------------------------------------------------


def test_create_conversation_returns_only_ids(client):
    body = {"topic": "Offsite", "threads": [{"posts": [{
        "body": {"contentType": "html", "content": "<p>Plan</p>"},
        "newParticipants": [rec("Jonas", "jonas@contoso.test")]}]}]}
    response = client.post(f"/groups/{GROUP}/conversations", json=body)
    assert response.status_code == 201
    created = response.json()
    assert set(created) == {"@odata.context", "id", "threads"}
    assert [set(t) for t in created["threads"]] == [{"id"}]
    conv = client.get(f"/groups/{GROUP}/conversations/{created['id']}").json()
    assert conv["topic"] == "Offsite" and conv["preview"] == "Plan"
    first = client.get(f"/groups/{GROUP}/conversations").json()["value"][0]
    assert first["id"] == created["id"]
    thread = client.get(f"/groups/{GROUP}/threads/{created['threads'][0]['id']}",
                        params={"$select": "toRecipients"}).json()
    assert thread["toRecipients"] == [rec("Jonas", "jonas@contoso.test")]


def test_create_thread_both_paths(client):
    post = {"body": {"contentType": "text", "content": "New <idea>"}, "categories": ["Blue"]}
    created = client.post(f"/groups/{GROUP}/threads", json={"topic": "Idea", "posts": [post]})
    assert created.status_code == 201
    thread = created.json()
    assert set(thread) == {"@odata.context", "id", "topic", "hasAttachments",
                           "lastDeliveredDateTime", "uniqueSenders", "preview", "isLocked"}
    assert thread["preview"] == "New <idea>" and thread["uniqueSenders"] == ["Léa Fontaine"]
    stored = client.get(f"/groups/{GROUP}/threads/{thread['id']}/posts").json()["value"][0]
    assert stored["body"]["contentType"] == "html" and "New &lt;idea&gt;" in stored[
        "body"]["content"]
    assert stored["from"] == rec("team", "team@contoso.test")
    assert stored["sender"] == rec("Léa Fontaine", "lea@contoso.test")
    assert stored["categories"] == ["Blue"]
    conv_path = f"/groups/{GROUP}/conversations/{xid('conv', 3)}/threads"
    inside = client.post(conv_path, json={"posts": [post]})
    assert inside.status_code == 201 and inside.json()["topic"] == "Topic 3"
    assert len(client.get(conv_path).json()["value"]) == 2


def test_replies_and_forward_have_no_body_and_update_derived_fields(client, sim):
    before = client.get(T1).json()
    ext = {"@odata.type": "microsoft.graph.openTypeExtension", "extensionName": "Com.X.Key",
           "value": "k1"}
    att = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt",
           "contentType": "text/plain", "contentBytes": base64.b64encode(b"abc").decode()}
    reply = client.post(f"{T1}/reply", json={"post": {
        "body": {"contentType": "html", "content": "<div>Newest <i>word</i></div>"},
        "extensions": [ext], "attachments": [att]}})
    assert (reply.status_code, reply.content) == (202, b"")
    after = client.get(T1).json()
    assert after["lastDeliveredDateTime"] > before["lastDeliveredDateTime"]
    assert after["preview"] == "Newest word" and after["hasAttachments"] is True
    assert client.get(f"/groups/{GROUP}/threads").json()["value"][0]["id"] == xid("thread", 1)
    conv = client.get(f"/groups/{GROUP}/conversations/{xid('conv', 1)}").json()
    assert conv["lastDeliveredDateTime"] == after["lastDeliveredDateTime"]
    newest = client.get(f"{T1}/posts", params={"$expand": "extensions"}).json()["value"][-1]
    assert newest["extensions"][0]["value"] == "k1" and newest["hasAttachments"] is True
    first = xid("post", 1, 0)
    reply_post = client.post(f"{T1}/posts/{first}/reply", json={"post": {
        "body": {"contentType": "text", "content": "to the first"}}})
    assert (reply_post.status_code, reply_post.content) == (200, b"")
    newest = client.get(f"{T1}/posts", params={"$expand": "inReplyTo"}).json()["value"][-1]
    assert newest["inReplyTo"]["id"] == first
    forward = client.post(f"{T1}/posts/{first}/forward", json={
        "comment": "FYI", "toRecipients": [rec("Ext", "ext@example.com")]})
    assert (forward.status_code, forward.content) == (200, b"")
    assert sim.sent_mail[-1]["post_id"] == first and sim.sent_mail[-1]["comment"] == "FYI"
    assert sim.sent_mail[-1]["recipients"] == [rec("Ext", "ext@example.com")]
    assert_graph_error(client.post(f"{T1}/posts/{first}/forward", json={"comment": "x"}), 400,
                       "ErrorInvalidRequest")


@pytest.mark.parametrize("name", ["post", "Post", "POST"])
def test_reply_parameter_name_in_any_case(client, name):
    body = {name: {"body": {"contentType": "text", "content": f"as {name}"}}}
    assert client.post(f"{T1}/reply", json=body).status_code == 202
    first = xid("post", 1, 0)
    assert client.post(f"{T1}/posts/{first}/reply", json=body).status_code == 200
    contents = [p["body"]["content"] for p in client.get(f"{T1}/posts").json()["value"]]
    assert sum(f"as {name}" in c for c in contents) == 2


def test_forward_parameter_names_as_metadata_spells_them(client, sim):
    first = xid("post", 1, 0)
    forward = client.post(f"{T1}/posts/{first}/forward", json={
        "Comment": "FYI", "ToRecipients": [rec("Ext", "ext@example.com")]})
    assert (forward.status_code, forward.content) == (200, b"")
    assert sim.sent_mail[-1]["comment"] == "FYI"
    assert sim.sent_mail[-1]["recipients"] == [rec("Ext", "ext@example.com")]


def test_action_parameter_given_twice_is_400(client):
    post = {"body": {"contentType": "text", "content": "twice"}}
    assert_graph_error(client.post(f"{T1}/reply", json={"post": post, "Post": post}), 400,
                       "ErrorInvalidRequest")
    first = xid("post", 1, 0)
    both = {"toRecipients": [rec("A", "a@example.com")],
            "ToRecipients": [rec("B", "b@example.com")]}
    assert_graph_error(client.post(f"{T1}/posts/{first}/forward", json=both), 400,
                       "ErrorInvalidRequest")


def test_deletes_and_last_thread_takes_conversation(client):
    conv_url = f"/groups/{GROUP}/conversations/{xid('conv', 1)}"
    deleted = client.delete(T0)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get(T0).status_code == 404
    assert client.get(conv_url).status_code == 200
    assert client.delete(T1).status_code == 204
    assert_graph_error(client.get(conv_url), 404, "ErrorItemNotFound")
    conv3 = f"/groups/{GROUP}/conversations/{xid('conv', 3)}"
    assert client.delete(conv3).status_code == 204
    assert client.get(f"/groups/{GROUP}/threads/{xid('thread', 3)}").status_code == 404


def test_post_attachment_and_value(client):
    before = client.get(P1).json()["changeKey"]
    att = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "b.bin",
           "contentType": "application/pdf", "contentBytes": base64.b64encode(b"%PDF").decode()}
    created = client.post(f"{P1}/attachments", json=att)
    assert created.status_code == 201 and created.json()["size"] == 4
    assert client.get(P1).json()["changeKey"] != before
    raw = client.get(f"{P1}/attachments/{created.json()['id']}/$value")
    assert raw.content == b"%PDF" and raw.headers["content-type"] == "application/pdf"
    item = client.get(f"{P1}/attachments/{xid('att', 3)}/$value")
    assert item.headers["content-type"] == "message/rfc822" and b"Subject: Fwd" in item.content
    expanded = client.get(f"{P1}/attachments/{xid('att', 3)}",
                          params={"$expand": "microsoft.graph.itemAttachment/item"}).json()
    assert expanded["item"]["subject"] == "Fwd"


# -- control helpers -------------------------------------------------------------------------


def test_edit_post_changes_version_not_delivery(client, sim):
    newest_id = xid("post", 1, 1)
    before_post = client.get(f"{T1}/posts/{newest_id}").json()
    before_thread = client.get(T1).json()
    edited = sim.edit_post(GROUP, xid("thread", 1), newest_id, content="<p>Edited text</p>",
                           categories=["Red"])
    after_post = client.get(f"{T1}/posts/{newest_id}").json()
    after_thread = client.get(T1).json()
    assert after_post["changeKey"] != before_post["changeKey"]
    assert after_post["@odata.etag"] == f'W/"{after_post["changeKey"]}"' == edited["@odata.etag"]
    assert after_post["lastModifiedDateTime"] > before_post["lastModifiedDateTime"]
    assert after_post["categories"] == ["Red"]
    assert after_thread["lastDeliveredDateTime"] == before_thread["lastDeliveredDateTime"]
    assert after_thread["preview"] == "Edited text"


def test_upstream_helpers(client, sim):
    thread = sim.new_thread(GROUP, "Upstream", {"body": {"contentType": "html",
                                                         "content": "<p>first</p>"}})
    assert client.get(f"/groups/{GROUP}/threads").json()["value"][0]["id"] == thread["id"]
    post = sim.add_post(GROUP, thread["id"], {"body": {"contentType": "html",
                                                       "content": "<p>second</p>"},
                                              "sender": JONAS})
    url = f"/groups/{GROUP}/threads/{thread['id']}"
    assert client.get(url).json()["uniqueSenders"] == ["Léa Fontaine", "Jonas Müller"]
    att = sim.add_attachment(GROUP, thread["id"], post["id"], "x.png", "image/png", PNG,
                             is_inline=True, content_id="x@1")
    listed = client.get(f"{url}/posts/{post['id']}/attachments").json()["value"]
    assert listed[0]["id"] == att["id"] and listed[0]["contentId"] == "x@1"
    served = client.get(f"{url}/posts/{post['id']}").json()
    # An inline attachment alone does not make hasAttachments true (Graph's message docs).
    assert served["changeKey"] != post["changeKey"] and served["hasAttachments"] is False
    assert client.get(url).json()["hasAttachments"] is False
    sim.add_attachment(GROUP, thread["id"], post["id"], "y.txt", "text/plain", b"y")
    served = client.get(f"{url}/posts/{post['id']}").json()
    assert served["hasAttachments"] is True and client.get(url).json()["hasAttachments"] is True
    sim.delete_thread(GROUP, thread["id"])
    assert client.get(url).status_code == 404
    with pytest.raises(KeyError):
        sim.delete_thread(GROUP, thread["id"])


def test_control_endpoints_over_http(client, sim):
    with httpx.Client(transport=httpx.WSGITransport(app=sim), base_url="http://graph.test") as c:
        client.get(T0)
        log = c.get("/_sim/log", params={"window": 10}).json()
        assert log["total"] == 1 and log["max_in_window"] == 1
        assert log["per_endpoint"] == {"GET /groups/{id}/threads/{id}": 1}
        assert c.post("/_sim/reset-log").status_code == 204
        assert c.get("/_sim/log").json()["total"] == 0
        made = c.post("/_sim/new-thread", json={"group_id": GROUP, "topic": "HTTP", "post": {
            "body": {"contentType": "html", "content": "<p>h</p>"}}})
        assert made.status_code == 201
        tid = made.json()["id"]
        added = c.post("/_sim/add-post", json={"group_id": GROUP, "thread_id": tid, "post": {
            "body": {"contentType": "html", "content": "<p>i</p>"}}}).json()
        edited = c.post("/_sim/edit-post", json={"group_id": GROUP, "thread_id": tid,
                                                 "post_id": added["id"], "content": "<p>j</p>"})
        assert edited.json()["changeKey"] != added["changeKey"]
        att = c.post("/_sim/add-attachment", json={
            "group_id": GROUP, "thread_id": tid, "post_id": added["id"], "name": "d.txt",
            "content_type": "text/plain", "data": base64.b64encode(b"data").decode()})
        assert att.status_code == 201 and att.json()["size"] == 4
        assert c.post("/_sim/down", json={"down": True}).json() == {"down": True}
        assert_graph_error(client.get(T0), 503, "serviceNotAvailable")
        assert c.post("/_sim/down", json={"down": False}).status_code == 200
        assert client.get(T0).status_code == 200
        assert c.post("/_sim/delete-thread", json={"group_id": GROUP,
                                                   "thread_id": tid}).status_code == 204
        missing = c.post("/_sim/delete-thread", json={"group_id": GROUP, "thread_id": tid})
        assert missing.status_code == 404 and "request-id" in missing.headers
        assert c.post("/_sim/add-post", json={"group_id": GROUP}).status_code == 400
        assert c.get("/_sim/sent-mail").json() == {"value": []}
        assert c.get("/_sim/log").json()["total"] == 2
    assert client.get("/_sim/log").json()["total"] == 2  # also under /v1.0, never logged


# -- faults ----------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_and_logs_it(data_dir):
    app = make_app(data_dir, SimulatorOptions(rate=(3, 60)))
    with client_for(app) as c:
        statuses = [c.get(T0).status_code for _ in range(3)]
        throttled = c.get(T0)
    assert statuses == [200, 200, 200]
    assert_graph_error(throttled, 429, "ApplicationThrottled")
    assert 59 <= int(throttled.headers["Retry-After"]) <= 60
    assert app.log.count(method="GET") == 4
    assert [e[3] for e in app.log.entries] == [200, 200, 200, 429]


def test_fail_rate_gives_503_and_504_before_applying(data_dir):
    app = make_app(data_dir, SimulatorOptions(fail_rate=1.0, seed=3))
    with client_for(app) as c:
        statuses = {c.post(f"{T1}/reply", json={"post": {"body": {
            "contentType": "text", "content": "x"}}}).status_code for _ in range(12)}
        app.options.fail_rate = 0.0
        assert len(c.get(f"{T1}/posts").json()["value"]) == 2
    assert statuses == {503, 504}


def test_write_504_applies_the_write(data_dir):
    app = make_app(data_dir, SimulatorOptions(write_504_rate=1.0))
    with client_for(app) as c:
        response = c.post(f"{T1}/reply", json={"post": {"body": {"contentType": "text",
                                                                 "content": "maybe"}}})
        assert_graph_error(response, 504, "GatewayTimeout")
        assert c.get(f"{T1}/posts").json()["value"][-1]["body"]["content"].count("maybe") == 1
        assert c.get(T1).status_code == 200


def test_max_concurrency_over_real_sockets(data_dir):
    app = make_app(data_dir, SimulatorOptions(max_concurrency=2, latency_ms=150))
    results: list[httpx.Response] = []
    barrier = threading.Barrier(6)
    with serve_in_thread(app) as base_url:
        clients = [httpx.Client(base_url=base_url, headers={"Authorization": "Bearer t"})
                   for _ in range(6)]

        def fetch(c: httpx.Client) -> None:
            barrier.wait()
            results.append(c.get(T0))

        workers = [threading.Thread(target=fetch, args=(c,)) for c in clients]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for c in clients:
            c.close()
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) >= 2 and 429 in statuses
    throttled = next(r for r in results if r.status_code == 429)
    error = assert_graph_error(throttled, 429, "ApplicationThrottled")
    assert error["message"] == "Application is over its MailboxConcurrency limit."
    assert throttled.headers["Retry-After"] == "1"
    assert app.log.max_in_window(2.0) == 6


# -- request log, persistence, headers, server -----------------------------------------------


def test_request_log_counts_and_windows(client, sim):
    client.get(T0)
    client.get(T0)
    client.get(f"{T0}/posts")
    client.get(f"/groups/{ABSENT}/threads")
    assert sim.log.count() == 4
    assert sim.log.count("/groups/{id}/threads/{id}") == 2
    assert sim.log.count("GET /groups/{id}/threads") == 1
    assert sim.log.count(method="POST") == 0
    assert sim.log.per_endpoint()["GET /groups/{id}/threads/{id}/posts"] == 1
    assert sim.log.entries[-1][3] == 404
    sim.log.reset()
    for t in (0.0, 0.5, 1.0, 1.01, 5.0, 5.5):
        sim.log.record(t, "GET", "/x", 200)
    assert sim.log.max_in_window(1.0) == 3
    assert sim.log.max_in_window(0.0) == 1
    assert sim.log.max_in_window(10) == 6


def test_persist_writes_group_back_atomically(data_dir):
    app = make_app(data_dir, SimulatorOptions(persist=True))
    with client_for(app) as c:
        c.post(f"{T1}/reply", json={"post": {"body": {"contentType": "text",
                                                      "content": "kept"}}})
    leftovers = [p.name for p in (data_dir / "groups").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    reloaded = make_app(data_dir)
    with client_for(reloaded) as c:
        posts = c.get(f"{T1}/posts").json()["value"]
        logo = c.get(f"{P1}/attachments/{xid('att', 2)}").json()
    assert len(posts) == 3 and "kept" in posts[-1]["body"]["content"]
    assert base64.b64decode(logo["contentBytes"]) == PNG


def test_request_id_on_every_response(client):
    responses = [client.get(T0), client.get(f"/groups/{ABSENT}"),
                 client.post(f"{T1}/reply", json={"post": {"body": {"content": "x"}}}),
                 client.get(f"{P1}/attachments/{xid('att', 1)}/$value"),
                 client.get("http://graph.test/beta/me")]
    ids = [r.headers["request-id"] for r in responses]
    assert len(set(ids)) == len(ids)
    echoed = client.get(T0, headers={"client-request-id": "abc-123"})
    assert echoed.headers["client-request-id"] == "abc-123"


def test_directory_endpoints(client):
    me = client.get("/me").json()
    assert me["id"] == ME and me["@odata.context"].endswith("#users/$entity")
    member_of = client.get("/me/memberOf").json()["value"]
    types = sorted(o["@odata.type"] for o in member_of)
    assert types == ["#microsoft.graph.directoryRole", "#microsoft.graph.group",
                     "#microsoft.graph.group"]
    cast = client.get("/me/memberOf/microsoft.graph.group").json()["value"]
    assert {g["id"] for g in cast} == {GROUP, ROLE.replace("5", "6")}
    assert not any(k.startswith("@sim") for g in cast for k in g)
    for path in ("/me/memberOf/graph.group", f"/users/{ME}/memberOf/graph.group",
                 f"/users/{ME}/memberOf/Microsoft.Graph.Group"):
        aliased = client.get(path)
        assert aliased.status_code == 200, path
        assert aliased.json()["value"] == cast
        assert aliased.json()["@odata.context"].endswith("#groups")
    assert_graph_error(client.get("/me/memberOf/graph.user"), 400, "BadRequest")
    unified = client.get("/groups", params={"$filter": "groupTypes/any(c:c eq 'Unified')"})
    assert {g["id"] for g in unified.json()["value"]} == {GROUP, PRIVATE, PUBLIC}
    assert_graph_error(client.get("/groups", params={"$filter": "displayName eq 'x'"}), 400,
                       "Request_UnsupportedQuery")
    group = client.get(f"/groups/{GROUP}").json()
    assert group["displayName"] == "team" and "@sim.members" not in group
    paged = client.get("/groups", params={"$top": 2}).json()
    assert len(paged["value"]) == 2 and "@odata.nextLink" in paged


def test_serve_in_thread_real_socket_paging(data_dir):
    app = make_app(data_dir)
    with serve_in_thread(app) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1.0")
        with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer t"}) as c:
            first = c.get(f"/groups/{GROUP}/threads").json()
            assert first["@odata.nextLink"].startswith(f"{base_url}/groups/{GROUP}/threads?")
            second = c.get(first["@odata.nextLink"])
            quoted = c.get(f"{base_url}/groups/{GROUP}/threads/{xid('thread', 0)}".replace(
                "=", "%3D"))
    assert second.status_code == 200 and len(second.json()["value"]) == 10
    assert quoted.status_code == 200


def _read_response(f: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a socket file: status, headers, body."""
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline().decode("latin-1").strip()) != "":
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, f.read(int(headers.get("content-length", 0)))


def test_connections_are_kept_alive_like_graphs(data_dir):
    """Several requests on one connection, including a body the app never reads (a 404
    POST), and HTTP/1.0 or ``Connection: close`` still close; a stopped simulator drops
    the connections it was keeping."""
    import socket

    app = make_app(data_dir)
    with serve_in_thread(app) as base_url:
        host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
        auth = "Authorization: Bearer t\r\n"
        kept = socket.create_connection((host, port))
        f = kept.makefile("rb")
        body = b'{"post": {"body": {"content": "unread"}}}'
        kept.sendall(
            f"POST /v1.0/nowhere HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        assert _read_response(f)[0] == 400
        for _ in range(3):
            get = f"GET /v1.0/groups/{GROUP}/threads HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
            kept.sendall(get.encode())
            status, headers, payload = _read_response(f)
            assert status == 200 and json.loads(payload)["value"]
            assert headers.get("connection") != "close"
        assert len(app.log.entries) == 4
        for request in (
            f"GET /v1.0/groups/{GROUP} HTTP/1.0\r\n{auth}\r\n",
            f"GET /v1.0/groups/{GROUP} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n",
        ):
            with socket.create_connection((host, port)) as once, once.makefile("rb") as g:
                once.sendall(request.encode())
                assert _read_response(g)[0] == 200
                assert g.read() == b""  # the server closed it
    kept.settimeout(5)
    with kept, f:
        assert f.read() == b""  # closed by the stop, not left to serve a stopped simulator


def test_run_server_prints_one_line_and_stops_on_ctrl_c(data_dir):
    code = ("import sys; from groupsync.simulator import run_server; "
            "run_server(sys.argv[1], port=0)")
    with subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        line = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert line.startswith("Graph simulator on http://127.0.0.1:") and line.endswith("/v1.0")
    assert proc.returncode == 0, err


def test_options_are_validated():
    with pytest.raises(ValueError):
        SimulatorOptions(thread_order="oldest")
    with pytest.raises(ValueError):
        SimulatorOptions(fail_rate=2)
    with pytest.raises(ValueError):
        SimulatorOptions(rate=(0, 1))


# -- shapes against Microsoft's documented payloads ------------------------------------------


def same_shape(ours: Any, sample: Any, exact: bool, where: str = "$") -> None:
    """``ours`` has the sample's keys (exactly, if ``exact`` at this level) and JSON types."""
    if sample is None:
        return
    assert type(ours) is type(sample), f"{where}: {type(ours).__name__} vs {type(sample)}"
    if isinstance(sample, dict):
        if exact:
            assert set(ours) == set(sample), f"{where}: {sorted(ours)} vs {sorted(sample)}"
        else:
            assert set(ours) >= set(sample), f"{where}: missing {set(sample) - set(ours)}"
        for key, value in sample.items():
            same_shape(ours[key], value, False, f"{where}.{key}")
    elif isinstance(sample, list) and sample and ours:
        for item in ours:
            same_shape(item, sample[0], False, f"{where}[]")


def same_items(ours: dict[str, Any], sample: dict[str, Any], exact: bool) -> None:
    assert set(ours) >= set(sample)
    assert ours["value"], "compare against a non-empty answer"
    for item in ours["value"]:
        if exact:
            assert set(item) == set(sample["value"][0])
        same_shape(item, sample["value"][0], exact)


def test_shapes_match_graph_samples(client):
    same_items(client.get(f"/groups/{GROUP}/conversations").json(),
               graph_sample("list-conversations.json"), exact=True)
    same_items(client.get(f"/groups/{GROUP}/threads").json(),
               graph_sample("list-threads.json"), exact=True)
    same_shape(client.get(T0).json(), graph_sample("get-thread.json"), exact=True)
    same_items(client.get(f"{T0}/posts").json(), graph_sample("list-posts.json"), exact=False)
    attachments = client.get(f"{P1}/attachments").json()
    files = [a for a in attachments["value"]
             if a["@odata.type"] == "#microsoft.graph.fileAttachment"]
    same_items({**attachments, "value": files}, graph_sample("list-attachments.json"),
               exact=False)
    created = client.post(f"/groups/{GROUP}/conversations", json={"topic": "Shape", "threads": [
        {"posts": [{"body": {"contentType": "html", "content": "<p>x</p>"}}]}]})
    assert created.status_code == 201
    same_shape(created.json(), graph_sample("create-conversation-response.json"), exact=True)
    assert set(created.json()["threads"][0]) == {"id"}
