"""Storage, row by row: the migrated schema against its snapshot, and the exact tables,
foreign keys and rows that the ``save_*`` functions write for one thread of the sample
tenant (the simulator's own answers, as the sync receives them) in an in-memory archive.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from groupsync.archive import Archive
from groupsync.simulator import make_app
from groupsync.sync import POST_SELECT

from .conftest import PARIS, SAMPLE_DATA, graph_for, new_archive

SCHEMA_SNAPSHOT = Path(__file__).parent / "archive_schema.sql"
UPDATE = "UPDATE_SNAPSHOTS"  # set to 1 to rewrite the snapshot on purpose
NOW = "2025-01-01T00:00:00Z"
TOPIC = "Inventaire boutique Rivoli — mars"  # Paris: two posts, one CSV attached


FTS5_SHADOWS = ("_config", "_content", "_data", "_docsize", "_idx")


def dump_schema(archive: Archive) -> str:
    """Every object the migrations create, as SQLite stores its SQL, in a stable order;
    not the FTS5 tables' shadow tables, which SQLite makes and describes itself."""
    found = archive.conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
    ).fetchall()
    virtual = [name for _, name, sql in found if sql.startswith("CREATE VIRTUAL TABLE")]
    shadows = {v + suffix for v in virtual for suffix in FTS5_SHADOWS}
    return "".join(
        f"-- {kind} {name}\n{sql};\n\n" for kind, name, sql in found if name not in shadows
    )


def table_rows(archive: Archive, table: str, order: str = "rowid") -> list[dict[str, Any]]:
    cursor = archive.conn.execute(f"SELECT * FROM [{table}] ORDER BY {order}")
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def canonical(data: Any) -> str:
    """The archive's one spelling of JSON (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def payloads() -> dict[str, Any]:
    """What Graph (the simulator) answers for the Paris group, one of its threads, its
    conversation and its posts with attachments, asked for as the sync asks."""
    with graph_for(make_app(SAMPLE_DATA)) as graph:
        group = graph.get_group(PARIS)
        thread = next(t for t in graph.list_threads(PARIS) if t["topic"] == TOPIC)
        posts = list(graph.list_posts(PARIS, thread["id"], select=POST_SELECT,
                                      expand="attachments"))  # fmt: skip
        conversation = graph.get_conversation(PARIS, posts[0]["conversationId"])
    return {"group": group, "thread": thread, "posts": posts, "conversation": conversation}


@pytest.fixture
def saved(payloads) -> Any:
    """An in-memory archive after the sync's save calls for that thread, at ``NOW``."""
    p = payloads
    with new_archive() as archive:
        with archive.atomic():
            archive.save_group(p["group"], NOW)
            archive.save_conversation(PARIS, p["conversation"], NOW)
            archive.save_thread(PARIS, p["thread"], p["conversation"]["id"], NOW,
                                post_count=len(p["posts"]), possibly_truncated=False)  # fmt: skip
            assert archive.save_posts(PARIS, p["thread"]["id"], p["posts"], NOW) == ["new"] * 2
        yield archive


def test_the_migrated_schema_is_the_snapshot():
    with new_archive() as archive:
        schema = dump_schema(archive)
    if os.environ.get(UPDATE) == "1":
        SCHEMA_SNAPSHOT.write_text(schema)
    assert SCHEMA_SNAPSHOT.exists(), f"no snapshot yet: run `{UPDATE}=1 pytest {__file__}`"
    assert schema == SCHEMA_SNAPSHOT.read_text(), (
        f"the migrated schema is not {SCHEMA_SNAPSHOT.name}. If the change is on purpose (a "
        f"new migration), rewrite it with `{UPDATE}=1 .venv/bin/python -m pytest "
        "tests/test_archive.py` and commit the diff with the migration."
    )


def test_migrations_are_recorded_in_order():
    with new_archive() as archive:
        applied = table_rows(archive, "_sqlite_migrations", "id")
    assert [(m["id"], m["migration_set"], m["name"]) for m in applied] == [
        (1, "groupsync", "001_initial_schema"),
        (2, "groupsync", "002_post_text_change_seq_fts"),
        (3, "groupsync", "003_outbox"),
        (4, "groupsync", "004_integrity_events_exports"),
        (5, "groupsync", "005_events_without_hook_output"),
        (6, "groupsync", "006_retention_holds"),
        (7, "groupsync", "007_group_delta"),
        (8, "groupsync", "008_access_log"),
    ]
    assert all(m["applied_at"] for m in applied)  # when: the only column that varies


