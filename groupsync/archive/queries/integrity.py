"""What ``verify`` reads: SQLite's and FTS5's own checks, and every row it re-hashes.

Read only, on whatever connection the archive was opened with (``immutable`` for an
evidence copy on a read-only mount)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from ..connection import Connection, connect_readonly

_FTS5 = re.compile(r"^CREATE VIRTUAL TABLE\s+(\S+)\s+USING\s+FTS5\s*\(", re.I)
_CONTENT = re.compile(r"""\bcontent\s*=\s*(?:"([^"]+)"|'([^']+)'|\[([^\]]+)\]|(\w+))""", re.I)
CHAINED_TABLES = ("post_versions", "blobs", "events")


def integrity_check(archive: Connection, limit: int = 100) -> list[tuple[str]]:
    """SQLite's ``PRAGMA integrity_check``: ``[("ok",)]``, or up to ``limit`` problems."""
    return archive.conn.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()


def table_columns(archive: Connection, table: str) -> set[str]:
    """The column names of one of the archive's tables."""
    return {r[1] for r in archive.conn.execute(f"PRAGMA table_info({_quote(table)})")}


def version_rows(archive: Connection) -> Iterator[tuple[str, str, str, str, int | None]]:
    """Every stored post version: ``(post_id, changeKey, json, sha256, sync_run_id)``."""
    yield from archive.conn.execute(
        "SELECT post_id, changeKey, json, sha256, sync_run_id FROM post_versions"
    )


def post_rows_with_version(
    archive: Connection, columns: Iterable[str]
) -> Iterator[tuple[Any, ...]]:
    """Every post with the JSON of the version its changeKey names (NULL if none):
    ``(id, changeKey, json, *columns)``."""
    names = ", ".join(f"p.{_quote(c)}" for c in columns)
    yield from archive.conn.execute(
        f"SELECT p.id, p.changeKey, v.json, {names} FROM posts AS p "
        "LEFT JOIN post_versions AS v ON v.post_id = p.id AND v.changeKey = p.changeKey"
    )


def blob_rows(archive: Connection) -> list[tuple[str, int, int | None]]:
    """Every blob: ``(sha256, size, sync_run_id)``."""
    return archive.conn.execute("SELECT sha256, size, sync_run_id FROM blobs").fetchall()


def attachments_without_blob(archive: Connection) -> Iterator[tuple[str, str, str | None, str]]:
    """Attachments pointing at a blob that is not there: ``(post_id, id, name, sha256)``."""
    yield from archive.conn.execute(
        "SELECT a.post_id, a.id, a.name, a.sha256 FROM attachments AS a "
        "LEFT JOIN blobs AS b ON b.sha256 = a.sha256 "
        "WHERE a.sha256 IS NOT NULL AND b.sha256 IS NULL"
    )


def count_attachments(archive: Connection) -> int:
    """How many attachment rows the archive holds, deleted ones too."""
    return int(archive.conn.execute("SELECT count(*) FROM attachments").fetchone()[0])


def run_rows(archive: Connection) -> list[tuple[int, str, str | None, str | None, int | None]]:
    """Every sync run in order: ``(id, status, digest, prev_digest, digest_items)``."""
    return archive.conn.execute(
        "SELECT id, status, digest, prev_digest, digest_items FROM sync_runs ORDER BY id"
    ).fetchall()


def rows_per_run(archive: Connection, table: str) -> Iterator[tuple[int, int]]:
    """``(sync_run_id, rows)`` of one of ``CHAINED_TABLES``, by run."""
    if table not in CHAINED_TABLES:
        raise ValueError(f"{table} is not written by sync runs")
    yield from archive.conn.execute(
        f"SELECT sync_run_id, count(*) FROM {table} WHERE sync_run_id IS NOT NULL "
        "GROUP BY sync_run_id ORDER BY sync_run_id"
    )


def fts_checks(archive: Connection) -> Iterator[tuple[str, str, str | None]]:
    """FTS5's ``integrity-check`` of each full-text table, against its content table too:
    ``(table, what it indexes, error or None)``.

    The check is an INSERT, which a read-only connection refuses even though it writes
    nothing. So it runs on a copy: the same FTS5 table created in a new connection's private
    ``temp`` schema, its shadow tables filled from the archive's, its content table a temp
    view of the archive's. The copy must be complete before FTS5 first reads it (FTS5 keeps
    the index structure it read for as long as no other connection writes).
    """
    tables = archive.conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL%'"
    ).fetchall()
    for name, sql in tables:
        match = _FTS5.match(sql or "")
        content = _CONTENT.search(sql or "")
        if match is None:
            continue
        # Opened the way the archive was (immutable for an evidence copy on a read-only mount).
        conn, _ = connect_readonly(archive.path)
        conn.isolation_level = None
        error = None
        try:
            _fts_copy(conn, name, sql, match, content)
            conn.execute(f"INSERT INTO temp.{_quote(name)} ({_quote(name)}, rank) "
                         "VALUES ('integrity-check', 1)")  # fmt: skip
        except sqlite3.DatabaseError as ex:
            error = str(ex)
        finally:
            conn.close()
        yield name, _content_name(content) or name, error


def _fts_copy(
    conn: sqlite3.Connection,
    name: str,
    sql: str,
    match: re.Match[str],
    content: re.Match[str] | None,
) -> None:
    source = _content_name(content)
    if source is not None:
        columns = [r[1] for r in conn.execute(f"PRAGMA main.table_info({_quote(name)})")]
        names = ", ".join(_quote(c) for c in columns)
        conn.execute(
            f"CREATE TEMP VIEW {_quote(source)} AS "
            f"SELECT rowid AS rowid, {names} FROM main.{_quote(source)}"
        )
    conn.execute(f"CREATE VIRTUAL TABLE temp.{_quote(name)} USING FTS5 (" + sql[match.end():])
    for shadow in ("data", "idx", "docsize", "config", "content"):
        table = _quote(f"{name}_{shadow}")
        if conn.execute(
            "SELECT 1 FROM main.sqlite_master WHERE name = :name", {"name": f"{name}_{shadow}"}
        ).fetchone():
            conn.execute(f"DELETE FROM temp.{table}")
            conn.execute(f"INSERT INTO temp.{table} SELECT * FROM main.{table}")


def _content_name(content: re.Match[str] | None) -> str | None:
    return next((g for g in content.groups() if g), None) if content else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
