"""Benchmark ``purge``: 10,000 posts out of the 100,000-post benchmark archive.

    .venv/bin/python scripts/bench_purge.py [--posts 100000] [--purge 10000] [--groups 20]
        [--threads 10000] [--seed 1] [--work /tmp/bench-purge] [--with-index]
        [--query-hold QUERY] [--json OUT]

1. The archive of the generated benchmark tenant, synced once by ``groupsync sync --all``
   and cached in ``--work`` (the same tenant and sync as ``bench_search.py``).
2. A fresh copy of it per run, with an archive-wide policy of one day and a clock set one
   day after the delivery time of the ``--purge``-th oldest post, so that the oldest
   ``--purge`` posts (give or take posts delivered in the same second) are past retention,
   and a legal hold (one group, the days of the 100 oldest posts) covering a few of them,
   which the purge must keep.
3. The purge runs in a process of its own (the library's ``purge``, as ``groupsync purge``
   calls it, with that clock): its wall time from start to exit, and its peak RSS
   (``ru_maxrss`` of the process). With ``--with-index`` the copy has a search index, which
   the purge brings up to date afterwards (that time included). ``--query-hold QUERY``
   makes the hold a search query instead (it implies ``--with-index``), evaluated through
   the index over the purge's candidates.
4. ``verify`` of the purged copy must pass; the figures say how many posts, versions and
   blobs went, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search import ensure_archive  # noqa: E402 - the shared benchmark archive

ROOT = Path(__file__).resolve().parent.parent


def child(db: str, now: str, index: str | None) -> None:
    """The measured process: the purge, then its own figures as JSON on stdout."""
    sys.path.insert(0, str(ROOT))
    from groupsync.archive import Archive
    from groupsync.purge import purge

    started = time.perf_counter()
    with Archive.open_for_writing(db) as archive:
        report = purge(archive, actor="os:bench", now=lambda: now, index_path=index)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {k: v for k, v in report.as_dict().items() if k != "post_ids"}
    print(json.dumps({"report": out, "purge_seconds": seconds, "peak_rss_kib": peak_kib}))


def prepare(
    source: Path, work: Path, count: int, with_index: bool, query: str | None
) -> tuple[Path, str]:
    """A fresh copy with its policy and hold; the clock the purge must run at."""
    sys.path.insert(0, str(ROOT))
    from groupsync import holds, retention, search
    from groupsync.archive import Archive

    run = work / "run.db"
    for stale in work.glob("run.db*"):
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    shutil.copy(source, run)
    with closing(sqlite3.connect(run)) as conn:
        dates = conn.execute(
            "SELECT coalesce(receivedDateTime, createdDateTime) AS d FROM posts "
            "WHERE d IS NOT NULL ORDER BY d LIMIT 1 OFFSET :n",
            {"n": count},
        ).fetchone()
        group, first, hundredth = conn.execute(
            "SELECT group_id, min(receivedDateTime), max(receivedDateTime) FROM ("
            "SELECT group_id, receivedDateTime FROM posts ORDER BY receivedDateTime LIMIT 100)"
        ).fetchone()
    moment = datetime.fromisoformat(dates[0].replace("Z", "+00:00")) + timedelta(days=1)
    now = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with Archive.open_for_writing(run) as archive:
        retention.set_policy(archive, "1d", actor="os:bench", now=lambda: now)
        if query:
            holds.create_hold(archive, "bench-hold", actor="os:bench", query=query,
                              now=lambda: now)  # fmt: skip
        else:
            holds.create_hold(archive, "bench-hold", actor="os:bench", groups=[group],
                              from_date=first[:10], to_date=hundredth[:10],
                              now=lambda: now)  # fmt: skip
        if with_index or query:
            search.rebuild_index(archive, search.index_path_for(run), procs=2,
                                 keep_deleted=bool(query))  # fmt: skip
    with closing(sqlite3.connect(run)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return run, now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--purge", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-purge"))
    parser.add_argument("--with-index", action="store_true")
    parser.add_argument("--query-hold", metavar="QUERY")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("DB", "NOW", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        db, now, index = args.child
        child(db, now, index or None)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    source = ensure_archive(args.work, args.posts, args.groups, args.threads, args.seed)
    with_index = args.with_index or bool(args.query_hold)
    run, now = prepare(source, args.work, args.purge, with_index, args.query_hold)
    index = str(Path(f"{run}.whoosh")) if with_index else ""
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(run), now, index],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    measured = json.loads(proc.stdout)
    verified = subprocess.run(
        [sys.executable, "-m", "groupsync", "--db", str(run), "verify", "--json"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(verified.stdout)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "archive_posts": args.posts,
        "with_index": with_index,
        "query_hold": args.query_hold,
        "purged_posts": measured["report"]["posts"],
        "purged_versions": measured["report"]["versions"],
        "purged_blobs": measured["report"]["blobs"],
        "purged_bytes": measured["report"]["bytes"],
        "held": measured["report"]["held"],
        "process_wall_seconds": round(wall, 2),
        "purge_seconds": round(measured["purge_seconds"], 2),
        "peak_rss_mib": round(measured["peak_rss_kib"] / 1024, 1),
        "verify_ok": report["ok"],
        "verify_purges": len(report["purges"]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not report["ok"]:
        raise SystemExit(f"verify failed after the purge: {report['problems'][:3]}")


if __name__ == "__main__":
    main()
