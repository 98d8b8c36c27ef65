"""The ``groupsync`` command: parse options, call the library, print."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from . import access, auth, reads
from .archive import Archive, writable
from .config import THROTTLE_PROFILES, cli_actor, load_settings, parse_rate
from .connect import SENDS_PER_MINUTE, connect, sending_cap
from .errors import ArchiveError, GroupsyncError, TransportError, ValidationError
from .events import (
    EVENT_STATES,
    HookOutputLog,
    ShellHook,
    event_payload,
    hook_output_path,
    iter_events,
)
from .export import FORMATS, PARTIAL_EXIT, ExportOptions, parse_bound
from .export import export as export_archive
from .export_check import check_export
from .groupref import GroupSelection, resolve_group
from .ids import check_id
from .integrity import loose_permissions
from .integrity import verify as verify_archive
from .lock import WriterLock
from .outbox import Draft, Outbox
from .production import DEFAULT_PREFIX, ProductionOptions, check_prefix, posts_matching, produce
from .shards import parse_shard
from .simulator import SimulatorOptions, run_server
from .stopping import stopping
from .sync import POST_SELECT, Syncer, SyncOptions
from .terminal import json_text, safe_text
from .version import __version__
from .watch import Watcher, WatchOptions, parse_duration


class GroupsyncGroup(click.Group):
    """Turns every ``GroupsyncError`` into one line on stderr and its exit code.

    Error messages quote ids and mail text, so they go through ``safe_text`` like
    everything else printed for people.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Arguments that are not UTF-8, and the top-level options' errors (which ``invoke``
        does not see), each as one line."""
        # Bytes that are not UTF-8 reach Python as surrogates (PEP 383), which SQLite,
        # JSON and Graph all refuse deep inside: refuse them here, in one line.
        for number, arg in enumerate(args, 1):
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raw = arg.encode("utf-8", "surrogateescape")
                click.echo(
                    f"Error: argument {number} is not UTF-8 text: {raw!r} "
                    "(ids, paths and text are taken as UTF-8)",
                    err=True,
                )
                ctx.exit(2)
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as ex:  # the top-level options' errors, the same way
            _usage_error(ex)
            raise  # not reached: _usage_error exits

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GroupsyncError as ex:
            lines = str(ex).split("\n") if ex.multiline else [str(ex)]
            click.echo("\n".join(safe_text(line) for line in [f"Error: {lines[0]}", *lines[1:]]),
                       err=True)
            ctx.exit(ex.exit_code)
        except click.UsageError as ex:
            _usage_error(ex)
        except click.ClickException as ex:
            click.echo(f"Error: {safe_text(ex.format_message())}", err=True)
            ctx.exit(ex.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)



def _usage_error(ex: click.UsageError) -> None:
    """One line, like every other error; --help has the rest."""
    where = ex.ctx.command_path if ex.ctx else "groupsync"
    click.echo(f"Error: {safe_text(ex.format_message())} (see `{where} --help`)", err=True)
    raise click.exceptions.Exit(ex.exit_code)


def settings_from(ctx: click.Context, **flags: Any):
    """Effective settings: this command's flags over the global ones, env, file, defaults."""
    obj = ctx.find_root().obj or {}
    merged = {**obj.get("flags", {}), **{k: v for k, v in flags.items() if v is not None}}
    return load_settings(merged, config_path=obj.get("config"))


def echo_json(data: Any) -> None:
    click.echo(json_text(json.dumps(data, indent=2, ensure_ascii=False)))


def _access_checked(db) -> None:
    """Before a logged read: refuse now if the access log cannot be written, or say on
    stderr that it is off (GROUPSYNC_ACCESS_LOG=off), so no access goes unrecorded unseen."""
    if access.logging_off():
        click.echo("Note: access logging is off (GROUPSYNC_ACCESS_LOG=off).", err=True)
        return
    access.ensure_writable(db)


def _log_access(db, action: str, target: str | None, count: int | None) -> None:
    access.log_access(db, cli_actor(), action, target, count, "cli")


# Ids, paths and hashes are printed whole: an Exchange id cut short cannot be copied.
FULL_WIDTH = {"id", "path", "sha256", "changeKey", "post_id"}


def echo_table(
    rows: Iterable[dict[str, Any]], columns: list[str], include_deleted: bool = False
) -> None:
    """Rows as a table for people; long text cut to fit, ids whole."""
    rows = list(rows)
    if include_deleted:
        columns = [*columns, "deleted"]
        rows = [{**r, "deleted": r.get("@groupsync.deletedDateTime")} for r in rows]
    if not rows:
        click.echo("(none)")
        return
    cells = [
        [
            ("" if r.get(c) is None else safe_text(r[c])) if c in FULL_WIDTH else _cell(r.get(c))
            for c in columns
        ]
        for r in rows
    ]
    click.echo(tabulate(cells, headers=columns, tablefmt="simple"))


def _cell(value: Any) -> str:
    """A table cell: controls made visible (``safe_text``), then cut to 60 characters."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    text = safe_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _log_to_stderr(verbose: bool):
    if not verbose:
        return None
    return lambda event: click.echo(json.dumps(event), err=True)


table_option = click.option("--table", "as_table", is_flag=True, help="A table for people.")

GROUP_HELP = "A group: id, nickname, address or display name"


def _resolve_group_param(ctx, param, value):
    """A GROUP argument or --group option (one or several) as group ids, resolved from the
    archive before anything else runs: nothing is sent or written for a bad one."""
    if value is None or value == ():
        return value
    settings = settings_from(ctx)
    exists = Path(settings.db).exists()
    with Archive(settings.db, readonly=True) if exists else nullcontext() as archive:
        ids = tuple(
            check_id(resolve_group(archive, v), "group id")
            for v in (value if isinstance(value, tuple) else (value,))
        )
    return ids if isinstance(value, tuple) else ids[0]


def _check_id_param(ctx, param, value):
    """A conversation, thread or post id checked before any request or archive write."""
    return None if value is None else check_id(value, param.name.replace("_", " "))


def _bundle(*options):
    """One decorator applying ``options`` in the order given (as ``--help`` lists them)."""

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _shard_param(ctx, param, value):
    """``--shard K/N`` checked before anything is opened (one line, exit 2)."""
    return None if value is None else parse_shard(value)


group_argument = click.argument("group_id", metavar="GROUP", callback=_resolve_group_param)


def id_argument(name: str):
    return click.argument(name, callback=_check_id_param)


def archives_option(help: str):
    """``--archive`` (repeatable): several archives, a tenant's shards, instead of --db."""
    return click.option(
        "--archive", "archives", multiple=True, type=click.Path(dir_okay=False), help=help
    )


def group_selection_options(f):
    """--group (repeatable), --joined and --all, checked, as one ``selection`` argument."""

    @functools.wraps(f)
    def command(*args, group_ids, joined, all_groups, **kwargs):
        try:
            selection = GroupSelection(group_ids, joined, all_groups)
        except ValidationError as ex:
            raise click.UsageError(str(ex)) from None
        return f(*args, selection=selection, **kwargs)

    return _bundle(
        click.option(
            "--group",
            "group_ids",
            multiple=True,
            metavar="GROUP",
            callback=_resolve_group_param,
            help=f"{GROUP_HELP}; repeat for several.",
        ),
        click.option("--joined", is_flag=True, help="Every group the identity is a member of."),
        click.option("--all", "all_groups", is_flag=True, help="Every Microsoft 365 group."),
    )(command)


@click.group(cls=GroupsyncGroup)
@click.version_option(__version__, prog_name="groupsync")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="TOML settings file (default ./groupsync.toml if present).",
)
@click.option("--graph-url", help="Graph base URL [env GROUPSYNC_GRAPH_URL].")
@click.option("--db", help="Archive database [env GROUPSYNC_DB; default groupsync.db].")
@click.option("--rate", help="Throttle as CALLS/SECONDS, 0 = off [env GROUPSYNC_RATE; 100/60].")
@click.option("-v", "--verbose", is_flag=True, help="Log retries and throttling to stderr.")
@click.pass_context
def cli(ctx, config, graph_url, db, rate, verbose):
    """An offline, searchable, verifiable replica of Microsoft 365 Group mailboxes."""
    ctx.obj = {
        "config": config,
        "flags": {"graph_url": graph_url, "db": db, "rate": rate},
        "verbose": verbose,
    }


