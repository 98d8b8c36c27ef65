"""Microsoft's own Python SDK (msgraph-sdk) drives the simulator through the connector's
8 reads and 7 writes.

A client nobody here wrote is the check that the simulator speaks Graph rather than
whatever groupsync's own client expects. The SDK is pointed at the loopback simulator the
supported way: a GraphRequestAdapter with the simulator's base URL and a kiota bearer-token
provider whose AllowedHostsValidator admits 127.0.0.1 (the Azure identity provider would
refuse plain http). Ids are found at test time, so sample_data can grow.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from groupsync.simulator import Simulator, SimulatorOptions, make_app, serve_in_thread

from .conftest import SAMPLE_DATA

# The SDK's modules define deprecated classes as they are imported (kiota's
# GetQueryParameters, every request builder's *RequestConfiguration), and each definition
# warns. Only these two warnings are ignored, at import here and in the tests, where the SDK
# imports its request builders lazily; pytest's filterwarnings = error stays for the rest.
SDK_IMPORT_WARNINGS = (
    r"GetQueryParameters is deprecated\. Use QueryParameters instead\.",
    r"This class is deprecated\. Please use the generic RequestConfiguration class",
)
with warnings.catch_warnings():
    for message in SDK_IMPORT_WARNINGS:
        warnings.filterwarnings("ignore", message, DeprecationWarning)
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
    from msgraph.generated.groups.item.threads.item.posts.item.forward.forward_post_request_body import (  # noqa: E501
        ForwardPostRequestBody,
    )
    from msgraph.generated.groups.item.threads.item.posts.item.post_item_request_builder import (
        PostItemRequestBuilder,
    )
    from msgraph.generated.groups.item.threads.item.posts.item.reply.reply_post_request_body import (  # noqa: E501
        ReplyPostRequestBody as PostReplyBody,
    )
    from msgraph.generated.groups.item.threads.item.posts.posts_request_builder import (
        PostsRequestBuilder,
    )
    from msgraph.generated.groups.item.threads.item.reply.reply_post_request_body import (
        ReplyPostRequestBody as ThreadReplyBody,
    )
    from msgraph.generated.groups.item.threads.threads_request_builder import ThreadsRequestBuilder
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.conversation import Conversation
    from msgraph.generated.models.conversation_thread import ConversationThread
    from msgraph.generated.models.directory_role import DirectoryRole
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.file_attachment import FileAttachment
    from msgraph.generated.models.group import Group
    from msgraph.generated.models.item_attachment import ItemAttachment
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.post import Post
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.models.reference_attachment import ReferenceAttachment
    from msgraph.graph_request_adapter import options as GRAPH_OPTIONS
    from msgraph_core import GraphClientFactory
    from msgraph_core.tasks.page_iterator import PageIterator

pytestmark = [
    pytest.mark.asyncio,
    *(pytest.mark.filterwarnings(f"ignore:{m}:DeprecationWarning") for m in SDK_IMPORT_WARNINGS),
]

UNIFIED = "groupTypes/any(c:c eq 'Unified')"
ATTACHMENT_CLASSES = {
    "#microsoft.graph.fileAttachment": FileAttachment,
    "#microsoft.graph.itemAttachment": ItemAttachment,
    "#microsoft.graph.referenceAttachment": ReferenceAttachment,
}


class SimulatorToken(AccessTokenProvider):
    """A delegated ("me") token for the loopback simulator, and for no other host."""

    def __init__(self) -> None:
        self.hosts = AllowedHostsValidator(["127.0.0.1"])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return "sdk-delegated-token" if self.hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self.hosts


class Wire:
    """Every response the SDK's HTTP client received: (method, path, status)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, response: httpx.Response) -> None:
        request = response.request
        self.seen.append((request.method, request.url.path, response.status_code))

    def last(self) -> tuple[str, str, int]:
        return self.seen[-1]


@pytest.fixture
def sim() -> Simulator:
    return make_app(SAMPLE_DATA, SimulatorOptions(max_concurrency=0))


