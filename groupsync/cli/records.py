"""Export and verify: what leaves the archive, and the proof it is whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from .. import auth
from ..archive import Archive, writable
from ..export import FORMATS, PARTIAL_EXIT, ExportOptions
from ..export import export as export_archive
from ..export_check import check_export
from ..integrity import loose_permissions
from ..integrity import verify as verify_archive
from ..production import DEFAULT_PREFIX, ProductionOptions, check_prefix, posts_matching, produce
from ..terminal import safe_text
from .base import (
    GROUP_HELP,
    _access_checked,
    _log_access,
    _resolve_group_param,
    archives_option,
    cli,
    echo_json,
    index_option,
    search_index_path,
    settings_from,
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
            from ..holds import held_post_ids

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
@index_option("Search index to check [default: the database path + .whoosh, if there].")
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
        from .. import search as fulltext

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


