"""Retention, legal holds and purge."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..archive import Archive, writable
from ..config import cli_actor
from ..errors import ArchiveError
from ..lock import WriterLock
from ..stopping import stopping
from ..terminal import safe_text
from .base import (
    GROUP_HELP,
    _access_checked,
    _log_access,
    _resolve_group_param,
    cli,
    echo_json,
    echo_table,
    index_option,
    search_index_path,
    settings_from,
)


def _governance_archive(settings):
    """The archive, for a command that writes policies, holds or purges: the writer lock
    held, the schema migrated. A missing archive is an error, not a new empty one."""
    if not Path(settings.db).exists():
        raise ArchiveError(f"no archive at {settings.db}; run `groupsync sync` first")
    stack = contextlib.ExitStack()
    stack.enter_context(WriterLock(settings.db, "groupsync retention/hold/purge"))
    archive = stack.enter_context(Archive.open_for_writing(settings.db))
    return stack, archive


@contextlib.contextmanager
def _governing(ctx):
    """``(settings, archive)`` for a command that sets a policy or a hold: the access log
    checked first (the command is logged), then the archive as ``_governance_archive``."""
    settings = settings_from(ctx)
    _access_checked(settings.db)
    stack, archive = _governance_archive(settings)
    with stack:
        yield settings, archive


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
    from ..retention import parse_keep, set_policy

    parse_keep(keep)  # a wrong one is refused before the archive is opened
    with _governing(ctx) as (settings, archive):
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
    from ..archive.queries.governance import has_governance
    from ..retention import list_policies

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
    from ..retention import clear_policy

    with _governing(ctx) as (settings, archive):
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
    from ..holds import create_hold

    with _governing(ctx) as (settings, archive):
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
    from ..archive.queries.governance import has_governance
    from ..holds import list_holds

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
@index_option()
@click.pass_context
def hold_show(ctx, name, as_json, index_path):
    """A hold and the posts it covers now (mail that arrived since included)."""
    from ..holds import get_hold, matching_posts

    settings = settings_from(ctx)
    path = search_index_path(settings, index_path)
    _access_checked(settings.db)
    with Archive(settings.db, readonly=True) as archive:
        hold = get_hold(archive, name)
        if hold.query is not None and path.exists() and writable(path):
            from .. import search as fulltext

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
    from ..holds import release_hold

    with _governing(ctx) as (settings, archive):
        hold = release_hold(archive, name, actor=cli_actor())
    _log_access(settings.db, "hold", f"release {hold.name}", None)
    click.echo(safe_text(f"Legal hold {hold.name} released"))


@cli.command(name="purge")
@click.option("--dry-run", is_flag=True, help="List what would be removed; write nothing.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000),
              help="Posts removed per transaction.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option()
@click.pass_context
def purge_command(ctx, dry_run, batch_size, as_json, index_path):
    """Remove posts past their retention policy and under no legal hold: bodies, versions,
    attachment bytes no other post uses, and their search entries.

    Each removed item keeps a tombstone (its ids, SHA-256 and size) and the purge a record
    in the governance chain, so `verify` still passes and lists the purge. Safe to stop:
    the next purge finishes the job. Exit 1 if a query hold cannot be checked (no current
    search index).
    """
    from ..purge import purge

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