@cli.group(name="config")
def config_group():
    """Show the effective settings."""


@config_group.command(name="show")
@click.pass_context
def config_show(ctx):
    """Print the effective settings (secrets masked) and where each came from."""
    settings = settings_from(ctx)
    echo_json({"settings": settings.masked(), "sources": dict(settings.sources)})


def auth_options(f):
    """Who to sign in as, as the settings they override: one ``auth_flags`` argument."""

    @functools.wraps(f)
    def command(*args, tenant, client_id, client_secret, certificate, thumbprint, **kwargs):
        flags = {
            "tenant_id": tenant,
            "client_id": client_id,
            "client_secret": client_secret,
            "certificate_path": certificate,
            "certificate_thumbprint": thumbprint,
        }
        return f(*args, auth_flags=flags, **kwargs)

    return _bundle(
        click.option("--tenant", help="Directory (tenant) id [env GROUPSYNC_TENANT_ID]."),
        click.option("--client-id", help="Application (client) id [env GROUPSYNC_CLIENT_ID]."),
        click.option(
            "--client-secret",
            help="Client secret for --app; prefer env GROUPSYNC_CLIENT_SECRET over this flag.",
        ),
        click.option(
            "--certificate",
            type=click.Path(exists=True, dir_okay=False),
            help="Certificate (PEM or PFX) for --app [env GROUPSYNC_CERTIFICATE_PATH].",
        ),
        click.option("--thumbprint", help="SHA-1 thumbprint of a PEM certificate."),
    )(command)


@cli.command()
@click.option("--app", is_flag=True, help="Client credentials (app-only) for unattended archives.")
@auth_options
@click.pass_context
def login(ctx, app, auth_flags):
    """Sign in: device code for a person, or client credentials with --app."""
    settings = settings_from(ctx, **auth_flags, auth_mode="app" if app else None)
    if settings.auth_mode == "app":
        identity = auth.login_app(settings)
    else:
        identity = auth.login_device(
            settings, lambda message: click.echo(safe_text(message), err=True)
        )
    click.echo(safe_text(f"Signed in: {_identity_line(identity)}"), err=True)


@cli.command()
@click.pass_context
def logout(ctx):
    """Forget the cached tokens (deletes the token cache file)."""
    settings = settings_from(ctx)
    removed = auth.logout(settings)
    click.echo("Signed out." if removed else "Nothing to sign out of.", err=True)


@cli.command()
@click.option("--live", is_flag=True, help="Also ask Graph who the token belongs to (/me).")
@click.pass_context
def whoami(ctx, live):
    """Show the identity whose tokens are cached (never the tokens)."""
    settings = settings_from(ctx)
    if settings.access_token:
        identity: dict[str, Any] = {"mode": "access-token"}
    else:
        identity = auth.whoami(settings)
    if live:
        with _client(ctx, settings) as graph:
            me = graph.get_me()
        identity["me"] = {k: me.get(k) for k in ("id", "displayName", "userPrincipalName", "mail")}
    echo_json(identity)


def _identity_line(identity: dict[str, Any]) -> str:
    who = identity.get("username") or identity.get("app_id") or "unknown"
    return f"{who} ({identity.get('mode')}, tenant {identity.get('tenant_id')})"


def _client(ctx, settings, token=None):
    return connect(
        settings, token=token, log=_log_to_stderr(ctx.find_root().obj.get("verbose", False))
    )


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


