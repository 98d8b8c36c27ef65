"""The in-memory tenant: lookups and the mutations behind Graph's write operations.

Not thread-safe by itself: the Simulator holds one lock around every request and helper.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

from .data import (
    JSON,
    DataError,
    IdFactory,
    format_dt,
    later_than,
    normalise_attachment,
    normalise_conversations,
    normalise_extension,
    now_utc,
    read_json,
    recipient,
    recompute_conversation,
    recompute_thread,
    write_json_atomic,
)


def is_guid(value: str) -> bool:
    """Directory object ids are GUIDs in the 8-4-4-4-12 form."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


class TenantState:
    """The directory (users, roles, groups) and every group's conversations.

    Parameters: ``data_dir`` (a folder in the sample_data format), ``tenant`` (tenant.json),
    ``groups`` (the group objects, ``@sim.members`` included), ``mailboxes`` (group id to its
    conversations, each nesting threads and posts as in the group files), ``ids``.
    """

    def __init__(
        self,
        data_dir: Path,
        tenant: JSON,
        groups: list[JSON],
        mailboxes: dict[str, list[JSON]],
        ids: IdFactory,
    ) -> None:
        self.data_dir = data_dir
        self.tenant = tenant
        self.groups: dict[str, JSON] = {g["id"].lower(): g for g in groups}
        self.mailboxes = mailboxes
        self.ids = ids
        self.users: dict[str, JSON] = {u["id"].lower(): u for u in tenant.get("users", [])}
        self._threads: dict[str, dict[str, tuple[JSON, JSON]]] = {}
        for gid in self.mailboxes:
            self._reindex(gid)

    @classmethod
    def load(cls, data_dir: str | Path, seed: int = 0) -> TenantState:
        """Read tenant.json, groups.json and groups/<id>.json, and derive the summary fields."""
        data_dir = Path(data_dir)
        tenant = read_json(data_dir / "tenant.json")
        if not isinstance(tenant, dict) or not isinstance(tenant.get("users"), list):
            raise DataError(f"{data_dir / 'tenant.json'}: needs 'me' and a 'users' list")
        if str(tenant.get("me", "")).lower() not in {str(u.get("id")).lower() for u in
                                                    tenant["users"]}:
            raise DataError(f"{data_dir / 'tenant.json'}: 'me' is not one of the users")
        groups_doc = read_json(data_dir / "groups.json")
        groups = groups_doc.get("value") if isinstance(groups_doc, dict) else None
        if not isinstance(groups, list) or not all(
            isinstance(g, dict) and g.get("id") for g in groups
        ):
            raise DataError(f"{data_dir / 'groups.json'}: needs {{'value': [group, ...]}}")
        ids = IdFactory(seed)
        mailboxes: dict[str, list[JSON]] = {}
        for group in groups:
            path = data_dir / "groups" / f"{group['id']}.json"
            conversations: Any = []
            if path.exists():
                doc = read_json(path)
                if not isinstance(doc, dict):
                    raise DataError(f"{path}: needs {{'conversations': [...]}}")
                conversations = doc.get("conversations", [])
            mailboxes[group["id"].lower()] = normalise_conversations(
                conversations, data_dir, group, ids, path
            )
        return cls(data_dir, tenant, groups, mailboxes, ids)

    # -- lookups ----------------------------------------------------------------------------

    @property
    def me(self) -> JSON:
        """The signed-in user of delegated tokens."""
        return self.users[str(self.tenant["me"]).lower()]

    def user(self, key: str) -> JSON | None:
        """A user by id or userPrincipalName, as ``/users/{id}`` accepts both."""
        found = self.users.get(key.lower())
        if found is not None:
            return found
        for user in self.users.values():
            if str(user.get("userPrincipalName", "")).lower() == key.lower():
                return user
        return None

    def group(self, gid: str) -> JSON | None:
        """The group object (with ``@sim.*`` keys) or None."""
        return self.groups.get(gid.lower())

    def is_member(self, gid: str, user_id: str) -> bool:
        """Whether ``user_id`` is listed in the group's ``@sim.members``."""
        group = self.group(gid) or {}
        return user_id.lower() in {str(m).lower() for m in group.get("@sim.members", [])}

    def member_groups(self, user_id: str) -> list[JSON]:
        """Groups the user belongs to, in groups.json order."""
        return [g for g in self.groups.values() if self.is_member(g["id"], user_id)]

    def conversations(self, gid: str) -> list[JSON]:
        """The group's conversations (live objects)."""
        return self.mailboxes.setdefault(gid.lower(), [])

    def conversation(self, gid: str, cid: str) -> JSON | None:
        """One conversation, or None."""
        return next((c for c in self.conversations(gid) if c["id"] == cid), None)

    def threads(self, gid: str) -> list[JSON]:
        """Every thread of the group, across conversations."""
        return [t for c in self.conversations(gid) for t in c["threads"]]

    def thread(self, gid: str, tid: str) -> tuple[JSON, JSON] | None:
        """``(conversation, thread)`` or None."""
        return self._threads.get(gid.lower(), {}).get(tid)

    def post(self, gid: str, tid: str, pid: str) -> tuple[JSON, JSON, JSON] | None:
        """``(conversation, thread, post)`` or None."""
        found = self.thread(gid, tid)
        if found is None:
            return None
        conv, thread = found
        post = next((p for p in thread["posts"] if p["id"] == pid), None)
        return None if post is None else (conv, thread, post)

    def post_in_conversation(self, conv: JSON, pid: str) -> JSON | None:
        """A post anywhere in the conversation (``inReplyTo`` may cross threads)."""
        for thread in conv["threads"]:
            for post in thread["posts"]:
                if post["id"] == pid:
                    return post
        return None

    def group_sender(self, gid: str) -> JSON:
        """Group posts come ``from`` the group itself."""
        group = self.group(gid) or {}
        return recipient(group.get("displayName"), group.get("mail"))

    def user_recipient(self, user: JSON) -> JSON:
        """A user as a post's ``sender``."""
        return recipient(user.get("displayName"), user.get("mail") or user.get("userPrincipalName"))

    # -- mutations --------------------------------------------------------------------------

    def new_post(self, gid: str, thread: JSON | None, fields: JSON, sender: JSON) -> JSON:
        """A post stamped now: fresh id and changeKey, ``from`` the group, ``sender`` given.

        ``receivedDateTime`` is kept strictly after the thread's newest post so that a reply
        always moves ``lastDeliveredDateTime``, even within the same second.
        """
        fields = copy.deepcopy(fields)
        floor = thread["lastDeliveredDateTime"] if thread and thread["posts"] else None
        stamp = format_dt(later_than(floor, now_utc()))
        post: JSON = {
            "id": self.ids.new("post"),
            "changeKey": self.ids.change_key(),
            "createdDateTime": stamp,
            "lastModifiedDateTime": stamp,
            "receivedDateTime": stamp,
            "categories": list(fields.get("categories") or []),
            "body": fields.get("body") or {"contentType": "html", "content": ""},
            "from": self.group_sender(gid),
            "sender": sender,
            "newParticipants": list(fields.get("newParticipants") or []),
            "extensions": [normalise_extension(e) for e in fields.get("extensions") or []],
            "attachments": [],
        }
        for key in ("createdDateTime", "receivedDateTime", "lastModifiedDateTime", "from"):
            if key in fields:
                post[key] = fields[key]
        if fields.get("@sim.inReplyTo"):
            post["@sim.inReplyTo"] = fields["@sim.inReplyTo"]
        for att in fields.get("attachments") or []:
            post["attachments"].append(
                normalise_attachment(att, self.data_dir, post["lastModifiedDateTime"], self.ids)
            )
        return post

    def create_thread(
        self, gid: str, topic: str | None, posts: list[JSON], sender: JSON,
        conversation: JSON | None = None,
    ) -> tuple[JSON, JSON]:
        """A new thread with its posts, in ``conversation`` or in a new one."""
        if conversation is None:
            conversation = {"id": self.ids.new("conversation"), "topic": topic or "",
                            "threads": []}
            self.conversations(gid).append(conversation)
        thread: JSON = {
            "id": self.ids.new("thread"),
            "topic": topic or conversation["topic"],
            "isLocked": False,
            "toRecipients": [],
            "ccRecipients": [],
            "posts": [],
        }
        conversation["threads"].append(thread)
        for fields in posts:
            self.append_post(gid, conversation, thread, fields, sender)
        self._reindex(gid)
        return conversation, thread

    def append_post(
        self, gid: str, conv: JSON, thread: JSON, fields: JSON, sender: JSON
    ) -> JSON:
        """Add a post to a thread; its new participants join the thread's recipients."""
        post = self.new_post(gid, thread, fields, sender)
        thread["posts"].append(post)
        known = {_address(r) for r in thread["toRecipients"] + thread["ccRecipients"]}
        for participant in post["newParticipants"]:
            if _address(participant) not in known:
                thread["toRecipients"].append(participant)
                known.add(_address(participant))
        self._refresh(conv, thread)
        return post

    def edit_post(
        self, conv: JSON, thread: JSON, post: JSON, *, content: str | None = None,
        categories: list[str] | None = None,
    ) -> None:
        """An upstream edit: new changeKey and lastModifiedDateTime, delivery time untouched."""
        if content is not None:
            body = dict(post.get("body") or {"contentType": "html"})
            body["content"] = content
            post["body"] = body
        if categories is not None:
            post["categories"] = list(categories)
        self._touch(post)
        self._refresh(conv, thread)

    def add_attachment(self, conv: JSON, thread: JSON, post: JSON, att: JSON) -> JSON:
        """Attach to an existing post, which makes it a new version of that post."""
        self._touch(post)
        stored = normalise_attachment(att, self.data_dir, post["lastModifiedDateTime"], self.ids)
        post["attachments"].append(stored)
        self._refresh(conv, thread)
        return stored

    def set_locked(self, thread: JSON, locked: bool) -> None:
        """PATCH isLocked."""
        thread["isLocked"] = locked

    def delete_thread(self, gid: str, conv: JSON, thread: JSON) -> None:
        """Remove a thread; a conversation left without threads goes too."""
        conv["threads"] = [t for t in conv["threads"] if t is not thread]
        if conv["threads"]:
            recompute_conversation(conv)
        else:
            self.delete_conversation(gid, conv)
        self._reindex(gid)

    def delete_conversation(self, gid: str, conv: JSON) -> None:
        """Remove a conversation and all its threads."""
        self.mailboxes[gid.lower()] = [c for c in self.conversations(gid) if c is not conv]
        self._reindex(gid)

    def save_group(self, gid: str) -> None:
        """Write the group's file back in the sample_data format (atomically)."""
        group = self.group(gid)
        if group is None:
            return
        doc = {"conversations": copy.deepcopy(self.conversations(gid))}
        write_json_atomic(self.data_dir / "groups" / f"{group['id']}.json", doc)

    # -- internals --------------------------------------------------------------------------

    def _touch(self, post: JSON) -> None:
        post["changeKey"] = self.ids.change_key()
        post["lastModifiedDateTime"] = format_dt(
            later_than(post.get("lastModifiedDateTime"), now_utc())
        )

    def _refresh(self, conv: JSON, thread: JSON) -> None:
        recompute_thread(thread, conv["id"])
        recompute_conversation(conv)

    def _reindex(self, gid: str) -> None:
        self._threads[gid.lower()] = {
            t["id"]: (c, t) for c in self.conversations(gid) for t in c["threads"]
        }


def _address(rec: Any) -> str:
    try:
        return str(rec["emailAddress"]["address"]).lower()
    except (KeyError, TypeError):
        return ""
