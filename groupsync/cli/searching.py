"""Full-text search and the index."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from ..archive import Archive
from ..terminal import safe_text
from .base import (
    GROUP_HELP,
    _access_checked,
    _cell,
    _log_access,
    archives_option,
    cli,
    echo_index_report,
    echo_json,
    index_option,
    search_index_path,
    settings_from,
    table_option,
)
from .syncing import Progress

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
@index_option()
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
    options = {"limit": limit, "offset": offset, "group": group, "sort": sort,
               "include_deleted": include_deleted}  # fmt: skip
    if archives:
        if index_path:
            raise click.UsageError("--index does not go with --archive (each index is beside it)")
        results = search_shards(archives, query, per_post=per_post, **options)
    else:
        results = _search_one(settings, index_path, query, per_post=per_post, **options)
    target = query if group is None else f"{query} [group {group}]"
    matched = getattr(results, "posts", results.total)  # posts, whether listed by thread or not
    for path in paths:
        _log_access(path, "search", target, matched)
    _echo_search(results, offset, as_table)


def search_shards(paths, query, *, per_post, **options):
    """Several archives (shards) searched as one, each opened read-only."""
    from .. import search as fulltext
    from ..search.federated import search_archives, search_threads_archives

    run: Any = search_archives if per_post else search_threads_archives

    with contextlib.ExitStack() as stack, Progress(sys.stderr.isatty()) as progress:
        opened = []
        for path in dict.fromkeys(paths):
            archive = stack.enter_context(Archive(path, readonly=True))
            opened.append((path, archive, fulltext.index_path_for(path)))
        return run(opened, query, catch_up=True, progress=progress, **options)


def _search_one(settings, index_path, query, *, per_post, **options):
    """The archive (--db) searched, opened read-only."""
    from .. import search as fulltext

    run: Any = fulltext.search if per_post else fulltext.search_threads
    with Progress(sys.stderr.isatty()) as progress, Archive(settings.db, readonly=True) as archive:
        return run(archive, search_index_path(settings, index_path), query, catch_up=True,
                   progress=progress, **options)  # fmt: skip


def _echo_search(results, offset, as_table) -> None:
    from .. import search as fulltext

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
@index_option()
@click.pass_context
def index_command(ctx, rebuild, check, keep_deleted, index_path):
    """Bring the search index up to the archive (each sync does this on its own).

    --rebuild starts over (a progress bar on a terminal); --check lists posts missing or
    stale in the index, and documents it should not have.
    """
    from .. import search as fulltext

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


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


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
            safe_text(
                f"{shown} of {_count(results.total, 'thread')} "
                f"({_count(results.posts, 'matching post')})"
            ),
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


