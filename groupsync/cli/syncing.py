"""``sync`` and its progress line."""

from __future__ import annotations

import functools
import sys
import time
from datetime import timedelta
from typing import Any

import click

from .. import auth
from ..archive import Archive
from ..config import THROTTLE_PROFILES
from ..lock import WriterLock
from ..sync import Syncer, SyncOptions
from ..terminal import safe_text
from .base import (
    _shard_param,
    cli,
    echo_index_report,
    echo_json,
    group_selection_options,
    index_option,
    search_index_path,
    settings_from,
)
from .signin import _client
from .writes import replay_outbox


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
@index_option()
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
    from .. import search as fulltext

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