class Progress:
    """Progress on stderr, on a terminal only: a sync's status line rewritten in place,
    then the search index's bar. The library reports through it as a plain callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.width = 0
        self.group = "group"
        self.bar: Any = None
        self.done = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._clear_line()
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if event.get("stage") in ("index", "done"):
            self._index(event)
        else:
            self._sync(event)

    def _sync(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and event.get("stage") not in ("group", "group-done"):
            return
        self.last = now
        counts = event.get("group_counts")
        if event.get("stage") == "group-done" and counts is not None:
            # A finished group gets a line of its own above the run's status line.
            self._clear_line()
            click.echo(
                safe_text(
                    f"group {event['group']}: {counts['posts']} posts from "
                    f"{counts['threads_fetched']} of {counts['threads_listed']} threads, "
                    f"{counts.get('requests', 0)} requests"
                ),
                err=True,
            )
        # Several groups are fetched at once: the line counts the run, groups done of all.
        text = (
            f"groups {event.get('groups_done', 0)}/{event.get('groups_total', '?')} · "
            f"threads {event['threads_checked']} checked, {event['threads_fetched']} fetched · "
            f"posts {event['posts']} · requests {event['requests']} "
            f"({event.get('in_flight', 0)} in flight) · "
            f"throttle waits {event['throttle_waits']} ({event['throttle_wait']} s)"
        )
        click.echo("\r" + safe_text(text).ljust(self.width), err=True, nl=False)
        self.width = len(text)

    def _index(self, event: dict[str, Any]) -> None:
        self._clear_line()
        if self.bar is None:
            self.bar = click.progressbar(
                length=max(1, event["total"]), label="Indexing posts", file=sys.stderr
            )
            self.bar.__enter__()
        self.bar.update(max(0, event["done"] - self.done))
        self.done = event["done"]

    def _clear_line(self) -> None:
        if self.width:
            click.echo("\r" + " " * self.width + "\r", err=True, nl=False)
            self.width = 0


def throttle_options(f):
    """Whose budget a sync keeps to and how many requests it keeps in flight; they become
    settings (a flag beats GROUPSYNC_THROTTLE_PROFILE and the config file)."""

    @functools.wraps(f)
    def command(*args, throttle_profile, max_concurrency, mailbox_concurrency, **kwargs):
        flags = click.get_current_context().find_root().obj["flags"]
        flags.update(
            throttle_profile=throttle_profile,
            max_concurrency=max_concurrency,
            mailbox_concurrency=mailbox_concurrency,
        )
        return f(*args, **kwargs)

    return click.option(
        "--throttle-profile",
        type=click.Choice(sorted(THROTTLE_PROFILES)),
        help="connector: 100 calls/60 s for the connection; graph: Graph's 10,000 per 10 "
        "min per group mailbox [env GROUPSYNC_THROTTLE_PROFILE; connector].",
    )(
        click.option(
            "--max-concurrency",
            type=int,
            help="Requests in flight for the app [env GROUPSYNC_MAX_CONCURRENCY; 4].",
        )(
            click.option(
                "--mailbox-concurrency",
                type=int,
                help="Requests in flight per group mailbox, 0 = no cap of its own "
                "[env GROUPSYNC_MAILBOX_CONCURRENCY; 0].",
            )(command)
        )
    )


@cli.command()
@group_selection_options
@throttle_options
@click.option("--full", is_flag=True, help="Full reconcile: every post's changeKey, tombstones.")
@click.option(
    "--full-after",
    default=7.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Days after which a group gets a full reconcile on its own.",
)
@click.option(
    "--send",
    "send_first",
    is_flag=True,
    help="Replay the outbox first (without waiting for retries).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary line.")
@click.option(
    "--fire-on-backfill", is_flag=True, help="A group's first sync records events for history."
)
@click.option("--no-index", is_flag=True, help="Leave the search index as it is.")
@click.option(
    "--keep-deleted-in-index/--drop-deleted-from-index",
    "keep_deleted",
    default=None,
    help="Keep posts deleted upstream in the search index, marked (for compliance "
    "searches); the choice sticks until changed.",
)
@click.option(
    "--index",
    "index_path",
    type=click.Path(file_okay=False),
    help="Search index folder [default: the database path + .whoosh].",
)
@click.option(
    "--shard",
    metavar="K/N",
    callback=_shard_param,
    help="With --all: only the groups whose hash falls in shard K of N (K from 0, as "
    "Kubernetes' JOB_COMPLETION_INDEX); give each shard its own --db.",
)
@click.pass_context
def sync(
    ctx, selection, full, full_after, send_first, as_json, quiet,
    fire_on_backfill, no_index, keep_deleted, index_path, shard,
):
    """Mirror groups into the archive, incrementally (changeKeys, tombstones, versions).

    With no --group, --joined or --all: the groups already archived, or the joined ones
    when the archive is empty.
    """
    from . import search as fulltext

    if shard is not None and not selection.all_groups:
        raise click.UsageError("--shard goes with --all (a shard is a share of the tenant)")
    settings = settings_from(ctx)
    token = auth.token_provider(settings)
    options = SyncOptions(
        full=full,
        full_max_age=timedelta(days=full_after),
        workers=settings.max_concurrency,
        fire_on_backfill=fire_on_backfill,
        # A per-mailbox cap fills the app's slots only from several groups at once.
        spread=settings.max_concurrency * 2 if settings.mailbox_concurrency else 1,
    )
    started = time.monotonic()
    with (
        WriterLock(settings.db, "groupsync sync"),
        Archive.open_for_writing(settings.db) as archive,
        _client(ctx, settings, token) as graph,
        Progress(sys.stderr.isatty() and not quiet and not as_json) as progress,
    ):
        if send_first:
            sent = replay_outbox(settings, graph)
            if not quiet and not as_json:
                click.echo(
                    f"Outbox: {sent.sent} sent, {sent.failed} failed, {sent.waiting} waiting",
                    err=True,
                )
        syncer = Syncer(
            archive, graph, options=options, progress=progress, identity=auth.identity_label(token)
        )
        report = syncer.run(
            selection.group_ids,
            joined=selection.joined,
            all_groups=selection.all_groups,
            shard=shard,
        )
        indexed = None
        if not no_index:
            path = search_index_path(settings, index_path)
            indexed = fulltext.update_index(
                archive, path, keep_deleted=keep_deleted, progress=progress, procs=2
            )
    if as_json:
        echo_json({**report.as_dict(), **({"index": indexed.as_dict()} if indexed else {})})
    elif not quiet:
        _echo_sync_report(report, indexed, time.monotonic() - started)
    if report.error:
        raise click.exceptions.Exit(1)


def _echo_sync_report(report, indexed, seconds: float) -> None:
    """The sync's summary line for people, its notes, then the index's line."""
    click.echo(
        f"Synced {len(report.groups)} group(s) ({report.mode}): "
        f"{report.items_new} new, {report.items_changed} changed, "
        f"{report.items_deleted} deleted; {report.threads_fetched} of "
        f"{report.threads_checked} threads fetched; {report.requests} requests "
        f"({report.throttled} throttled, {report.throttle_wait:.1f} s throttle wait) "
        f"in {seconds:.1f} s",
        err=True,
    )
    for note in report.notes:
        click.echo(safe_text(f"Note: {note}"), err=True)
    if indexed is not None:
        echo_index_report(indexed)


# -- the connector's read actions, answered from the archive (or Graph with --live) --------

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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8001, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--immutable",
    is_flag=True,
    help="Treat the archive as frozen (faster; only while nothing syncs into it).",
)
@click.option(
    "--no-index", is_flag=True, help="Do not bring the search index up to date first."
)
@click.argument("archives", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_context
def serve(ctx, host, port, immutable, no_index, archives):
    """Explore the archive in Datasette, read-only: thread view, search, downloads.

    ARCHIVES (several: the shards of a tenant) instead of --db: one database each; the
    group list and search cover them all. With accounts (`groupsync serve-user add`)
    everything needs a login; without, serve binds to 127.0.0.1 only.
    """
    from .datasette_plugin.accounts import load_accounts
    from .datasette_plugin.server import check_archive, is_loopback, update_search_index
    from .datasette_plugin.server import serve as serve_datasette
    from .search import IndexWriteError

    settings = settings_from(ctx)
    paths = list(dict.fromkeys(archives)) or [settings.db]
    for path in paths:
        check_archive(path)  # before anything is said or done
    accounts = load_accounts(_serve_users_path(ctx))
    if not accounts and not is_loopback(host):
        raise click.UsageError(
            f"--host {host} needs accounts (anyone reaching it would read the archive): "
            "add one with `groupsync serve-user add NAME --role reader`"
        )
    for path in paths:
        _access_checked(path)
        if not writable(path):
            # Datasette's read-only mode needs to create -shm beside a WAL archive.
            click.echo(safe_text(f"Note: {path} is read-only here: serving it immutable."),
                       err=True)  # fmt: skip
            immutable = True
    for path in paths if not no_index else []:
        click.echo("Bringing the search index up to date...", err=True)
        try:
            report = update_search_index(path)
        except IndexWriteError as ex:
            click.echo(safe_text(f"Note: {ex}; search may lag."), err=True)
        else:
            click.echo(safe_text(f"Search index {report.mode} ({report.index_path})."), err=True)
    shown = ", ".join(str(p) for p in paths)

    def ready(url: str) -> None:
        click.echo(safe_text(f"Serving {shown} read-only at {url}-/groupsync/"), err=True)
        click.echo(safe_text(f"  Datasette's tables and SQL: {url}"), err=True)
        if accounts:
            click.echo(safe_text(f"  {len(accounts)} account(s): log in at {url}-/login"),
                       err=True)  # fmt: skip
        else:
            click.echo("  no accounts: anyone on this machine can read it", err=True)
        click.echo("Ctrl-C stops it.", err=True)
        click.echo(f"{url}-/groupsync/")  # groupsync's home: groups, threads, search

    serve_datasette(
        paths, host=host, port=port, immutable=immutable, accounts=accounts, on_ready=ready
    )


# -- serve's accounts and the access log ----------------------------------------------------


def _serve_users_path(ctx) -> Path:
    from .datasette_plugin.accounts import serve_users_path

    return serve_users_path((ctx.find_root().obj or {}).get("config"))


@cli.group(name="serve-user")
def serve_user():
    """The accounts that may log in to `groupsync serve` (reader or auditor)."""


@serve_user.command(name="add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["reader", "auditor"]), required=True,
    help="reader: mail, search, downloads; auditor: also the access log, holds, policies, "
    "events and sync runs.",
)
@click.password_option(help="Asked for when not given (never echoed).")
@click.pass_context
def serve_user_add(ctx, name, role, password):
    """Add an account, or set its role and password; only the password's hash is kept."""
    from .datasette_plugin.accounts import add_account

    path = _serve_users_path(ctx)
    new = add_account(path, name, role, password)
    verb = "Added" if new else "Updated"
    click.echo(safe_text(f"{verb} {name} ({role}) in {path}; restart serve to use it."), err=True)


@serve_user.command(name="list")
@click.pass_context
def serve_user_list(ctx):
    """The accounts and their roles (never their password hashes)."""
    from .datasette_plugin.accounts import load_accounts

    accounts = load_accounts(_serve_users_path(ctx))
    echo_table([{"name": n, "role": a["role"]} for n, a in sorted(accounts.items())],
               ["name", "role"])  # fmt: skip


@serve_user.command(name="remove")
@click.argument("name")
@click.pass_context
def serve_user_remove(ctx, name):
    """Remove an account (serve keeps it until restarted)."""
    from .datasette_plugin.accounts import remove_account

    path = _serve_users_path(ctx)
    if not remove_account(path, name):
        raise click.UsageError(f"no account {name!r} in {path}")
    click.echo(safe_text(f"Removed {name} from {path}."), err=True)


ACCESS_COLUMNS = ["id", "at", "actor", "action", "origin", "count", "target"]


