"""Completeness audit: invariants that catch what a sync missed, on a tenant never seen.

The hashes and the chain (``integrity``) prove the archive holds what the syncs wrote; they
cannot tell that a sync wrote too little. These checks compare the archive with what
Graph itself said, as recorded beside the mail:

* ``missing-inline``: a live post's body refers to ``cid:X`` and no archived attachment of
  that post has the Content-ID ``X`` (compared as mail clients do: no ``<>``, any case).
* ``missing-attachment``: Graph said ``hasAttachments`` and the post has no archived
  attachment.

A post whose ``attachments_note`` says why its attachments could not be had (not readable
with this identity, or not listed by Graph at all, as for a reply that quotes the images of
the post it answers) is not a finding: the sync asked and recorded the answer. Everything
else found here is what ``sync --full`` fetches again (``incomplete_posts``).
* ``post-count``: a live thread's live posts are not as many as Graph listed the last time
  the thread's posts were (``threads.post_count``), unless that listing may have been cut
  short (``possibly_truncated``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .archive import Archive
from .archive.queries import audit as queries
from .html import content_ids, same_content_id

__all__ = ["Finding", "audit", "incomplete_posts"]


@dataclass
class Finding:
    """Something a sync missed. ``detail`` holds the kind's own values (``cid``, counts)."""

    kind: str
    group_id: str
    thread_id: str
    post_id: str | None
    detail: dict[str, Any]
    fix: str

    def __str__(self) -> str:
        where = f"group={self.group_id} thread={self.thread_id}"
        if self.post_id is not None:
            where += f" post={self.post_id}"
        values = " ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind}  {where}{' ' + values if values else ''}  fix: {self.fix}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _full_sync(group_id: str) -> str:
    return f"groupsync sync --full --group {group_id}"


def audit(archive: Archive, checked: dict[str, int] | None = None) -> list[Finding]:
    """Every finding, in group, thread, post order; counts what it looked at in ``checked``."""
    findings = (
        _inline_images(archive, checked, None) + _attachments(archive, None)
        + _post_counts(archive)
    )
    order = {"post-count": 0, "missing-attachment": 1, "missing-inline": 2}
    findings.sort(key=lambda f: (f.group_id, f.thread_id, f.post_id or "", order[f.kind]))
    return findings


def incomplete_posts(archive: Archive, group_id: str) -> dict[str, set[str]]:
    """The group's posts, by thread, that the audit names for a missing attachment: what a
    full reconcile fetches again whatever their changeKey, so that its fix line holds."""
    found: dict[str, set[str]] = {}
    for finding in _inline_images(archive, None, group_id) + _attachments(archive, group_id):
        found.setdefault(finding.thread_id, set()).add(str(finding.post_id))
    return found


def _inline_images(
    archive: Archive, checked: dict[str, int] | None, group_id: str | None
) -> list[Finding]:
    refs = 0
    findings: list[Finding] = []
    rows = queries.posts_with_cid_references(archive, group_id)
    for post_id, group, thread_id, body, note in rows:
        wanted = content_ids(body)
        refs += len(wanted)
        if not wanted or note is not None:
            continue
        own = {same_content_id(c) for c in queries.attachment_content_ids(archive, post_id)}
        missing = [c for c in wanted if same_content_id(c) not in own]
        findings.extend(
            Finding("missing-inline", group, thread_id, post_id, {"cid": cid},
                    _full_sync(group))
            for cid in missing
        )  # fmt: skip
    if checked is not None:
        checked["inline_references"] = refs
    return findings


def _attachments(archive: Archive, group_id: str | None) -> list[Finding]:
    rows = queries.posts_missing_attachments(archive, group_id)
    return [
        Finding("missing-attachment", group_id, thread_id, post_id, {}, _full_sync(group_id))
        for post_id, group_id, thread_id in rows
    ]


def _post_counts(archive: Archive) -> list[Finding]:
    rows = queries.threads_with_other_post_counts(archive)
    return [
        Finding("post-count", group_id, thread_id, None,
                {"archived": archived, "graph": listed}, _full_sync(group_id))
        for group_id, thread_id, listed, archived in rows
    ]  # fmt: skip