@pytest.fixture
def sim_url(sim: Simulator) -> Iterator[str]:
    with serve_in_thread(sim) as url:
        yield url


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest_asyncio.fixture
async def graph(sim_url: str, wire: Wire) -> AsyncIterator[GraphServiceClient]:
    """The SDK with its default Graph middleware, over an HTTP client this test closes.

    The socket transport is closed explicitly: msgraph-core wraps it in an
    AsyncGraphTransport that has no ``aclose``, so closing the client leaves it open.
    """
    transport = httpx.AsyncHTTPTransport()
    try:
        async with httpx.AsyncClient(transport=transport,
                                     event_hooks={"response": [wire]}) as http:
            client = GraphClientFactory.create_with_default_middleware(client=http,
                                                                       options=GRAPH_OPTIONS)
            adapter = GraphRequestAdapter(
                BaseBearerTokenAuthenticationProvider(SimulatorToken()), client=client)
            adapter.base_url = sim_url
            yield GraphServiceClient(request_adapter=adapter)
    finally:
        await transport.aclose()


def config(query_parameters: Any) -> RequestConfiguration:
    return RequestConfiguration(query_parameters=query_parameters)


async def every_item(builder: Any, first_page: Any | None = None) -> tuple[list[Any], int]:
    """All items of a collection by following ``odata_next_link`` with the same builder (so
    the SDK parses each page as the same type), and the number of pages."""
    page = first_page if first_page is not None else await builder.get()
    items, pages = list(page.value), 1
    while page.odata_next_link:
        page = await builder.with_url(page.odata_next_link).get()
        items += page.value
        pages += 1
    return items, pages


def my_mailbox_groups(sim: Simulator) -> list[dict[str, Any]]:
    me = sim.state.me["id"]
    return [g for g in sim.state.groups.values()
            if "Unified" in (g.get("groupTypes") or []) and sim.state.is_member(g["id"], me)]


def sample_file_attachments(sim: Simulator) -> list[tuple[str, str, str, str, bytes]]:
    """(group, thread, post, attachment id, file bytes) for every attachment whose bytes come
    from a file under sample_data/files, in the groups "me" belongs to, read from the group
    files as they are on disk."""
    found = []
    for group in my_mailbox_groups(sim):
        path = SAMPLE_DATA / "groups" / f"{group['id']}.json"
        if not path.exists():
            continue
        for conv in json.loads(path.read_text())["conversations"]:
            for thread in conv["threads"]:
                for post in thread["posts"]:
                    for att in post.get("attachments", []):
                        if "@sim.contentFile" in att:
                            data = (SAMPLE_DATA / att["@sim.contentFile"]).read_bytes()
                            found.append((group["id"], thread["id"], post["id"], att["id"],
                                          data))
    return found


def posts_with_attachments(sim: Simulator) -> Iterator[tuple[str, str, str]]:
    """Every post with attachments in the groups "me" belongs to (so it may list them)."""
    for group in my_mailbox_groups(sim):
        for thread in sim.state.threads(group["id"]):
            for post in thread["posts"]:
                if post.get("attachments"):
                    yield group["id"], thread["id"], post["id"]


def as_dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- the 8 reads -----------------------------------------------------------------------------


async def test_list_groups_of_me_and_of_the_tenant(graph, sim):
    member_of = await graph.me.member_of.get()
    assert {type(o) for o in member_of.value} <= {Group, DirectoryRole}
    roles = [o for o in member_of.value if isinstance(o, DirectoryRole)]
    assert {r.id for r in roles} == {r["id"] for r in sim.state.tenant.get("directoryRoles", [])}
    mine = {g["id"] for g in sim.state.member_groups(sim.state.me["id"])}
    assert {o.id for o in member_of.value if isinstance(o, Group)} == mine

    cast = await graph.me.member_of.graph_group.get()
    assert all(isinstance(g, Group) for g in cast.value) and {g.id for g in cast.value} == mine
    by_user = await graph.users.by_user_id(sim.state.me["id"]).member_of.graph_group.get()
    assert {g.id for g in by_user.value} == mine

    unified = await graph.groups.get(config(
        GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(filter=UNIFIED, top=2)))
    groups, pages = await every_item(graph.groups, unified)
    expected = {g["id"] for g in sim.state.groups.values()
                if "Unified" in (g.get("groupTypes") or [])}
    assert pages > 1 and len(groups) == len(expected)
    assert {g.id for g in groups} == expected
    for group in groups:
        assert isinstance(group, Group) and "Unified" in group.group_types
        assert group.display_name == sim.state.group(group.id)["displayName"]