@cli.command(name="access-log")
@click.option("--since", help="Rows at or after this date or time (UTC), e.g. 2024-05-01.")
@click.option("--actor", help="Only this actor (os:NAME on the command line, a login name).")
@click.option("--action", type=click.Choice(access.ACTIONS), help="Only this action.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one row each, with digests.")
@click.pass_context
def access_log_command(ctx, since, actor, action, as_json):
    """Who searched, read a thread, downloaded, exported or changed a hold or policy.

    Each row is chained to the one before (`groupsync verify` checks the chain); the last
    line on stderr is the head digest, to note down elsewhere.
    """
    settings = settings_from(ctx)
    rows = list(
        access.iter_access_log(settings.db, since=parse_bound(since), actor=actor, action=action)
    )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))  # ASCII: a terminal shows no raw query text
    else:
        echo_table(rows, ACCESS_COLUMNS)
    head = access.access_log_head(settings.db)
    if head is not None:
        click.echo(f"{len(rows)} row(s); head row {head[0]} {head[1]}", err=True)


# -- scheduled sync, the trigger, export and verification ----------------------------------


def _duration(ctx, param, value):
    try:
        return parse_duration(value)
    except ValueError as ex:
        raise click.BadParameter(str(ex)) from None


def hook_options(f):
    """--on-new with its environment and timeout, as one ``hook`` argument (None without
    --on-new); a secret named in --hook-env is refused here, before anything runs."""

    @functools.wraps(f)
    def command(*args, on_new, hook_env, hook_timeout, **kwargs):
        hook = None
        if on_new:
            db = settings_from(click.get_current_context()).db
            hook = ShellHook.for_archive(on_new, db, timeout=hook_timeout, keep=hook_env)
        return f(*args, hook=hook, **kwargs)

    return _bundle(
        click.option(
            "--on-new",
            metavar="CMD",
            help="Run CMD (a shell command) once per new post, with the event JSON on stdin.",
        ),
        click.option(
            "--hook-env",
            "hook_env",
            metavar="NAME",
            multiple=True,
            help="Also pass this environment variable on to --on-new (repeatable; never a secret).",
        ),
        click.option(
            "--hook-timeout",
            default=60.0,
            show_default=True,
            type=click.FloatRange(min=0.1),
            help="Seconds --on-new may take; then it is killed and retried later.",
        ),
    )(command)


def _log_line(entry: dict[str, Any]) -> str:
    """A watch log entry for people: time, level, what, then key=value."""
    rest = " ".join(
        f"{k}={v}" for k, v in entry.items() if k not in {"at", "level", "event"} and v is not None
    )
    line = f"{entry.get('at')} {entry.get('level', 'info')} {entry.get('event')} {rest}"
    return safe_text(line.rstrip())


@cli.command()
@group_selection_options
@click.option(
    "--interval",
    default="60",
    show_default=True,
    callback=_duration,
    help="Time from one sync's start to the next: seconds, or 90s, 5m, 1h.",
)
@click.option(
    "--full-every",
    default="24h",
    show_default=True,
    callback=_duration,
    help="A group gets a full reconcile when its last is older than this.",
)
@click.option("--send", is_flag=True, help="Replay the outbox at every iteration.")
@hook_options
@click.option("--jsonl", is_flag=True, help="Print each new event as one JSON line on stdout.")
@click.option(
    "--fire-on-backfill", is_flag=True, help="A group's first sync fires events for history."
)
@click.option(
    "--max-backoff",
    default="15m",
    show_default=True,
    callback=_duration,
    help="The longest wait after failures (the wait doubles from --interval).",
)
@click.option("--log-json", is_flag=True, help="Log lines on stderr as JSON.")
@click.option("--once", is_flag=True, help="One iteration, then exit.")
@click.pass_context
def watch(
    ctx, selection, interval, full_every, send, hook, jsonl, fire_on_backfill, max_backoff,
    log_json, once,
):
    """Sync every --interval, fire events for new posts, and keep going through outages.

    SIGTERM or Ctrl-C ends it after the thread being written (exit 0); a second Ctrl-C
    quits at once. Only one sync, watch or send writes to an archive at a time.
    """
    settings = settings_from(ctx)
    token = auth.token_provider(settings)

    def log(entry: dict[str, Any]) -> None:
        line = json_text(json.dumps(entry, ensure_ascii=False)) if log_json else _log_line(entry)
        click.echo(line, err=True)

    def print_event(event: dict[str, Any]) -> None:
        click.echo(json_text(json.dumps(event, ensure_ascii=False)))

    options = WatchOptions(
        group_ids=list(selection.group_ids),
        joined=selection.joined,
        all_groups=selection.all_groups,
        interval=interval,
        full_every=full_every,
        send=send,
        fire_on_backfill=fire_on_backfill,
        max_backoff=max_backoff,
        workers=settings.max_concurrency,
        max_iterations=1 if once else None,
    )
    with (
        stopping() as stop,
        WriterLock(settings.db, "groupsync watch"),
        Archive.open_for_writing(settings.db) as archive,
        _client(ctx, settings, token) as graph,
        sending_cap(settings, SENDS_PER_MINUTE if send else 0) as cap,
        contextlib.ExitStack() as stack,
    ):
        outputs = None
        if hook is not None:
            outputs = stack.enter_context(HookOutputLog(hook_output_path(settings.db)))
        identity = auth.identity_label(token)
        Watcher(
            archive,
            graph,
            options=options,
            identity=identity,
            hook=hook,
            hook_outputs=outputs,
            on_event=print_event if jsonl else None,
            outbox=Outbox(archive, identity=identity) if send else None,
            sending_cap=cap,
            log=log,
            stop=stop,
        ).run()


EVENT_COLUMNS = ["id", "state", "attempts", "created_at", "group_id", "post_id", "last_error"]


@cli.command(name="events")
@click.option("--since", help="Recorded at or after this date or time (UTC), e.g. 2024-05-01.")
@click.option("--state", type=click.Choice(EVENT_STATES), help="Only events in this state.")
@click.option(
    "--group",
    "group_id",
    metavar="GROUP",
    callback=_resolve_group_param,
    help=f"Only this group's events. {GROUP_HELP}.",
)
@click.option("--jsonl", is_flag=True, help="One event per line, exactly as a hook gets it.")
@table_option
@click.pass_context
def events_command(ctx, since, state, group_id, jsonl, as_table):
    """The "new post" events the syncs recorded, and their delivery to --on-new hooks."""
    if jsonl and as_table:
        raise click.UsageError("--jsonl and --table do not go together")
    settings = settings_from(ctx)
    outputs_path = hook_output_path(settings.db)
    with Archive(settings.db, readonly=True) as archive, contextlib.ExitStack() as stack:
        outputs = None
        if os.path.exists(outputs_path):
            outputs = stack.enter_context(HookOutputLog(outputs_path, readonly=True))
        rows = iter_events(
            archive, since=parse_bound(since), state=state, group_id=group_id
        )
        if jsonl:
            for row in rows:
                click.echo(json_text(json.dumps(event_payload(row), ensure_ascii=False)))
        elif as_table:
            echo_table(list(rows), EVENT_COLUMNS)
        else:
            _echo_json_stream(
                {
                    **{k: v for k, v in row.items() if k != "json"},
                    "event": event_payload(row),
                    "hook_output": outputs.get(row["id"]) if outputs else None,
                }
                for row in rows
            )


@cli.command(name="export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice((*FORMATS, "production")),
    required=True,
    help="File format; production: numbered documents, natives, text and a load file.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="A new (or empty) folder for the files and manifest.json.",
)
@click.option(
    "--group",
    "group_ids",
    multiple=True,
    metavar="GROUP",
    callback=_resolve_group_param,
    help=f"Only this group; repeat for several. {GROUP_HELP}.",
)
@click.option("--since", help="Posts received on or after this date or time (UTC).")
@click.option("--until", help="Posts received up to this date (the whole day) or time (UTC).")
@click.option("--include-deleted", is_flag=True, help="Also posts deleted upstream (marked).")
@click.option("--query", help="Only posts matching this full-text search.")
@click.option(
    "--hold",
    "hold_name",
    metavar="NAME",
    help="Production only: the posts a legal hold covers (deleted upstream included).",
)
@click.option(
    "--prefix",
    help="Production only: the control numbers' prefix, letters and digits "
    f"[default: {DEFAULT_PREFIX}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the export's summary as JSON.")