def test_tables_and_foreign_keys(saved):
    tables = [r[0] for r in saved.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
    assert tables == [
        "_group_delta",
        "_outbox", "_outbox_log", "_sqlite_migrations", "_sync_state", "access_log_seals",
        "attachments", "blobs",
        "conversations", "events", "exports", "governance_log", "groups", "legal_holds",
        "people", "post_versions", "posts",
        "posts_fts", "posts_fts_config", "posts_fts_data", "posts_fts_docsize", "posts_fts_idx",
        "purged_items", "purges", "retention_policies", "sync_runs", "threads", "threads_fts",
        "threads_fts_config", "threads_fts_data",
        "threads_fts_docsize", "threads_fts_idx",
    ]  # fmt: skip
    foreign_keys = {
        table: sorted((r[3], r[2], r[4]) for r in saved.conn.execute(
            f"PRAGMA foreign_key_list([{table}])"))  # fmt: skip
        for table in tables
    }
    assert {t: keys for t, keys in foreign_keys.items() if keys} == {
        "_outbox_log": [("outbox_id", "_outbox", "id")],
        "_sync_state": [("group_id", "groups", "id")],
        "access_log_seals": [("sync_run_id", "sync_runs", "id")],
        "attachments": [("post_id", "posts", "id"), ("sha256", "blobs", "sha256")],
        "blobs": [("sync_run_id", "sync_runs", "id")],
        "conversations": [("group_id", "groups", "id")],
        "events": [("group_id", "groups", "id"), ("sync_run_id", "sync_runs", "id")],
        "post_versions": [("post_id", "posts", "id"), ("sync_run_id", "sync_runs", "id")],
        "posts": [
            ("conversation_id", "conversations", "id"),
            ("from_address", "people", "address"),
            ("group_id", "groups", "id"),
            ("purge_id", "purges", "id"),
            ("sender_address", "people", "address"),
            ("thread_id", "threads", "id"),
        ],
        "purged_items": [("purge_id", "purges", "id")],
        "retention_policies": [("group_id", "groups", "id")],
        "threads": [("conversation_id", "conversations", "id"), ("group_id", "groups", "id")],
    }
    assert saved.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_nothing_else_is_written(saved):
    """No run, event, export, outbox item or sync state comes from the save functions."""
    for table in ["_outbox", "_outbox_log", "_sync_state", "events", "exports", "sync_runs"]:
        assert table_rows(saved, table) == [], table


def test_group_row(saved, payloads):
    group = payloads["group"]
    assert table_rows(saved, "groups") == [
        {
            "id": PARIS,
            "displayName": "Équipe Paris",
            "description": "L'équipe de la boutique Paris Rivoli : planning, vitrines, inventaire.",
            "mail": "equipe-paris@contosooutdoor.onmicrosoft.com",
            "mailNickname": "equipe-paris",
            "visibility": "Private",
            "groupTypes": '["Unified"]',
            "createdDateTime": "2023-09-04T07:02:33Z",
            "json": canonical({k: v for k, v in group.items() if k != "@odata.context"}),
            "first_seen_at": NOW,
            "last_seen_at": NOW,
            "deleted_at": None,
            "access_note": None,
        }
    ]


def test_conversation_and_thread_rows(saved, payloads):
    conversation_id = payloads["conversation"]["id"]
    senders = '["Camille Lefèvre", "Zoë Martin"]'
    preview = "J'ai recompté les gourdes : 58, c'est bon."
    assert table_rows(saved, "conversations") == [
        {
            "id": conversation_id,
            "group_id": PARIS,
            "topic": TOPIC,
            "hasAttachments": 1,
            "lastDeliveredDateTime": "2025-03-28T19:01:07Z",
            "uniqueSenders": senders,
            "preview": preview,
            "first_seen_at": NOW,
            "updated_at": NOW,
            "deleted_at": None,
        }
    ]
    assert table_rows(saved, "threads") == [
        {
            "id": payloads["thread"]["id"],
            "group_id": PARIS,
            "conversation_id": conversation_id,
            "topic": TOPIC,
            "hasAttachments": 1,
            "lastDeliveredDateTime": "2025-03-28T19:01:07Z",
            "uniqueSenders": senders,
            "preview": preview,
            "isLocked": 0,
            "toRecipients": None,
            "ccRecipients": None,
            "post_count": 2,
            "possibly_truncated": 0,
            "first_seen_at": NOW,
            "updated_at": NOW,
            "deleted_at": None,
        }
    ]
    assert table_rows(saved, "threads_fts") == [{"topic": TOPIC, "preview": preview}]


def test_post_rows(saved, payloads):
    first, second = payloads["posts"]
    common = {
        "group_id": PARIS,
        "conversation_id": payloads["conversation"]["id"],
        "thread_id": payloads["thread"]["id"],
        "categories": "[]",
        "body_contentType": "html",
        "from_name": "Équipe Paris",
        "from_address": "equipe-paris@contosooutdoor.onmicrosoft.com",
        "newParticipants": "[]",
        "in_reply_to_id": None,
        "version_count": 1,
        "attachments_note": None,
        "first_seen_at": NOW,
        "updated_at": NOW,
        "deleted_at": None,
        "purged_at": None,
        "purge_id": None,
    }
    first_text = (
        "Inventaire de fin mars en pièce jointe (export de la caisse, séparateur "
        "point-virgule). Stock bas sur les chaussures pointure 42.\nCamille"
    )
    second_text = "J'ai recompté les gourdes : 58, c'est bon."
    assert table_rows(saved, "posts", "change_seq") == [
        {
            **common,
            "id": first["id"],
            "changeKey": "CwAAABYAAACexu1urXWw2VlQyzP2CVbwAAAAAJ9H",
            "createdDateTime": "2025-03-28T18:05:23Z",
            "lastModifiedDateTime": "2025-03-28T18:05:26Z",
            "receivedDateTime": "2025-03-28T18:05:25Z",
            "hasAttachments": 1,
            "body_content": first["body"]["content"],
            "sender_name": "Camille Lefèvre",
            "sender_address": "camille.lefevre@contosooutdoor.onmicrosoft.com",
            "body_text": first_text,
            "change_seq": 1,
        },
        {
            **common,
            "id": second["id"],
            "changeKey": "CwAAABYAAACexu1urXWw2VlQyzP2CVbwAAAAAJ9V",
            "createdDateTime": "2025-03-28T19:01:05Z",
            "lastModifiedDateTime": "2025-03-28T19:01:08Z",
            "receivedDateTime": "2025-03-28T19:01:07Z",
            "hasAttachments": 0,
            "body_content": second["body"]["content"],
            "sender_name": "Zoë Martin",
            "sender_address": "zoe.martin@contosooutdoor.onmicrosoft.com",
            "body_text": second_text,
            "change_seq": 2,
        },
    ]
    assert table_rows(saved, "posts_fts") == [
        {"body_text": first_text, "sender_name": "Camille Lefèvre",
         "sender_address": "camille.lefevre@contosooutdoor.onmicrosoft.com",
         "from_name": "Équipe Paris"},
        {"body_text": second_text, "sender_name": "Zoë Martin",
         "sender_address": "zoe.martin@contosooutdoor.onmicrosoft.com",
         "from_name": "Équipe Paris"},
    ]  # fmt: skip


def test_post_version_rows_are_the_json_without_bytes(saved, payloads):
    expected = []
    for post in payloads["posts"]:
        version = {k: v for k, v in post.items() if k != "attachments"}
        version["attachments"] = [
            {k: v for k, v in a.items() if k != "contentBytes"} for a in post["attachments"]
        ]
        text = canonical(version)
        expected.append(
            {
                "post_id": post["id"],
                "changeKey": post["changeKey"],
                "lastModifiedDateTime": post["lastModifiedDateTime"],
                "json": text,
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "sync_run_id": None,
                "first_seen_at": NOW,
            }
        )
    assert table_rows(saved, "post_versions") == expected
    assert "contentBytes" not in expected[0]["json"]


def test_attachment_blob_and_people_rows(saved, payloads):
    post = payloads["posts"][0]
    (attachment,) = post["attachments"]
    content = base64.b64decode(attachment["contentBytes"])
    sha256 = hashlib.sha256(content).hexdigest()
    assert sha256 == "d8aa8771b123347bfb1e2855643c06e670467ac0fadafd6c87c074985cd97fc9"
    assert table_rows(saved, "attachments") == [
        {
            "post_id": post["id"],
            "id": attachment["id"],
            "type": "fileAttachment",
            "name": "inventaire-rivoli-2025-03.csv",
            "contentType": "text/csv",
            "size": 434,
            "isInline": 0,
            "contentId": None,
            "lastModifiedDateTime": "2025-03-28T18:05:23Z",
            "sha256": sha256,
            "json": canonical({k: v for k, v in attachment.items() if k != "contentBytes"}),
            "first_seen_at": NOW,
            "deleted_at": None,
        }
    ]
    assert table_rows(saved, "blobs") == [
        {
            "sha256": sha256,
            "size": 434,
            "content": content,
            "first_seen_at": NOW,
            "sync_run_id": None,
        }
    ]
    assert table_rows(saved, "people", "address") == [
        {"address": address, "name": name, "first_seen_at": NOW, "last_seen_at": NOW}
        for address, name in [
            ("camille.lefevre@contosooutdoor.onmicrosoft.com", "Camille Lefèvre"),
            ("equipe-paris@contosooutdoor.onmicrosoft.com", "Équipe Paris"),
            ("zoe.martin@contosooutdoor.onmicrosoft.com", "Zoë Martin"),
        ]
    ]


def test_saving_the_same_payloads_again_changes_no_row(saved, payloads):
    """A second save at a later time: every post "same", and not one row different."""
    tables = ["groups", "conversations", "threads", "posts", "post_versions", "attachments",
              "blobs", "people"]  # fmt: skip
    before = {t: table_rows(saved, t) for t in tables}
    p = payloads
    with saved.atomic():
        saved.save_conversation(PARIS, p["conversation"], "2025-02-01T00:00:00Z")
        saved.save_thread(PARIS, p["thread"], p["conversation"]["id"], "2025-02-01T00:00:00Z",
                          post_count=2, possibly_truncated=False)  # fmt: skip
        outcomes = saved.save_posts(PARIS, p["thread"]["id"], p["posts"], "2025-02-01T00:00:00Z")
    assert outcomes == ["same", "same"]
    assert {t: table_rows(saved, t) for t in tables} == before