async def test_conversations_and_threads_are_typed_and_complete(graph, sim):
    for group in my_mailbox_groups(sim):
        gid = group["id"]
        mailbox = graph.groups.by_group_id(gid)
        conversations, _ = await every_item(mailbox.conversations)
        stored = {c["id"]: c for c in sim.state.conversations(gid)}
        assert sorted(c.id for c in conversations) == sorted(stored)
        for listed in conversations:
            assert isinstance(listed, Conversation)
            conv = await mailbox.conversations.by_conversation_id(listed.id).get()
            assert isinstance(conv, Conversation) and conv.topic == stored[conv.id]["topic"]
            assert conv.last_delivered_date_time == as_dt(
                stored[conv.id]["lastDeliveredDateTime"])
            assert conv.unique_senders == stored[conv.id]["uniqueSenders"]
            in_conv, _ = await every_item(mailbox.conversations.by_conversation_id(conv.id).threads)
            assert sorted(t.id for t in in_conv) == sorted(
                t["id"] for t in stored[conv.id]["threads"])
            assert all(isinstance(t, ConversationThread) for t in in_conv)

        threads, _ = await every_item(mailbox.threads)
        assert sorted(t.id for t in threads) == sorted(t["id"] for t in sim.state.threads(gid))
        for listed in threads:
            thread = await mailbox.threads.by_conversation_thread_id(listed.id).get()
            _, expected = sim.state.thread(gid, listed.id)
            assert isinstance(thread, ConversationThread)
            assert (thread.topic, thread.is_locked, thread.preview) == (
                expected["topic"], expected["isLocked"], expected["preview"])
            assert thread.last_delivered_date_time == as_dt(expected["lastDeliveredDateTime"])


async def test_posts_typed_with_bodies_and_senders(graph, sim):
    gid = my_mailbox_groups(sim)[0]["id"]
    for thread in sim.state.threads(gid):
        posts_builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(
            thread["id"]).posts
        posts, _ = await every_item(posts_builder)
        assert [p.id for p in posts] == [p["id"] for p in thread["posts"]]
        for post, stored in zip(posts, thread["posts"], strict=True):
            assert isinstance(post, Post) and isinstance(post.body, ItemBody)
            assert post.body.content == stored["body"]["content"]
            assert post.body.content_type == BodyType.Html
            assert post.sender.email_address.address == stored["sender"]["emailAddress"][
                "address"]
            assert post.from_.email_address.address == stored["from"]["emailAddress"][
                "address"]
            assert post.change_key == stored["changeKey"]
            assert post.received_date_time == as_dt(stored["receivedDateTime"])
            one = await posts_builder.by_post_id(post.id).get()
            assert isinstance(one, Post) and one.body.content == post.body.content


async def test_attachments_typed_and_file_bytes_decoded(graph, sim):
    files = sample_file_attachments(sim)
    assert files, "sample_data has file attachments"
    expand = config(PostItemRequestBuilder.PostItemRequestBuilderGetQueryParameters(
        expand=["attachments"]))
    kinds: set[type] = set()
    posts = sorted(set(posts_with_attachments(sim)))
    assert {(g, t, p) for g, t, p, _, _ in files} <= set(posts)
    for gid, tid, pid in posts:
        post_builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(
            tid).posts.by_post_id(pid)
        _, _, stored = sim.state.post(gid, tid, pid)
        expected = [(a["id"], ATTACHMENT_CLASSES[a["@odata.type"]])
                    for a in stored["attachments"]]
        post = await post_builder.get(expand)
        assert isinstance(post, Post)
        assert [(a.id, type(a)) for a in post.attachments] == expected
        listed = await post_builder.attachments.get()
        assert [(a.id, type(a)) for a in listed.value] == expected
        kinds |= {type(a) for a in listed.value}
        for att in (*post.attachments, *listed.value):
            assert att.name and att.size is not None and att.is_inline is not None
            if isinstance(att, FileAttachment):
                assert isinstance(att.content_bytes, bytes) and len(att.content_bytes) == att.size
    assert FileAttachment in kinds
    for gid, tid, pid, aid, data in files:
        post_builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(
            tid).posts.by_post_id(pid)
        post = await post_builder.get(expand)
        [att] = [a for a in post.attachments if a.id == aid]
        assert isinstance(att, FileAttachment) and att.content_bytes == data
        listed = await post_builder.attachments.get()
        [att] = [a for a in listed.value if a.id == aid]
        assert att.content_bytes == data