@archives_option(
    "Export these archives (shards) instead of --db, each into OUT/<its name>/ "
    "with its own manifest; repeat for each."
)
@click.pass_context
def export_command(
    ctx, fmt, out, group_ids, since, until, include_deleted, query, hold_name, prefix, as_json,
    archives,
):
    """Export posts as .eml files, one mbox per group, JSON lines or a production, with a manifest.

    A production is for review platforms: numbered documents, natives, extracted text and
    a Concordance load file (docs/productions.md).

    A post or attachment that cannot be exported is left out and listed in the manifest's
    "failures"; the export goes on, and then exits 4.
    """
    if prefix is not None and fmt != "production":
        raise click.UsageError("--prefix goes with --format production")
    if hold_name is not None and fmt != "production":
        raise click.UsageError("--hold goes with --format production")
    if hold_name is not None and query is not None:
        raise click.UsageError("--hold and --query select posts two ways: give one")
    if archives and fmt == "production":
        raise click.UsageError("a production numbers one archive's documents: give it with --db")
    settings = settings_from(ctx)
    if fmt == "production":
        production_options = ProductionOptions(
            out=Path(out),
            prefix=check_prefix(DEFAULT_PREFIX if prefix is None else prefix),
            group_ids=list(group_ids),
            since=since,
            until=until,
            include_deleted=include_deleted or hold_name is not None,
            selection=(
                {"query": query} if query is not None
                else {"hold": hold_name} if hold_name is not None
                else {}
            ),
        )
        _export_production(settings, production_options, query, hold_name, as_json)
        return
    if archives and group_ids:
        raise click.UsageError("--group does not go with --archive: export a shard with --db")
    paths = list(dict.fromkeys(archives))
    for path in paths:
        Archive(path, readonly=True).close()  # every archive there before any export
    names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        raise click.UsageError("--archive: two archives share a file name; rename one")
    failed = 0
    for path, name in zip(paths, names, strict=True) if paths else [(settings.db, None)]:
        options = ExportOptions(
            format=fmt,
            out=Path(out) / name if name else Path(out),
            group_ids=list(group_ids),
            since=since,
            until=until,
            include_deleted=include_deleted,
            query=query,
        )
        failed += _export_one(settings, path, options, as_json)
    if failed:
        raise click.exceptions.Exit(PARTIAL_EXIT)


def _open_to_export(db) -> Archive:
    """An export records itself in the archive where it can; a read-only copy is read as it
    is. A missing archive is an error, never a new empty one."""
    Archive(db, readonly=True).close()
    _access_checked(db)  # an export is logged: refuse now if the log cannot be written
    return Archive.open_for_writing(db) if writable(db) else Archive(db, readonly=True)


def _export_one(settings, db, options, as_json) -> int:
    """Export one archive; the number of items that failed."""
    started = time.monotonic()
    with _open_to_export(db) as archive:
        report = export_archive(
            archive, options, identity=auth.audit_identity(settings), os_user=auth.os_user()
        )
    _log_access(db, "export", f"{report.export_id} {options.out}", report.posts)
    _echo_export(report, as_json, started, (
        f"Exported {report.posts} post(s) of {report.groups} group(s) with "
        f"{report.attachments} attachment(s)"
    ))  # fmt: skip
    return report.failed


def _echo_export(report, as_json: bool, started: float, what: str) -> None:
    """An export's notes, then its report as JSON or as one line for people."""
    for note in report.notes:
        click.echo(f"Note: {note}", err=True)
    if as_json:
        echo_json(report.as_dict())
        return
    failed = f"; {report.failed} item(s) FAILED, listed in the manifest" * bool(report.failed)
    click.echo(
        safe_text(
            f"{what} into {report.files} file(s) ({report.bytes:,} bytes) in "
            f"{time.monotonic() - started:.1f} s; manifest {report.manifest} "
            f"(SHA-256 {report.manifest_sha256}){failed}"
        ),
        err=True,
    )


def _export_production(settings, options: ProductionOptions, query, hold_name, as_json) -> None:
    """``export --format production``: select the posts (a search, a hold, or all), produce
    them. A hold's posts include those deleted upstream: the hold preserves them too."""
    started = time.monotonic()
    with _open_to_export(settings.db) as archive:
        post_ids = None
        if query is not None:
            post_ids = posts_matching(archive, query, include_deleted=options.include_deleted)
        elif hold_name is not None:
            from .holds import held_post_ids

            post_ids = held_post_ids(archive, hold_name)
        report = produce(
            archive,
            options,
            post_ids,
            identity=auth.audit_identity(settings),
            os_user=auth.os_user(),
        )
    _log_access(settings.db, "export", f"{report.export_id} {options.out}", report.posts)
    attachments = report.attachments + report.attachments_without_bytes
    _echo_export(report, as_json, started, (
        f"Produced {report.posts + attachments} document(s) ({report.posts} post(s), "
        f"{attachments} attachment(s)) of {report.groups} group(s)"
    ))  # fmt: skip
    if report.failed:
        raise click.exceptions.Exit(PARTIAL_EXIT)


AUDIT_EXIT = 4  # verify: nothing damaged, but the audit found what a sync missed


@cli.command(name="verify")
@click.option("--anchor", metavar="DIGEST", help="A chain digest noted earlier: must be in it.")
@click.option(
    "--index",
    "index_path",
    type=click.Path(file_okay=False),
    help="Search index to check [default: the database path + .whoosh, if there].",
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Check this export's files against its manifest.json instead.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@archives_option(
    "Verify these archives (shards) instead of --db, each with its index beside "
    "it; repeat for each. Exit with the worst of their codes."
)
@click.pass_context
def verify_command(ctx, anchor, index_path, export_dir, as_json, archives):
    """Recompute every hash and the runs' digest chain; check SQLite, FTS5 and the search
    index for damage; audit what a sync may have missed.

    Prints each problem and each finding on its own line. Exit 1 if anything is damaged
    or changed, else 4 if the audit found something missing, else 0.
    """
    if export_dir is not None and anchor is not None:
        raise click.UsageError("--anchor and --export do not go together")
    if archives and (anchor or index_path or export_dir):
        raise click.UsageError("--archive does not go with --anchor, --index or --export")
    settings = settings_from(ctx)
    if archives:
        paths = list(dict.fromkeys(archives))
        for path in paths:
            Archive(path, readonly=True).close()  # every archive there before any check
        codes = []
        for path in paths:
            if not as_json:
                click.echo(safe_text(f"== {path}"))
            codes.append(_verify_one(settings, Path(path), None, None, as_json))
        worst = 1 if 1 in codes else max(codes)
        if worst:
            raise click.exceptions.Exit(worst)
        return
    db = Path(settings.db)
    if export_dir is not None:
        _verify_export(db, export_dir, as_json)
        return
    code = _verify_one(settings, db, anchor, index_path, as_json)
    if code:
        raise click.exceptions.Exit(code)


def _verify_one(settings, db: Path, anchor, index_path, as_json) -> int:
    """Verify one archive and print its report; the exit code it calls for."""
    if index_path is None and db != Path(settings.db):
        from . import search as fulltext

        index_path = fulltext.index_path_for(db)
    with Archive(db, readonly=True) as archive:
        exposed = loose_permissions(db)  # said once the file is known to be an archive
        if exposed:
            files = ", ".join(f"{path} ({mode:04o})" for path, mode in exposed)
            click.echo(
                safe_text(
                    f"Warning: group or others may read or write {files}: chmod 600 them"
                ),
                err=True,
            )
        report = verify_archive(
            archive, anchor=anchor, index_path=search_index_path(settings, index_path)
        )
    if as_json:
        # ASCII JSON: scripts read the same values, a terminal shows no raw mail text.
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _echo_verify_report(report)
    if not report.ok:
        return 1
    if not report.complete:
        return AUDIT_EXIT
    return 0


