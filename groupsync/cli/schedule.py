"""The trigger (``watch``) and its events."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any

import click

from .. import auth
from ..archive import Archive
from ..connect import SENDS_PER_MINUTE, sending_cap
from ..events import (
    EVENT_STATES,
    HookOutputLog,
    ShellHook,
    event_payload,
    hook_output_path,
    iter_events,
)
from ..export import parse_bound
from ..lock import WriterLock
from ..outbox import Outbox
from ..stopping import stopping
from ..terminal import json_text, safe_text
from ..watch import Watcher, WatchOptions, parse_duration
from .base import (
    GROUP_HELP,
    _bundle,
    _resolve_group_param,
    cli,
    echo_table,
    group_selection_options,
    settings_from,
    table_option,
)
from .reading import _echo_json_stream
from .signin import _client


def _duration(ctx, param, value):
    try:
        return parse_duration(value)
    except ValueError as ex:
        raise click.BadParameter(str(ex)) from None


def duration_option(name, default, help):
    """An option that takes a duration (seconds, or 90s, 5m, 1h), parsed into seconds."""
    return click.option(name, default=default, show_default=True, callback=_duration, help=help)


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
@duration_option(
    "--interval", "60", "Time from one sync's start to the next: seconds, or 90s, 5m, 1h."
)
@duration_option(
    "--full-every", "24h", "A group gets a full reconcile when its last is older than this."
)
@click.option("--send", is_flag=True, help="Replay the outbox at every iteration.")
@hook_options
@click.option("--jsonl", is_flag=True, help="Print each new event as one JSON line on stdout.")
@click.option(
    "--fire-on-backfill", is_flag=True, help="A group's first sync fires events for history."
)
@duration_option(
    "--max-backoff", "15m", "The longest wait after failures (the wait doubles from --interval)."
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