async def test_page_iterator_delivers_every_thread_once(graph, sim, wire):
    gid = max(my_mailbox_groups(sim), key=lambda g: len(sim.state.threads(g["id"])))["id"]
    expected = [t["id"] for t in sim.state.threads(gid)]
    assert len(expected) > 3
    first = await graph.groups.by_group_id(gid).threads.get(config(
        ThreadsRequestBuilder.ThreadsRequestBuilderGetQueryParameters(top=2)))
    assert first.odata_next_link and len(first.value) == 2
    seen: list[str] = []

    def collect(thread: ConversationThread) -> bool:
        assert isinstance(thread, ConversationThread)
        seen.append(thread.id)
        return True

    before = len(wire.seen)
    await PageIterator(first, graph.request_adapter).iterate(collect)
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert len(wire.seen) - before == (len(expected) + 1) // 2 - 1


async def test_next_links_across_empty_pages_deliver_every_post_once(graph, sim):
    # Graph may answer a page with no items and a nextLink (docs: concepts/paging);
    # following odata_next_link until it is absent must still deliver every post once.
    sim.options.empty_page_every = 2
    gid, thread = max(((g["id"], t) for g in my_mailbox_groups(sim)
                       for t in sim.state.threads(g["id"])), key=lambda gt: len(gt[1]["posts"]))
    assert len(thread["posts"]) > 2
    posts = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(thread["id"]).posts
    first = await posts.get(config(
        PostsRequestBuilder.PostsRequestBuilderGetQueryParameters(top=1)))
    items, pages = await every_item(posts, first)
    assert [p.id for p in items] == [p["id"] for p in thread["posts"]]
    assert pages > len(thread["posts"])
    assert all(isinstance(p, Post) for p in items)


# -- the 7 writes ----------------------------------------------------------------------------


def html(content: str) -> ItemBody:
    return ItemBody(content_type=BodyType.Html, content=content)


def recipient(name: str, address: str) -> Recipient:
    return Recipient(email_address=EmailAddress(name=name, address=address))


def writable_thread(sim: Simulator) -> tuple[str, dict[str, Any]]:
    for group in my_mailbox_groups(sim):
        for thread in sim.state.threads(group["id"]):
            if not thread["isLocked"] and thread["posts"]:
                return group["id"], thread
    raise AssertionError("sample_data has no open thread in a group of 'me'")


async def test_create_conversation(graph, sim, wire):
    gid = my_mailbox_groups(sim)[0]["id"]
    mailbox = graph.groups.by_group_id(gid)
    body = Conversation(topic="SDK: new conversation", threads=[ConversationThread(posts=[
        Post(body=html("<p>Opened by <b>msgraph-sdk</b></p>"),
             new_participants=[recipient("Ext", "ext@example.com")])])])
    created = await mailbox.conversations.post(body)
    assert wire.last() == ("POST", f"/v1.0/groups/{gid}/conversations", 201)
    assert isinstance(created, Conversation) and created.id
    assert len(created.threads) == 1 and created.threads[0].id

    conv = await mailbox.conversations.by_conversation_id(created.id).get()
    assert conv.topic == "SDK: new conversation"
    threads = await mailbox.conversations.by_conversation_id(created.id).threads.get()
    assert [t.id for t in threads.value] == [created.threads[0].id]
    posts = await mailbox.threads.by_conversation_thread_id(created.threads[0].id).posts.get()
    assert len(posts.value) == 1 and "msgraph-sdk" in posts.value[0].body.content


