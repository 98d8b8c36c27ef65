"""The connector's write actions, queued offline; the outbox and ``send``."""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import auth
from ..archive import Archive
from ..connect import SENDS_PER_MINUTE, sending_cap
from ..errors import ValidationError
from ..lock import WriterLock
from ..outbox import Draft, Outbox
from ..stopping import stopping
from ..terminal import safe_text
from .base import (
    _bundle,
    _check_id_param,
    cli,
    echo_json,
    echo_table,
    group_argument,
    id_argument,
    settings_from,
    table_option,
)
from .signin import _client


def message_options(f):
    """The message of every post-creating write: exactly one of --content, --content-file
    or --text, with attachments, participants and categories, as one ``draft`` argument
    (the outbox checks it further when it is queued)."""

    @functools.wraps(f)
    def command(*args, content, content_file, text, attach, to, category, **kwargs):
        if sum(v is not None for v in (content, content_file, text)) != 1:
            raise click.UsageError("give exactly one of --content, --content-file or --text")
        if content_file is not None:
            try:
                content = Path(content_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as ex:
                raise ValidationError(f"cannot read {content_file}: {ex}") from None
        draft = Draft(
            content=text if text is not None else content,
            content_type="text" if text is not None else "html",
            to=list(to),
            categories=list(category),
            attachments=[Path(a) for a in attach],
        )
        return f(*args, draft=draft, **kwargs)

    return _bundle(
        click.option("--content", help="The message as HTML."),
        click.option(
            "--content-file",
            type=click.Path(dir_okay=False),
            help="Read the HTML message from a file.",
        ),
        click.option("--text", help="The message as plain text."),
        click.option(
            "--attach",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="Attach a file (under 3 MB); repeat for several.",
        ),
        click.option("--to", multiple=True, help="Add a participant; repeat for several."),
        click.option("--category", multiple=True, help="A category; repeat for several."),
    )(command)


def _queue(ctx, action, group_id, draft, **targets):
    settings = settings_from(ctx)
    with Archive.open_for_writing(settings.db) as archive:
        outbox = Outbox(
            archive,
            identity=auth.audit_identity(settings),
            app_only=auth.is_app_only(settings),
        )
        item = outbox.queue(action, group_id, draft, **targets)
    echo_json(_item_summary(item))


def _item_summary(item):
    keys = (
        "id",
        "action",
        "state",
        "group_id",
        "conversation_id",
        "thread_id",
        "post_id",
        "topic",
        "attempts",
        "last_error",
        "request_id",
        "created_at",
        "sent_at",
        "result",
    )
    return {k: item.get(k) for k in keys}


@cli.command(name="new-conversation")
@group_argument
@click.option("--topic", required=True, help="The conversation's subject.")
@message_options
@click.pass_context
def new_conversation(ctx, group_id, topic, draft):
    """Create a new conversation in a group (queued; `groupsync send` delivers it)."""
    _queue(ctx, "new-conversation", group_id, dataclasses.replace(draft, topic=topic))


@cli.command(name="new-thread")
@group_argument
@click.option(
    "--conversation",
    "conversation_id",
    callback=_check_id_param,
    help="Add the thread to this conversation.",
)
@click.option("--topic", required=True, help="The thread's subject.")
@message_options
@click.pass_context
def new_thread(ctx, group_id, conversation_id, topic, draft):
    """Start a new conversation by creating a thread, or add a thread to --conversation."""
    draft = dataclasses.replace(draft, topic=topic)
    _queue(ctx, "new-thread", group_id, draft, conversation_id=conversation_id)


@cli.command()
@group_argument
@id_argument("thread_id")
@click.option(
    "--post",
    "post_id",
    callback=_check_id_param,
    help="Reply to this post rather than to the thread.",
)
@message_options
@click.pass_context
def reply(ctx, group_id, thread_id, post_id, draft):
    """Reply to a conversation thread, or to one of its posts with --post."""
    action = "reply-to-post" if post_id else "reply-to-thread"
    _queue(ctx, action, group_id, draft, thread_id=thread_id, post_id=post_id)


@cli.command()
@group_argument
@id_argument("thread_id")
@id_argument("post_id")
@click.option("--to", multiple=True, required=True, help="A recipient; repeat for several.")
@click.option("--comment", help="A note above the forwarded post.")
@click.pass_context
def forward(ctx, group_id, thread_id, post_id, to, comment):
    """Forward a post to e-mail addresses."""
    draft = Draft(to=list(to), comment=comment)
    _queue(ctx, "forward", group_id, draft, thread_id=thread_id, post_id=post_id)


@cli.command(name="delete-thread")
@group_argument
@id_argument("thread_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete_thread(ctx, group_id, thread_id, yes):
    """Delete a conversation thread (asks first on a terminal)."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("deleting a thread needs --yes when not on a terminal")
        click.confirm(
            safe_text(f"Delete thread {thread_id} for everyone in the group?"), abort=True
        )
    _queue(ctx, "delete-thread", group_id, Draft(), thread_id=thread_id)


OUTBOX_COLUMNS = ["id", "action", "state", "attempts", "created_at", "sent_at", "last_error"]


@cli.group(invoke_without_command=True)
@click.option(
    "--state", type=click.Choice(["queued", "sending", "sent", "failed", "cancelled", "uncertain"])
)
@table_option
@click.pass_context
def outbox(ctx, state, as_table):
    """The queued writes: list them, or show, cancel or retry one."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(ctx)
    with Archive.open_for_writing(settings.db) as archive:
        items = [_item_summary(i) for i in Outbox(archive).iter_items(state)]
    if as_table:
        echo_table(items, OUTBOX_COLUMNS)
    else:
        echo_json({"value": items})


@outbox.command(name="show")
@click.argument("item_id", type=int)
@click.pass_context
def outbox_show(ctx, item_id):
    """One item: its request body (attachments by hash) and its history."""
    settings = settings_from(ctx)
    with Archive.open_for_writing(settings.db) as archive:
        box = Outbox(archive)
        item = box.get(item_id)
        item["history"] = box.history(item_id)
    echo_json(item)


@outbox.command(name="cancel")
@click.argument("item_id", type=int)
@click.pass_context
def outbox_cancel(ctx, item_id):
    """Drop an item that has not been sent."""
    _outbox_transition(ctx, lambda box: box.cancel(item_id))


@outbox.command(name="retry")
@click.argument("item_id", type=int)
@click.pass_context
def outbox_retry(ctx, item_id):
    """Queue a failed item again, or resend an uncertain forward."""
    _outbox_transition(ctx, lambda box: box.retry(item_id))


def _outbox_transition(ctx, change: Callable[[Outbox], dict[str, Any]]) -> None:
    """One audited change of an outbox item, printed as its summary."""
    settings = settings_from(ctx)
    with Archive.open_for_writing(settings.db) as archive:
        box = Outbox(archive, identity=auth.audit_identity(settings))
        echo_json(_item_summary(change(box)))


send_options = _bundle(
    click.option(
        "--max-per-minute",
        default=SENDS_PER_MINUTE,
        show_default=True,
        type=click.IntRange(0),
        help="Messages sent per minute at most (Exchange's cap); 0 = no cap.",
    ),
    click.option(
        "--reconcile-delay",
        default=10.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="Seconds an uncertain item waits before it is looked for upstream.",
    ),
    click.option(
        "--no-wait", is_flag=True, help="Leave items waiting for a retry queued instead of waiting."
    ),
)


def _say_stopping(signum: int) -> None:
    click.echo("Stopping after the message in flight (Ctrl-C again to quit now)", err=True)


def replay_outbox(
    settings, graph, max_per_minute=SENDS_PER_MINUTE, reconcile_delay=10.0, no_wait=True
):
    """Send the queue; the first Ctrl-C finishes the item in flight, then stops."""
    with (
        stopping((signal.SIGINT,), on_stop=_say_stopping) as stop,
        sending_cap(settings, max_per_minute) as cap,
        Archive.open_for_writing(settings.db) as archive,
    ):
        box = Outbox(
            archive, identity=auth.audit_identity(settings), reconcile_delay=reconcile_delay
        )
        return box.send(graph, sending_cap=cap, stop=stop, wait=not no_wait)


@cli.command()
@send_options
@table_option
@click.pass_context
def send(ctx, max_per_minute, reconcile_delay, no_wait, as_table):
    """Replay the outbox through the throttle, each item exactly once."""
    settings = settings_from(ctx)
    with WriterLock(settings.db, "groupsync send"), _client(ctx, settings) as graph:
        report = replay_outbox(settings, graph, max_per_minute, reconcile_delay, no_wait)
    summary = {k: v for k, v in report.__dict__.items() if k != "items"}
    if as_table:
        echo_table([summary], list(summary))
    else:
        echo_json({**summary, "items": report.items})
    if report.failed:
        raise click.exceptions.Exit(1)


