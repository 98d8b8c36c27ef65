"""serve, its accounts and the access log."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import access
from ..archive import writable
from ..export import parse_bound
from ..terminal import safe_text
from .base import _access_checked, cli, echo_table, settings_from


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
    from ..datasette_plugin.accounts import load_accounts
    from ..datasette_plugin.server import check_archive, is_loopback, update_search_index
    from ..datasette_plugin.server import serve as serve_datasette
    from ..search import IndexWriteError

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



def _serve_users_path(ctx) -> Path:
    from ..datasette_plugin.accounts import serve_users_path

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
    from ..datasette_plugin.accounts import add_account

    path = _serve_users_path(ctx)
    new = add_account(path, name, role, password)
    verb = "Added" if new else "Updated"
    click.echo(safe_text(f"{verb} {name} ({role}) in {path}; restart serve to use it."), err=True)


@serve_user.command(name="list")
@click.pass_context
def serve_user_list(ctx):
    """The accounts and their roles (never their password hashes)."""
    from ..datasette_plugin.accounts import load_accounts

    accounts = load_accounts(_serve_users_path(ctx))
    echo_table([{"name": n, "role": a["role"]} for n, a in sorted(accounts.items())],
               ["name", "role"])  # fmt: skip


@serve_user.command(name="remove")
@click.argument("name")
@click.pass_context
def serve_user_remove(ctx, name):
    """Remove an account (serve keeps it until restarted)."""
    from ..datasette_plugin.accounts import remove_account

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