def _echo_verify_report(report) -> None:
    """Each problem and finding on stdout, then the notes and a summary line on stderr."""
    for line in [*map(str, report.problems), *map(str, report.findings)]:
        click.echo(safe_text(line))
    for note in report.notes:
        click.echo(safe_text(f"Note: {note}"), err=True)
    for purge in report.purges:
        keeps = ", ".join(f"{p['keep']} ({p['group_id'] or 'default'})" for p in purge["policies"])
        click.echo(
            safe_text(
                f"Purge {purge['id']} ({purge['status']}) {purge['finished_at']} by "
                f"{purge['actor']}: {purge['posts']} post(s), {purge['versions']} version(s), "
                f"{purge['blobs']} blob(s) ({purge['bytes']:,} bytes) removed under {keeps}; "
                f"tombstones {purge['items_sha256']}"
            ),
            err=True,
        )
    if report.governance_head:
        governance = report.governance_head
        click.echo(
            f"Governance log: {governance['record_id']} record(s), head {governance['digest']}",
            err=True,
        )
    checked = report.checked
    head = report.chain_head
    chain = f"chain head run {head['run_id']} {head['digest']}" if head else "no sealed run"
    found = len(report.findings)
    summary = (
        f"Checked {checked.get('post_versions', 0)} post versions, "
        f"{checked.get('posts', 0)} posts, {checked.get('blobs', 0)} blobs "
        f"({checked.get('blob_bytes', 0):,} bytes), {checked.get('sync_runs', 0)} sync "
        f"runs; {chain}: "
        + ("OK" if report.ok else f"{len(report.problems)} problem(s)")
        + (f"; {found} finding(s) of what a sync missed" if found else "")
    )
    click.echo(safe_text(summary), err=True)


def _verify_export(db: Path, export_dir: str, as_json: bool) -> None:
    """``verify --export``: the export's files against its manifest (and the archive's
    digests, when there is one)."""
    if db.exists():
        with Archive(db, readonly=True) as archive:
            checked = check_export(export_dir, archive)
    else:
        checked = check_export(export_dir)
    if as_json:
        click.echo(json.dumps(checked.as_dict(), indent=2))
    else:
        for problem in checked.problems:
            click.echo(safe_text(str(problem)))
        for note in checked.notes:
            click.echo(safe_text(f"Note: {note}"), err=True)
        click.echo(
            safe_text(
                f"Checked {checked.files} files ({checked.bytes:,} bytes) of {export_dir} "
                "against its manifest: "
                + ("OK" if checked.ok else f"{len(checked.problems)} difference(s)")
            ),
            err=True,
        )
    if not checked.ok:
        raise click.exceptions.Exit(1)


# -- full-text search (groupsync.search) ---------------------------------------------------

INDEX_HELP = "Search index folder [default: the database path + .whoosh]."
index_option = click.option(
    "--index", "index_path", type=click.Path(file_okay=False), help=INDEX_HELP
)


def search_index_path(settings, index_path) -> Path:
    from . import search as fulltext

    return Path(index_path) if index_path else fulltext.index_path_for(settings.db)


def echo_index_report(report) -> None:
    if report.mode == "current":
        click.echo("Search index: up to date", err=True)
        return
    kept = f", {report.kept_deleted} deleted kept" if report.kept_deleted else ""
    click.echo(
        f"Search index ({report.mode}): {report.indexed} posts indexed, {report.removed} "
        f"removed{kept}; {report.documents} documents, in {report.seconds:.1f} s",
        err=True,
    )


SEARCH_COLUMNS = ["date", "group", "sender", "topic", "snippet"]
SEARCH_THREAD_COLUMNS = ["newest", "group", "posts", "topic", "snippet"]


def _bold_snippet(hit, width: int = 110) -> str:
    """The snippet on one line, matches in bold (click drops the codes off a terminal)."""
    out, used = [], 0
    for text, matched in hit.parts:
        text = text.replace("\n", " ")
        if used + len(text) > width:
            text = text[: max(0, width - used - 1)] + "…"
        text = safe_text(text)
        out.append(click.style(text, bold=True) if matched else text)
        used += len(text)
        if used >= width:
            break
    return "".join(out)


@cli.command(name="search")
@click.argument("query")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many hits.")
@click.option(
    "--group", metavar="GROUP", help=f"Only this group, like group: in the query. {GROUP_HELP}."
)
@click.option(
    "--sort", type=click.Choice(["relevance", "date"]), default="relevance", show_default=True
)
@click.option(
    "--include-deleted", is_flag=True, help="Also posts deleted upstream (if kept in the index)."
)
@click.option(
    "--posts", "per_post", is_flag=True, help="One hit per post, not one entry per thread."
)
@table_option
@index_option
@archives_option(
    "Search these archives together, ranked as one (shards; each with its index "
    "beside it, ARCHIVE.whoosh); repeat for each. Instead of --db."
)
@click.pass_context
def search_command(
    ctx, query, limit, offset, group, sort, include_deleted, per_post, as_table, index_path,
    archives,
):
    """Search the archived posts with a mail client's syntax; one entry per thread.

    Words search topics, bodies, senders, attachment names and attachment text, accents
    folded. from: to: subject: (topic:) group: has:attachment filename: category:
    after:2024-05-01 before:2024-06 (UTC, after: inclusive), "a phrase", AND OR NOT,
    -word, budg* and budget~ (budget~2); any other word: is text. Catches the index up
    first if the archive moved on. JSON {"value": [threads], "total": threads, "posts":
    posts} ({"value": [posts], "total": posts} with --posts) unless --table; --limit and
    --offset count threads (posts with --posts). With --archive, several archives (shards)
    are searched and ranked as one.
    """

    settings = settings_from(ctx)
    paths = list(dict.fromkeys(archives)) or [settings.db]
    for path in paths:
        _access_checked(path)  # a search is logged: refuse now if it cannot be
    if archives:
        if index_path:
            raise click.UsageError("--index does not go with --archive (each index is beside it)")
        results = search_shards(
            archives, query, per_post=per_post, limit=limit, offset=offset, group=group,
            sort=sort, include_deleted=include_deleted,
        )  # fmt: skip
    else:
        results = _search_one(
            settings, index_path, query, per_post=per_post, limit=limit, offset=offset,
            group=group, sort=sort, include_deleted=include_deleted,
        )  # fmt: skip
    target = query if group is None else f"{query} [group {group}]"
    matched = getattr(results, "posts", results.total)  # posts, whether listed by thread or not
    for path in paths:
        _log_access(path, "search", target, matched)
    _echo_search(results, offset, as_table)


def search_shards(paths, query, *, per_post, **options):
    """Several archives (shards) searched as one, each opened read-only."""
    from . import search as fulltext
    from .search.federated import search_archives, search_threads_archives

    run: Any = search_archives if per_post else search_threads_archives

    with contextlib.ExitStack() as stack, Progress(sys.stderr.isatty()) as progress:
        opened = []
        for path in dict.fromkeys(paths):
            archive = stack.enter_context(Archive(path, readonly=True))
            opened.append((path, archive, fulltext.index_path_for(path)))
        return run(opened, query, catch_up=True, progress=progress, **options)


def _search_one(
    settings, index_path, query, *, per_post, limit, offset, group, sort, include_deleted
):
    from . import search as fulltext

    run: Any = fulltext.search if per_post else fulltext.search_threads
    with Progress(sys.stderr.isatty()) as progress, Archive(settings.db, readonly=True) as archive:
        return run(
            archive,
            search_index_path(settings, index_path),
            query,
            limit=limit,
            offset=offset,
            group=group,
            sort=sort,
            include_deleted=include_deleted,
            catch_up=True,
            progress=progress,
        )


