"""``sync --all`` discovers groups with ``/groups/delta`` and a stored deltaLink (issue 16):
the simulator's delta as documented, then new, renamed and removed groups found by one
delta request, and an expired link answered by a full listing."""

from __future__ import annotations

import httpx
import pytest

from groupsync.simulator import SimulatorOptions, make_app
from groupsync.simulator import group_delta as upstream
from groupsync.sync import Syncer, SyncOptions

from .conftest import ENGINEERING, MARKETING, SAMPLE_DATA, graph_for, new_archive, rows

NEW_GROUP = "0b0e7c8a-3f1d-4a51-9d7e-2c4b6a8e1f00"


@pytest.fixture
def client(sim):
    with httpx.Client(
        transport=httpx.WSGITransport(app=sim),
        base_url="http://sim/v1.0/",
        headers={"Authorization": "Bearer t"},
    ) as http:
        yield http


def unified(sim) -> set[str]:
    return {g["id"] for g in sim.state.groups.values() if "Unified" in (g.get("groupTypes") or [])}


def walk(client, url, params=None):
    """Every item of one delta round and the deltaLink it ended with, and its page count."""
    page = client.get(url, params=params).json()
    items, pages = list(page["value"]), 1
    while "@odata.nextLink" in page:
        assert "@odata.deltaLink" not in page
        page = client.get(page["@odata.nextLink"]).json()
        items += page["value"]
        pages += 1
    return items, page["@odata.deltaLink"], pages


def sync_all(sim, path):
    with graph_for(sim) as graph, new_archive(path) as archive:
        return Syncer(archive, graph, options=SyncOptions()).run(all_groups=True)


def delta_requests(sim) -> int:
    return sum(n for key, n in sim.log.per_endpoint().items() if "/groups/delta" in key)


# -- the simulator's delta ------------------------------------------------------------------


def test_first_round_pages_then_ends_with_a_delta_link():
    sim = make_app(SAMPLE_DATA, SimulatorOptions(page_size=2))
    with httpx.Client(transport=httpx.WSGITransport(app=sim), base_url="http://sim/v1.0/",
                      headers={"Authorization": "Bearer t"}) as client:  # fmt: skip
        items, link, pages = walk(client, "groups/delta", {"$select": "id,displayName"})
    assert pages == 4  # 7 groups, 2 a page
    assert {i["id"] for i in items} == {g["id"] for g in sim.state.groups.values()}
    assert all(set(i) == {"id", "displayName"} for i in items)
    assert "$deltatoken=" in link and "select" not in link.lower()  # options ride in the token


def test_changes_since_the_link_and_removals(sim, client):
    _items, link, _pages = walk(client, "groups/delta", {"$select": "id,displayName,groupTypes"})
    nothing, link2, _ = walk(client, link)
    assert nothing == []
    upstream.update_group(sim, MARKETING, {"displayName": "Marketing & Sales"})
    upstream.remove_group(sim, ENGINEERING, "deleted")
    upstream.add_group(sim, {"id": NEW_GROUP, "displayName": "New"})
    changes, _link3, _ = walk(client, link2)
    assert changes == [
        {"id": MARKETING, "displayName": "Marketing & Sales", "groupTypes": ["Unified"]},
        {"id": NEW_GROUP, "displayName": "New", "groupTypes": ["Unified"]},
        {"id": ENGINEERING, "@removed": {"reason": "deleted"}},
    ]
    assert client.get(f"groups/{ENGINEERING}").status_code == 404


@pytest.mark.parametrize(
    "query",
    ["$filter=groupTypes/any(c:c eq 'Unified')", "$filter=displayName eq 'x'", "$top=5"],
)
def test_only_filters_by_id(client, query):
    answer = client.get(f"groups/delta?{query}")
    assert answer.status_code == 400


def test_filter_by_ids(client):
    items, _link, _ = walk(client, f"groups/delta?$filter=id eq '{MARKETING}' or id eq "
                                   f"'{ENGINEERING}'")  # fmt: skip
    assert {i["id"] for i in items} == {MARKETING, ENGINEERING}
    many = " or ".join(f"id eq '{n:08d}-0000-0000-0000-000000000000'" for n in range(51))
    assert client.get(f"groups/delta?$filter={many}").status_code == 400