async def test_create_thread_in_a_new_conversation(graph, sim, wire):
    gid = my_mailbox_groups(sim)[0]["id"]
    mailbox = graph.groups.by_group_id(gid)
    created = await mailbox.threads.post(ConversationThread(
        topic="SDK: new thread", posts=[Post(body=html("<p>Thread body</p>"))]))
    assert wire.last() == ("POST", f"/v1.0/groups/{gid}/threads", 201)
    assert isinstance(created, ConversationThread) and created.id
    assert created.topic == "SDK: new thread"

    thread = await mailbox.threads.by_conversation_thread_id(created.id).get()
    assert thread.topic == "SDK: new thread" and thread.is_locked is False
    conversations = await mailbox.conversations.get()
    assert conversations.value[0].topic == "SDK: new thread"
    posts = await mailbox.threads.by_conversation_thread_id(created.id).posts.get()
    assert [p.body.content for p in posts.value] == ["<p>Thread body</p>"]


async def test_create_thread_in_a_conversation(graph, sim, wire):
    gid, open_thread = writable_thread(sim)
    conv, _ = sim.state.thread(gid, open_thread["id"])
    mailbox = graph.groups.by_group_id(gid)
    before = await mailbox.conversations.by_conversation_id(conv["id"]).threads.get()
    created = await mailbox.conversations.by_conversation_id(conv["id"]).threads.post(
        ConversationThread(posts=[Post(body=html("<p>Another thread</p>"))]))
    assert wire.last() == ("POST",
                           f"/v1.0/groups/{gid}/conversations/{conv['id']}/threads", 201)
    assert isinstance(created, ConversationThread) and created.topic == conv["topic"]

    after = await mailbox.conversations.by_conversation_id(conv["id"]).threads.get()
    assert {t.id for t in after.value} == {t.id for t in before.value} | {created.id}


async def test_reply_to_thread(graph, sim, wire):
    gid, thread = writable_thread(sim)
    builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(thread["id"])
    before = await builder.posts.get()
    returned = await builder.reply.post(ThreadReplyBody(post=Post(
        body=html("<p>Reply from the SDK</p>"))))
    assert returned is None
    assert wire.last() == ("POST", f"/v1.0/groups/{gid}/threads/{thread['id']}/reply", 202)

    after = await builder.posts.get()
    assert [p.id for p in after.value[:-1]] == [p.id for p in before.value]
    assert after.value[-1].body.content == "<p>Reply from the SDK</p>"
    refreshed = await builder.get()
    assert refreshed.preview == "Reply from the SDK"


async def test_reply_to_post(graph, sim, wire):
    gid, thread = writable_thread(sim)
    pid = thread["posts"][0]["id"]
    builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(thread["id"])
    returned = await builder.posts.by_post_id(pid).reply.post(PostReplyBody(post=Post(
        body=html("<p>Answering the first post</p>"))))
    assert returned is None
    assert wire.last() == (
        "POST", f"/v1.0/groups/{gid}/threads/{thread['id']}/posts/{pid}/reply", 200)

    posts = await builder.posts.get()
    newest = posts.value[-1]
    assert newest.body.content == "<p>Answering the first post</p>"
    expanded = await builder.posts.by_post_id(newest.id).get(config(
        PostItemRequestBuilder.PostItemRequestBuilderGetQueryParameters(expand=["inReplyTo"])))
    assert isinstance(expanded.in_reply_to, Post) and expanded.in_reply_to.id == pid


async def test_forward_post(graph, sim, wire):
    gid, thread = writable_thread(sim)
    pid = thread["posts"][0]["id"]
    post_builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(
        thread["id"]).posts.by_post_id(pid)
    before = await post_builder.get()
    returned = await post_builder.forward.post(ForwardPostRequestBody(
        comment="FYI from the SDK", to_recipients=[recipient("Ext", "ext@example.com")]))
    assert returned is None
    assert wire.last() == (
        "POST", f"/v1.0/groups/{gid}/threads/{thread['id']}/posts/{pid}/forward", 200)
    # Forwarding sends mail out of the group: Graph shows nothing new in it, and the post is
    # unchanged; the simulator's sent_mail is where the forward lands.
    after = await post_builder.get()
    assert after.change_key == before.change_key
    sent = sim.sent_mail[-1]
    assert (sent["post_id"], sent["comment"]) == (pid, "FYI from the SDK")
    assert sent["recipients"] == [{"emailAddress": {"name": "Ext",
                                                    "address": "ext@example.com"}}]


