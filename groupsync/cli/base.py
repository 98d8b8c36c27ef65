"""The ``groupsync`` command group and what every command shares: settings, output, options."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from .. import access
from ..archive import Archive
from ..config import cli_actor, load_settings
from ..errors import GroupsyncError, ValidationError
from ..groupref import GroupSelection, resolve_group
from ..ids import check_id
from ..shards import parse_shard
from ..terminal import json_text, safe_text
from ..version import __version__


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


def index_option(help: str = "Search index folder [default: the database path + .whoosh]."):
    """``--index``: a search index folder, as ``index_path``."""
    return click.option("--index", "index_path", type=click.Path(file_okay=False), help=help)


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


def search_index_path(settings, index_path) -> Path:
    from .. import search as fulltext

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