def test_expired_and_foreign_tokens(sim, client):
    _items, link, _ = walk(client, "groups/delta")
    upstream.expire_tokens(sim)
    expired = client.get(link)
    assert expired.status_code == 400
    assert expired.json()["error"]["code"] == "syncStateNotFound"
    forged = client.get("groups/delta?$deltatoken=eyJwIjoiMSIsInMiOiIyIn0")
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "BadRequest"


# -- sync --all -----------------------------------------------------------------------------


def test_first_sync_lists_every_mailbox_group_by_delta(sim, tmp_path):
    report = sync_all(sim, tmp_path / "a.db")
    assert set(report.groups) == unified(sim)
    endpoints = sim.log.per_endpoint()
    assert "GET /groups" not in endpoints  # no full listing beside the delta
    assert delta_requests(sim) == 1
    archived = rows(tmp_path / "a.db", "SELECT id FROM groups")
    assert {r[0] for r in archived} == unified(sim)  # security groups never archived
    [(link,)] = rows(tmp_path / "a.db", "SELECT delta_link FROM _group_delta")
    assert "$deltatoken=" in link


def test_next_sync_finds_new_renamed_and_removed_groups_with_one_request(sim, tmp_path):
    db = tmp_path / "a.db"
    sync_all(sim, db)
    upstream.add_group(sim, {"id": NEW_GROUP, "displayName": "Launch", "mail": "launch@x.test"})
    upstream.update_group(sim, MARKETING, {"displayName": "Marketing & Sales"})
    upstream.remove_group(sim, ENGINEERING, "changed")
    upstream.add_group(sim, {"id": "1b0e7c8a-3f1d-4a51-9d7e-2c4b6a8e1f00",
                             "displayName": "Security", "groupTypes": []})  # fmt: skip
    sim.log.reset()
    report = sync_all(sim, db)
    assert delta_requests(sim) == 1
    assert NEW_GROUP in report.groups and ENGINEERING not in report.groups
    groups = dict(rows(db, "SELECT id, displayName FROM groups"))
    assert groups[MARKETING] == "Marketing & Sales" and groups[NEW_GROUP] == "Launch"
    assert "1b0e7c8a-3f1d-4a51-9d7e-2c4b6a8e1f00" not in groups
    [(deleted_at, note)] = rows(db, "SELECT deleted_at, access_note FROM groups WHERE id = ?",
                                [ENGINEERING])  # fmt: skip
    assert deleted_at is not None and "removed" in note
    kept = rows(db, "SELECT count(*) FROM posts WHERE group_id = ?", [ENGINEERING])
    assert kept[0][0] > 0  # tombstoned, never erased
    assert any("removed upstream" in n for n in report.notes)


def test_expired_link_falls_back_to_a_full_listing(sim, tmp_path):
    db = tmp_path / "a.db"
    sync_all(sim, db)
    upstream.expire_tokens(sim)
    # Removed while the link was lost: only a full listing can tell, by its absence.
    upstream.remove_group(sim, ENGINEERING, "deleted")
    sim.log.reset()
    report = sync_all(sim, db)
    statuses = [e[3] for e in sim.log.entries if e[2] == "/groups/delta"]
    assert statuses == [400, 200]  # the refused link, then the full round
    assert any("listing every group again" in n for n in report.notes)
    assert set(report.groups) == unified(sim)
    [(deleted_at,)] = rows(db, "SELECT deleted_at FROM groups WHERE id = ?", [ENGINEERING])
    assert deleted_at is not None
    sim.log.reset()
    sync_all(sim, db)
    assert delta_requests(sim) == 1  # the new link works


def test_a_link_for_another_graph_endpoint_is_not_followed(sim, tmp_path):
    """A simulator on a new port, or another cloud: the token goes only to the configured
    Graph, so the stored link is dropped and every group listed again."""
    db = tmp_path / "a.db"
    sync_all(sim, db)
    rows(db, "UPDATE _group_delta SET delta_link = replace(delta_link, 'http://', 'http://x')")
    sim.log.reset()
    report = sync_all(sim, db)
    assert [e[3] for e in sim.log.entries if e[2] == "/groups/delta"] == [200]
    assert any("not http" in n and "listing every group again" in n for n in report.notes)
    [(link,)] = rows(db, "SELECT delta_link FROM _group_delta")
    assert "http://x" not in link