async def test_delete_thread(graph, sim, wire):
    gid, thread = writable_thread(sim)
    builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(thread["id"])
    assert await builder.delete() is None
    assert wire.last() == ("DELETE", f"/v1.0/groups/{gid}/threads/{thread['id']}", 204)

    with pytest.raises(ODataError) as gone:
        await builder.get()
    assert gone.value.response_status_code == 404
    assert gone.value.error.code == "ErrorItemNotFound"
    threads, _ = await every_item(graph.groups.by_group_id(gid).threads)
    assert thread["id"] not in {t.id for t in threads}


async def test_lock_thread_then_replies_are_refused(graph, sim, wire):
    gid, thread = writable_thread(sim)
    builder = graph.groups.by_group_id(gid).threads.by_conversation_thread_id(thread["id"])
    updated = await builder.patch(ConversationThread(is_locked=True))
    assert wire.last() == ("PATCH", f"/v1.0/groups/{gid}/threads/{thread['id']}", 200)
    assert isinstance(updated, ConversationThread)
    assert (await builder.get()).is_locked is True
    with pytest.raises(ODataError) as refused:
        await builder.reply.post(ThreadReplyBody(post=Post(body=html("<p>late</p>"))))
    assert refused.value.response_status_code == 403


# -- throttling ------------------------------------------------------------------------------


async def test_sdk_retry_handler_honours_the_simulators_retry_after(graph, sim, wire):
    # Graph answers 429 with Retry-After (docs: concepts/throttling); the SDK's default
    # RetryHandler waits that long and retries, so its caller only ever sees the 200s.
    # At (2 calls, 1 s) the simulator's Retry-After is 1 s; without the header the SDK would
    # back off for 3 s or more, so the gap shows the header was read.
    gid = my_mailbox_groups(sim)[0]["id"]
    sim.options.rate = (2, 1.0)
    groups = [await graph.groups.by_group_id(gid).get() for _ in range(4)]
    assert all(isinstance(g, Group) and g.id == gid for g in groups)
    assert [status for *_, status in wire.seen] == [200] * 4
    entries = sim.log.entries
    throttled = [i for i, entry in enumerate(entries) if entry[3] == 429]
    assert throttled and len(entries) == 4 + len(throttled)
    for i in throttled:
        assert 0.95 <= entries[i + 1][0] - entries[i][0] < 2.5


# -- group discovery (issue 16): the SDK walks the simulator's /groups/delta ------------------


async def test_group_delta_pages_then_changes_and_removals(graph, sim, wire):
    from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder

    from groupsync.simulator import group_delta as upstream

    sim.options.page_size = 3
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        select=["id", "displayName", "groupTypes"])
    page = await graph.groups.delta.get(config(query))
    groups, pages = list(page.value), 1
    while page.odata_next_link:
        assert page.odata_delta_link is None
        page = await graph.groups.delta.with_url(page.odata_next_link).get()
        groups += page.value
        pages += 1
    assert pages == 3 and all(isinstance(g, Group) for g in groups)
    assert {g.id for g in groups} == {g["id"] for g in sim.state.groups.values()}
    link = page.odata_delta_link
    assert link and wire.seen[0][1].endswith("/groups/delta()")

    marketing, engineering = list(sim.state.groups)[:2]
    upstream.update_group(sim, marketing, {"displayName": "Renamed by the SDK test"})
    upstream.remove_group(sim, engineering, "deleted")
    changes = await graph.groups.delta.with_url(link).get()
    assert changes.odata_delta_link and not changes.odata_next_link
    by_id = {g.id: g for g in changes.value}
    assert by_id[marketing].display_name == "Renamed by the SDK test"
    assert by_id[engineering].additional_data["@removed"] == {"reason": "deleted"}

    upstream.expire_tokens(sim)
    with pytest.raises(ODataError) as expired:
        await graph.groups.delta.with_url(changes.odata_delta_link).get()
    assert expired.value.response_status_code == 400
    assert expired.value.error.code == "syncStateNotFound"
