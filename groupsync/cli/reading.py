"""The connector's read actions, answered from the archive (or Graph with --live)."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from .. import reads
from ..archive import Archive
from ..errors import TransportError
from ..sync import POST_SELECT
from ..terminal import json_text, safe_text
from .base import (
    _access_checked,
    _bundle,
    _check_id_param,
    _log_access,
    cli,
    echo_json,
    echo_table,
    group_argument,
    id_argument,
    settings_from,
    table_option,
)
from .signin import _client

GROUP_COLUMNS = ["id", "displayName", "mail", "visibility"]
CONVERSATION_COLUMNS = ["lastDeliveredDateTime", "topic", "uniqueSenders", "hasAttachments", "id"]
THREAD_COLUMNS = [
    "lastDeliveredDateTime",
    "topic",
    "uniqueSenders",
    "isLocked",
    "hasAttachments",
    "id",
]
POST_COLUMNS = ["receivedDateTime", "sender", "text", "hasAttachments", "id"]
VERSION_COLUMNS = ["first_seen_at", "lastModifiedDateTime", "changeKey", "sha256"]
ATTACHMENT_COLUMNS = ["name", "type", "contentType", "size", "isInline", "stored", "id"]
SAVED_COLUMNS = ["name", "path", "size", "skipped"]


@dataclasses.dataclass(frozen=True)
class Read:
    """What ``read_options`` gives a read command: where to read, and how to print it."""

    ctx: click.Context
    live: bool
    include_deleted: bool
    as_table: bool

    def archive_only(self, **flags: bool) -> None:
        """Tombstones, versions and stored bytes exist only in the archive."""
        used = [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]
        if self.live and used:
            raise click.UsageError(f"{used[0]} reads the archive; it does not go with --live")

    def echo(
        self, ask_graph, read_archive, columns, *, row=None, note=None, marked=True, log=None
    ):
        """Print one item or a list: from the archive opened read-only, or with --live from
        Graph, falling back to the archive (said on stderr) when Graph cannot be reached.

        ``row`` shapes a table row; ``note(archive)`` is a remark printed after;
        ``marked`` False leaves out the table's deleted column (rows that are not items);
        ``log`` (action, target) writes an access-log row before anything is printed.
        """
        settings = settings_from(self.ctx)
        if log is not None:
            _access_checked(settings.db)
        if self.live:
            try:
                with _client(self.ctx, settings) as graph:
                    found = ask_graph(graph)
                    found = found if isinstance(found, dict) else list(found)
            except TransportError:
                if not Path(settings.db).exists():
                    raise
                where = f"offline: {self.ctx.info_name} from the archive {settings.db}"
                click.echo(safe_text(where), err=True)
            else:
                if log is not None:
                    action, target = log
                    _log_access(settings.db, action, target,
                                1 if isinstance(found, dict) else len(found))  # fmt: skip
                self._print(found, columns, row, marked)
                return
        with Archive(settings.db, readonly=True) as archive:
            found = read_archive(archive)
            if log is not None:
                found = found if isinstance(found, dict) else list(found)
                action, target = log
                _log_access(settings.db, action, target,
                            1 if isinstance(found, dict) else len(found))  # fmt: skip
            self._print(found, columns, row, marked)
            remark = note(archive) if note else None
        if remark:
            click.echo(safe_text(f"Note: {remark}"), err=True)

    def _print(self, found, columns, row, marked) -> None:
        """JSON (a list streamed, one item in memory at a time), or a table for people."""
        one = isinstance(found, dict)
        if self.as_table:
            rows = [row(r) if row else r for r in ([found] if one else found)]
            echo_table(rows, columns, self.include_deleted and marked)
        elif one:
            echo_json(found)
        else:
            _echo_json_stream(found)


def read_options(f):
    """--live, --include-deleted and --table, checked, as one ``read`` argument."""

    @functools.wraps(f)
    def command(*args, live, offline, include_deleted, as_table, **kwargs):
        if live and offline:
            raise click.UsageError("--live and --offline do not go together")
        read = Read(click.get_current_context(), live, include_deleted, as_table)
        read.archive_only(include_deleted=include_deleted)
        return f(*args, read=read, **kwargs)

    return _bundle(
        click.option(
            "--live",
            is_flag=True,
            help="Ask Graph instead (the archive answers if Graph cannot be reached).",
        ),
        # The archive was the fallback of groups and group before it was the default.
        click.option("--offline", is_flag=True, hidden=True),
        click.option(
            "--include-deleted",
            is_flag=True,
            help="Archive only: also items deleted upstream, marked with @removed.",
        ),
        table_option,
    )(command)


def _entity(item: dict[str, Any]) -> dict[str, Any]:
    """A Graph entity without its ``@odata.context``, as a collection item looks."""
    return {k: v for k, v in item.items() if k != "@odata.context"}


def _post_row(post: dict[str, Any]) -> dict[str, Any]:
    sender = (post.get("sender") or post.get("from") or {}).get("emailAddress") or {}
    purged = post.get("@groupsync.purged")
    text = reads.body_text(post.get("body"), 60)
    if purged:  # a retention purge removed it: say so rather than show an empty body
        text = f"[purged {purged.get('purgedDateTime')} by purge {purged.get('purgeId')}]"
    return {**post, "sender": sender.get("name") or sender.get("address"), "text": text}


def _attachment_row(attachment: Mapping[str, Any]) -> dict[str, Any]:
    """A table row; the bytes themselves are dropped at once (a table shows no content)."""
    kind = (attachment.get("@odata.type") or "").rsplit(".", 1)[-1]
    row = {k: v for k, v in attachment.items() if k != "contentBytes"}
    return {**row, "type": kind, "stored": "contentBytes" in attachment}


def _echo_json_stream(items: Iterable[dict[str, Any]]) -> None:
    """``{"value": [...]}`` as ``echo_json`` prints it, one item in memory at a time."""
    first = True
    for item in items:
        text = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n    ")
        click.echo(('{\n  "value": [\n    ' if first else ",\n    ") + json_text(text), nl=False)
        first = False
    click.echo('{\n  "value": []\n}' if first else "\n  ]\n}")


@cli.command()
@click.option(
    "--all",
    "all_groups",
    is_flag=True,
    help="Every Microsoft 365 group of the tenant, from Graph (implies --live).",
)
@read_options
def groups(all_groups, read):
    """The archived groups; with --live the groups the identity is a member of (the
    connector's group list)."""
    if all_groups and read.include_deleted:
        raise click.UsageError("--include-deleted reads the archive; it does not go with --all")
    if all_groups:  # only Graph knows the groups nobody archived
        read = dataclasses.replace(read, live=True)
    read.echo(
        lambda graph: graph.list_groups() if all_groups else graph.list_member_of(),
        lambda archive: reads.iter_groups(archive, include_deleted=read.include_deleted),
        GROUP_COLUMNS,
    )


@cli.command()
@group_argument
@read_options
def group(group_id, read):
    """One group (id, nickname, address or display name); with --live by id also a public
    group you are not a member of and have not archived."""
    read.echo(
        lambda graph: graph.get_group(group_id),
        lambda archive: reads.get_group(archive, group_id, include_deleted=read.include_deleted),
        GROUP_COLUMNS,
    )


@cli.command()
@group_argument
@read_options
def conversations(group_id, read):
    """List group conversations, newest first (from the archive; --live asks Graph)."""
    read.echo(
        lambda graph: graph.list_conversations(group_id),
        lambda archive: reads.iter_conversations(
            archive, group_id, include_deleted=read.include_deleted
        ),
        CONVERSATION_COLUMNS,
    )


@cli.command()
@group_argument
@id_argument("conversation_id")
@read_options
def conversation(group_id, conversation_id, read):
    """Get a conversation (from the archive; --live asks Graph)."""
    read.echo(
        lambda graph: _entity(graph.get_conversation(group_id, conversation_id)),
        lambda archive: reads.get_conversation(
            archive, group_id, conversation_id, include_deleted=read.include_deleted
        ),
        CONVERSATION_COLUMNS,
    )


@cli.command()
@group_argument
@click.option(
    "--conversation",
    "conversation_id",
    callback=_check_id_param,
    help="Only the threads of this conversation.",
)
@read_options
def threads(group_id, conversation_id, read):
    """List threads of a group (or of one conversation), newest first."""
    read.echo(
        lambda graph: graph.list_threads(
            group_id, conversation_id=conversation_id, select=list(reads.THREAD_FIELDS)
        ),
        lambda archive: reads.iter_threads(
            archive, group_id, conversation_id=conversation_id,
            include_deleted=read.include_deleted,
        ),
        THREAD_COLUMNS,
    )


@cli.command()
@group_argument
@id_argument("thread_id")
@read_options
def thread(group_id, thread_id, read):
    """Get a thread, with its recipients (from the archive; --live asks Graph)."""
    read.echo(
        lambda graph: _entity(
            graph.get_thread(group_id, thread_id, select=list(reads.THREAD_FIELDS))
        ),
        lambda archive: reads.get_thread(
            archive, group_id, thread_id, include_deleted=read.include_deleted
        ),
        THREAD_COLUMNS,
        log=("thread", f"{group_id}/{thread_id}"),
    )


@cli.command()
@group_argument
@id_argument("thread_id")
@read_options
def posts(group_id, thread_id, read):
    """List the posts of a thread, oldest first, each its latest version."""
    read.echo(
        lambda graph: graph.list_posts(group_id, thread_id, select=POST_SELECT),
        lambda archive: reads.iter_posts(
            archive, group_id, thread_id, include_deleted=read.include_deleted
        ),
        POST_COLUMNS,
        row=_post_row,
        log=("thread", f"{group_id}/{thread_id}"),
    )


@cli.command()
@group_argument
@id_argument("thread_id")
@id_argument("post_id")
@click.option("--versions", is_flag=True, help="Every version archived, oldest first.")
@read_options
def post(group_id, thread_id, post_id, versions, read):
    """Get a post; with --versions every version the archive has seen, verifiable by SHA-256."""
    read.archive_only(versions=versions)
    ids = (group_id, thread_id, post_id)
    if versions:
        read.echo(
            None,
            lambda archive: reads.iter_post_versions(
                archive, *ids, include_deleted=read.include_deleted
            ),
            VERSION_COLUMNS,
            row=lambda v: {**v, **v["@groupsync.version"]},
            log=("thread", "/".join(ids)),
        )
        return
    read.echo(
        lambda graph: _entity(graph.get_post(*ids, select=POST_SELECT)),
        lambda archive: reads.get_post(archive, *ids, include_deleted=read.include_deleted),
        POST_COLUMNS,
        row=_post_row,
        log=("thread", "/".join(ids)),
    )


@cli.command()
@group_argument
@id_argument("thread_id")
@id_argument("post_id")
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False),
    help="Write each attachment's bytes into this folder (safe, unique file names).",
)
@read_options
def attachments(group_id, thread_id, post_id, save_dir, read):
    """List a post's attachments (file contents as base64 contentBytes), or --save them."""
    read.archive_only(save=save_dir is not None)
    ids = (group_id, thread_id, post_id)

    def note(archive):
        return reads.attachments_note(archive, *ids)

    if save_dir is not None:
        db = settings_from(read.ctx).db
        _access_checked(db)

        def save(archive):
            saved = []
            for s in reads.save_attachments(
                archive, *ids, save_dir, include_deleted=read.include_deleted
            ):
                if s.sha256 is not None:
                    _log_access(db, "download", s.sha256, 1)
                saved.append(s.as_dict())
            return saved

        read.echo(
            None,
            save,
            SAVED_COLUMNS,
            note=note,
            marked=False,
        )
        return
    read.echo(
        lambda graph: graph.list_attachments(*ids),
        lambda archive: reads.iter_attachments(
            archive, *ids, include_deleted=read.include_deleted
        ),
        ATTACHMENT_COLUMNS,
        row=_attachment_row,
        note=note,
    )