def _echo_search(results, offset, as_table) -> None:
    from . import search as fulltext

    for note in results.notes:
        click.echo(safe_text(f"Note: {note}"), err=True)
    if not results.total:
        click.echo("No posts match.", err=True)
    if results.suggestion:
        click.echo(safe_text(f"Did you mean: {results.suggestion}"), err=True)
    if as_table and isinstance(results, fulltext.ThreadResults):
        _echo_thread_table(results, offset)
    elif as_table:
        if results.hits:
            rows = [
                [
                    safe_text((h.receivedDateTime or "")[:16].replace("T", " ")),
                    _cell(h.group_name),
                    _cell(h.sender.get("name") or h.sender.get("address")),
                    _cell(h.topic),
                    _bold_snippet(h),
                ]
                for h in results.hits
            ]
            click.echo(tabulate(rows, headers=SEARCH_COLUMNS, tablefmt="simple"))
            shown = f"{offset + 1}-{offset + len(results.hits)}"
            click.echo(safe_text(f"{shown} of {results.total} posts"), err=True)
    else:
        echo_json(results.as_dict())


@cli.command(name="index")
@click.option("--rebuild", is_flag=True, help="Build it again from scratch (both cores).")
@click.option(
    "--check", is_flag=True, help="Compare it with the archive; exit 1 if anything differs."
)
@click.option(
    "--keep-deleted-in-index/--drop-deleted-from-index",
    "keep_deleted",
    default=None,
    help="Keep posts deleted upstream, marked; the choice sticks until changed.",
)
@index_option
@click.pass_context
def index_command(ctx, rebuild, check, keep_deleted, index_path):
    """Bring the search index up to the archive (each sync does this on its own).

    --rebuild starts over (a progress bar on a terminal); --check lists posts missing or
    stale in the index, and documents it should not have.
    """
    from . import search as fulltext

    if rebuild and check:
        raise click.UsageError("--rebuild and --check do not go together")
    settings = settings_from(ctx)
    path = search_index_path(settings, index_path)
    with Archive(settings.db, readonly=True) as archive:
        if check:
            checked = fulltext.check_index(archive, path)
            _echo_index_check(checked, path)
            if not checked.ok:
                raise click.exceptions.Exit(1)
            return
        with Progress(sys.stderr.isatty()) as progress:
            if rebuild:
                report = fulltext.rebuild_index(
                    archive, path, keep_deleted=keep_deleted, progress=progress
                )
            else:
                report = fulltext.update_index(
                    archive, path, keep_deleted=keep_deleted, progress=progress, procs=2
                )
    echo_index_report(report)


def _echo_thread_table(results, offset: int) -> None:
    """``search --table``: a thread a line, its newest match's date and matching posts."""
    if results.threads:
        rows = [
            [
                safe_text((t.newest_match or "")[:16].replace("T", " ")),
                _cell(t.hit.group_name),
                t.matching_posts,
                _cell(t.hit.topic),
                _bold_snippet(t.hit),
            ]
            for t in results.threads
        ]
        click.echo(tabulate(rows, headers=SEARCH_THREAD_COLUMNS, tablefmt="simple"))
        shown = f"{offset + 1}-{offset + len(results.threads)}"
        click.echo(
            safe_text(f"{shown} of {results.total} threads ({results.posts} posts match)"),
            err=True,
        )


def _echo_index_check(report, path: Path) -> None:
    """``index --check``: the counts, five ids of each kind of difference, OK or not."""
    data = report.as_dict(sample=5)
    click.echo(
        safe_text(
            f"{path}: {data['documents']} documents for {data['posts']} posts; "
            f"index at change {data['index_seq']}, archive at {data['archive_seq']}"
        )
    )
    if not report.exists:
        click.echo("no index: run groupsync index")
    for name in ("missing", "stale", "extra", "duplicates"):
        if data[name]:
            ids = ", ".join(data[f"{name}_ids"])
            more = " …" if data[name] > 5 else ""
            click.echo(safe_text(f"{data[name]} {name}: {ids}{more}"))
    click.echo("OK" if report.ok else "Run groupsync index to catch up.")


@cli.command()
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    default="sample_data",
    show_default=True,
    help="Folder with the tenant (see sample_data/README.md).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="0 picks a free port.")
@click.option("--rate", "sim_rate", help="429 with Retry-After past N/SECONDS calls.")
@click.option("--fail-rate", default=0.0, type=click.FloatRange(0, 1), help="Random 503/504.")
@click.option(
    "--write-504-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Apply a write, then answer 504 anyway.",
)
@click.option("--latency", default=0, type=click.IntRange(0), help="Milliseconds per request.")
@click.option("--max-concurrency", default=4, type=click.IntRange(0), help="0 = unlimited.")
@click.option("--page-size", default=10, type=click.IntRange(1), show_default=True)
@click.option("--max-top", default=50, type=click.IntRange(1), show_default=True)
@click.option("--thread-order", type=click.Choice(["newest", "random"]), default="newest")
@click.option("--empty-page-every", default=0, type=click.IntRange(0), help="Empty pages.")
@click.option("--truncate-posts-at", default=0, type=click.IntRange(0), help="Posts cap.")
@click.option("--seed", default=0, type=int, show_default=True)
@click.option("--persist", is_flag=True, help="Write changes back to --data.")
@click.option(
    "--mailbox-window",
    envvar="GROUPSYNC_SIM_MAILBOX_WINDOW",
    help="Graph's per-mailbox window as N/SECONDS (Graph: 10000/600) [env "
    "GROUPSYNC_SIM_MAILBOX_WINDOW; off].",
)
@click.option(
    "--concurrency-per",
    type=click.Choice(["app", "mailbox"]),
    default="app",
    show_default=True,
    help="Whether --max-concurrency counts for the app or for each mailbox.",
)
def simulate(data, host, port, sim_rate, mailbox_window, concurrency_per, **options):
    """Serve a tenant folder as Microsoft Graph v1.0 on a local port."""
    try:
        mailbox_rate = parse_rate(mailbox_window) if mailbox_window else None
    except GroupsyncError as ex:
        raise click.ClickException(f"--mailbox-window: {ex}") from None
    opts = SimulatorOptions(
        rate=parse_rate(sim_rate) if sim_rate else None,
        latency_ms=options.pop("latency"),
        mailbox_rate=mailbox_rate,
        concurrency_scope=concurrency_per,
        **options,
    )
    run_server(Path(data), host=host, port=port, options=opts)


# -- retention, legal holds and purge (groupsync.retention, holds, purge) -------------------


def _governance_archive(settings):
    """The archive, for a command that writes policies, holds or purges: the writer lock
    held, the schema migrated. A missing archive is an error, not a new empty one."""
    if not Path(settings.db).exists():
        raise ArchiveError(f"no archive at {settings.db}; run `groupsync sync` first")
    stack = contextlib.ExitStack()
    stack.enter_context(WriterLock(settings.db, "groupsync retention/hold/purge"))
    archive = stack.enter_context(Archive.open_for_writing(settings.db))
    return stack, archive


@cli.group(name="retention")
def retention_group():
    """Retention policies: how long posts are kept before `groupsync purge` removes them.

    A group's policy overrides the archive-wide default; with no policy nothing is ever
    purged. Age runs from each post's receivedDateTime.
    """


@retention_group.command(name="set")
@click.option("--group", "group_id", metavar="GROUP", callback=_resolve_group_param,
              help=f"{GROUP_HELP}; without it, the archive-wide default.")  # fmt: skip
@click.option("--keep", required=True, metavar="AGE", help="90d, 12w, 18m or 7y.")
@click.pass_context
def retention_set(ctx, group_id, keep):
    """Keep posts for AGE (of the group, or by default), then let purge remove them."""
    from .config import cli_actor
    from .retention import parse_keep, set_policy

    parse_keep(keep)  # a wrong one is refused before the archive is opened
    settings = settings_from(ctx)
    _access_checked(settings.db)
    stack, archive = _governance_archive(settings)
    with stack:
        policy = set_policy(archive, keep, actor=cli_actor(), group_id=group_id)
    _log_access(settings.db, "policy", f"set {group_id or '*'} keep {policy.keep}", None)
    scope = f"group {policy.group_name or policy.group_id}" if policy.group_id else "default"
    click.echo(safe_text(f"Retention policy {policy.id} ({scope}): keep {policy.keep}"))


