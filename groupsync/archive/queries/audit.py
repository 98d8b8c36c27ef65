"""The completeness audit's reads (see ``groupsync.audit``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..connection import Connection


def _in_group(group_id: str | None, column: str) -> str:
    """A condition on the group only when there is one, so that its index is used."""
    return "" if group_id is None else f"AND {column} = :group_id"


def posts_with_cid_references(archive: Connection, group_id: str | None) -> list[tuple[Any, ...]]:
    """Live HTML posts whose body mentions ``cid:``: ``(id, group_id, thread_id,
    body_content, attachments_note)``, oldest first; of one group, or of all."""
    return archive.conn.execute(
        f"""
        SELECT id, group_id, thread_id, body_content, attachments_note FROM posts
        WHERE deleted_at IS NULL AND body_content LIKE '%cid:%' {_in_group(group_id, "group_id")}
          AND coalesce(body_contentType, 'html') = 'html'
        ORDER BY receivedDateTime, id
        """,
        {"group_id": group_id},
    ).fetchall()


def attachment_content_ids(archive: Connection, post_id: str) -> Iterable[str]:
    """The Content-IDs of a post's archived attachments, as stored."""
    return [
        r[0]
        for r in archive.conn.execute(
            "SELECT contentId FROM attachments WHERE contentId IS NOT NULL AND post_id = :post_id",
            {"post_id": post_id},
        )
    ]


def posts_missing_attachments(
    archive: Connection, group_id: str | None
) -> list[tuple[str, str, str]]:
    """Live posts Graph said have attachments, with none archived and no note saying why:
    ``(id, group_id, thread_id)``."""
    return archive.conn.execute(
        f"""
        SELECT p.id, p.group_id, p.thread_id FROM posts AS p
        WHERE p.deleted_at IS NULL AND p.hasAttachments = 1 AND p.attachments_note IS NULL
          AND NOT EXISTS (SELECT 1 FROM attachments AS a WHERE a.post_id = p.id)
          {_in_group(group_id, "p.group_id")}
        """,
        {"group_id": group_id},
    ).fetchall()


def threads_with_other_post_counts(archive: Connection) -> list[tuple[str, str, int, int]]:
    """Live threads, not possibly cut short, whose live posts are not as many as Graph
    listed: ``(group_id, id, post_count, archived)``."""
    return archive.conn.execute(
        """
        SELECT t.group_id, t.id, t.post_count, count(p.id) FROM threads AS t
        LEFT JOIN posts AS p ON p.thread_id = t.id AND p.deleted_at IS NULL
        WHERE t.deleted_at IS NULL AND t.possibly_truncated = 0
        GROUP BY t.id HAVING count(p.id) != t.post_count
        """
    ).fetchall()