@retention_group.command(name="show")
@click.option("--all", "include_cleared", is_flag=True, help="Also the cleared policies.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def retention_show(ctx, include_cleared, as_json):
    """The retention policies in force (a table, or --json)."""
    from .archive.queries.governance import has_governance
    from .retention import list_policies

    settings = settings_from(ctx)
    with Archive(settings.db, readonly=True) as archive:
        found = (
            list_policies(archive, include_cleared=include_cleared)
            if has_governance(archive)
            else []
        )
    data = [p.as_dict() for p in found]
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo("No retention policy: nothing is ever purged.", err=True)
        return
    columns = ["id", "scope", "group_name", "keep", "set_by", "set_at"]
    if include_cleared:
        columns += ["cleared_by", "cleared_at"]
    echo_table(data, columns)


@retention_group.command(name="clear")
@click.option("--group", "group_id", metavar="GROUP", callback=_resolve_group_param,
              help=f"{GROUP_HELP}; without it, the archive-wide default.")  # fmt: skip
@click.pass_context
def retention_clear(ctx, group_id):
    """Clear a policy (it stays in the archive as a record, marked cleared)."""
    from .config import cli_actor
    from .retention import clear_policy

    settings = settings_from(ctx)
    _access_checked(settings.db)
    stack, archive = _governance_archive(settings)
    with stack:
        policy = clear_policy(archive, actor=cli_actor(), group_id=group_id)
    _log_access(settings.db, "policy", f"clear {group_id or '*'}", None)
    click.echo(safe_text(f"Retention policy {policy.id} cleared"))


@cli.group(name="hold")
def hold_group():
    """Legal holds: posts a hold covers are never purged, whatever the retention policy."""


@hold_group.command(name="create")
@click.argument("name")
@click.option("--group", "group_ids", multiple=True, metavar="GROUP",
              callback=_resolve_group_param, help=f"{GROUP_HELP}; repeat for several.")
@click.option("--query", help="groupsync's search syntax (needs the search index).")
@click.option("--from", "from_date", metavar="DATE", help="Delivered on or after (YYYY-MM-DD).")
@click.option("--to", "to_date", metavar="DATE", help="Delivered on or before (YYYY-MM-DD).")
@click.option("--custodian", "custodians", multiple=True, metavar="ADDRESS",
              help="Sender or recipient; repeat for several.")
@click.option("--note", help="Why (a matter number, say).")
@click.pass_context
def hold_create(ctx, name, group_ids, query, from_date, to_date, custodians, note):  # fmt: skip
    """Place a legal hold NAME; criteria combine with AND (groups and custodians OR-ed)."""
    from .config import cli_actor
    from .holds import create_hold

    settings = settings_from(ctx)
    _access_checked(settings.db)
    stack, archive = _governance_archive(settings)
    with stack:
        hold = create_hold(
            archive,
            name,
            actor=cli_actor(),
            groups=group_ids,
            query=query,
            from_date=from_date,
            to_date=to_date,
            custodians=custodians,
            note=note,
        )
    _log_access(settings.db, "hold", f"create {hold.name}", None)
    click.echo(safe_text(f"Legal hold {hold.name} ({hold.id}) created"))


@hold_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def hold_list(ctx, as_json):
    """Every legal hold, active and released."""
    from .archive.queries.governance import has_governance
    from .holds import list_holds

    settings = settings_from(ctx)
    with Archive(settings.db, readonly=True) as archive:
        data = [h.as_dict() for h in list_holds(archive)] if has_governance(archive) else []
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo("No legal hold.", err=True)
        return
    echo_table(data, ["id", "name", "active", "query", "groups", "custodians", "created_at",
                      "released_at", "note"])  # fmt: skip


@hold_group.command(name="show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@index_option
@click.pass_context
def hold_show(ctx, name, as_json, index_path):
    """A hold and the posts it covers now (mail that arrived since included)."""
    from .holds import get_hold, matching_posts

    settings = settings_from(ctx)
    path = search_index_path(settings, index_path)
    _access_checked(settings.db)
    with Archive(settings.db, readonly=True) as archive:
        hold = get_hold(archive, name)
        if hold.query is not None and path.exists() and writable(path):
            from . import search as fulltext

            fulltext.update_index(archive, path, keep_deleted=True)
        found = matching_posts(archive, hold, index_path=path)
    posts = [
        {"post_id": p, "group_id": g, "thread_id": t, "received": r, "deleted_at": d}
        for p, g, t, r, d in found
    ]
    _log_access(settings.db, "hold", f"show {hold.name}", len(posts))
    groups: dict[str, int] = {}
    for _, group_id, *_rest in found:
        groups[group_id] = groups.get(group_id, 0) + 1
    if as_json:
        echo_json({**hold.as_dict(), "count": len(posts), "groups_count": groups,
                   "posts": posts})  # fmt: skip
        return
    state = "active" if hold.active else f"released {hold.released_at} by {hold.released_by}"
    click.echo(safe_text(f"Legal hold {hold.name} ({state}), created {hold.created_at} by "
                         f"{hold.created_by}"))  # fmt: skip
    for key in ("query", "groups", "from_date", "to_date", "custodians", "note"):
        value = getattr(hold, key)
        if isinstance(value, list):
            value = ", ".join(value)
        if value:
            click.echo(safe_text(f"  {key}: {value}"))
    for group_id, count in groups.items():
        click.echo(safe_text(f"  {count} post(s) in group {group_id}"))
    echo_table(posts, ["post_id", "received", "group_id", "thread_id", "deleted_at"])
    click.echo(f"{len(posts)} post(s) held", err=True)


@hold_group.command(name="release")
@click.argument("name")
@click.pass_context
def hold_release(ctx, name):
    """Release a hold: its posts follow their retention policy from the next purge on."""
    from .config import cli_actor
    from .holds import release_hold

    settings = settings_from(ctx)
    _access_checked(settings.db)
    stack, archive = _governance_archive(settings)
    with stack:
        hold = release_hold(archive, name, actor=cli_actor())
    _log_access(settings.db, "hold", f"release {hold.name}", None)
    click.echo(safe_text(f"Legal hold {hold.name} released"))


@cli.command(name="purge")
@click.option("--dry-run", is_flag=True, help="List what would be removed; write nothing.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Posts removed per transaction.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option
@click.pass_context
def purge_command(ctx, dry_run, batch_size, as_json, index_path):
    """Remove posts past their retention policy and under no legal hold: bodies, versions,
    attachment bytes no other post uses, and their search entries.

    Each removed item keeps a tombstone (its ids, SHA-256 and size) and the purge a record
    in the governance chain, so `verify` still passes and lists the purge. Safe to stop:
    the next purge finishes the job. Exit 1 if a query hold cannot be checked (no current
    search index).
    """
    from .config import cli_actor
    from .purge import purge

    settings = settings_from(ctx)
    path = search_index_path(settings, index_path)
    if dry_run:
        with Archive(settings.db, readonly=True) as archive:
            report = purge(archive, actor=cli_actor(), dry_run=True, index_path=path)
    else:
        stack, archive = _governance_archive(settings)
        with stack, stopping() as stop:
            report = purge(
                archive, actor=cli_actor(), index_path=path, batch=batch_size, stop=stop
            )
    if as_json:
        echo_json(report.as_dict())
        return
    if dry_run:
        for post_id in report.post_ids:
            click.echo(safe_text(f"would purge post {post_id}"))
    for purge_id in report.sealed:
        click.echo(f"Sealed purge {purge_id}, which had been stopped", err=True)
    if not report.policies:
        click.echo("No retention policy: nothing to purge.", err=True)
        return
    what = (
        f"{report.posts} post(s), {report.versions} version(s), {report.blobs} attachment "
        f"blob(s) ({report.bytes:,} bytes)"
    )
    held = f"; {report.held} post(s) past retention kept under a legal hold" if report.held else ""
    if dry_run:
        click.echo(f"Would remove {what}{held}", err=True)
    elif report.purge_id is None:
        click.echo(f"Nothing to purge{held}", err=True)
    else:
        stopped = " (stopped: run purge again to finish)" if report.stopped else ""
        click.echo(f"Purge {report.purge_id}: removed {what}{held}{stopped}", err=True)
