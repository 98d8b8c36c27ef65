"""Benchmark search with the access log on against off (issue 14's target: within 5 %).

    .venv/bin/python scripts/bench_access.py prepare [--work /tmp/gs-bench-access]
        [--groups 4 --threads 500 --posts 5000 --attachments 500]
    .venv/bin/python scripts/bench_access.py run --log on|off [--work ...] [--queries 200]

``prepare`` generates the seeded tenant, syncs it with the real CLI against ``groupsync
simulate`` (as ``bench_export.py`` does) and builds its search index, once. ``run`` is one
process that opens the archive read-only and answers ``--queries`` fixed queries (drawn
with seed 1: one word, two words, a quoted phrase taken from a post, and from: + a word),
each the total and the top 20 with snippets, as ``groupsync search`` does; with ``--log
on`` each query also appends its access-log row (``access.log_access``), as the CLI and
the search page do. Compare the two as whole processes, in turn, with farm-bench:

    farm-bench -n 11 --timeout 900 --vs '.venv/bin/python scripts/bench_access.py run --log off' \\
        -- .venv/bin/python scripts/bench_access.py run --log on

The access log is a fresh file per run (``WORK/run-<pid>.access``, removed after), so every
run appends to a log of the same size.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_export  # noqa: E402

from groupsync import access, search  # noqa: E402
from groupsync.archive import Archive  # noqa: E402

SEED = 1


def queries(db: Path, count: int) -> list[str]:
    """Fixed queries: words and phrases from the archive's own posts, drawn with a seed."""
    rng = random.Random(SEED)
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        texts = [r[0] for r in conn.execute(
            "SELECT body_text FROM posts WHERE length(body_text) > 80 ORDER BY id LIMIT 2000")]
        senders = [r[0] for r in conn.execute(
            "SELECT DISTINCT sender_address FROM posts WHERE sender_address IS NOT NULL "
            "ORDER BY 1 LIMIT 200")]  # fmt: skip
    words = sorted({w.lower() for t in texts for w in t.split() if w.isalpha() and len(w) > 4})
    out = []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            out.append(rng.choice(words))
        elif kind == 1:
            out.append(f"{rng.choice(words)} {rng.choice(words)}")
        elif kind == 2:
            parts = rng.choice(texts).split()
            start = rng.randrange(max(1, len(parts) - 3))
            out.append('"' + " ".join(parts[start:start + 3]).replace('"', "") + '"')
        else:
            out.append(f"from:{rng.choice(senders)} {rng.choice(words)}")
    return out


def archive_path(args: argparse.Namespace) -> Path:
    """Where ``bench_export.ensure_archive`` keeps the synced tenant."""
    name = f"tenant-{args.groups}g-{args.threads}t-{args.posts}p-{args.attachments}a"
    return args.work / f"archive-{name}.db"


def prepare(args: argparse.Namespace) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    size = {"groups": args.groups, "threads": args.threads, "posts": args.posts,
            "attachments": args.attachments}  # fmt: skip
    tenant = bench_export.ensure_tenant(args.work, size)
    db, seconds = bench_export.ensure_archive(args.work, tenant)
    began = time.perf_counter()
    with Archive.open_for_writing(db) as archive:
        report = search.rebuild_index(archive, search.index_path_for(db), procs=1)
    search.close_indexes()
    synced = "kept" if seconds is None else f"synced in {seconds:.1f} s"
    print(f"{db}: {synced}; {report.documents} documents indexed in "
          f"{time.perf_counter() - began:.1f} s")  # fmt: skip


def run(args: argparse.Namespace) -> None:
    db = archive_path(args)
    if not db.exists():
        raise SystemExit(f"no archive at {db}: run `bench_access.py prepare` first")
    log = args.work / f"run-{os.getpid()}.access"
    os.environ["GROUPSYNC_ACCESS_LOG"] = str(log) if args.log == "on" else "off"
    todo = queries(db, args.queries)
    index = search.index_path_for(db)
    hits = 0
    began = time.perf_counter()
    try:
        for query in todo:
            with Archive(db, readonly=True) as archive:
                results = search.search(archive, index, query, limit=20)
            hits += results.total
            if args.log == "on":
                access.log_access(db, "os:bench", "search", query, results.total, "cli")
    finally:
        access.close_access_logs()
        search.close_indexes()
        for path in (log, Path(f"{log}-wal"), Path(f"{log}-shm")):
            path.unlink(missing_ok=True)
    seconds = time.perf_counter() - began
    print(f"log {args.log}: {len(todo)} queries, {hits} hits, {seconds:.2f} s, "
          f"{1000 * seconds / len(todo):.2f} ms/query")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["prepare", "run"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/gs-bench-access"))
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--threads", type=int, default=500)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--attachments", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--log", choices=["on", "off"], default="on")
    args = parser.parse_args()
    prepare(args) if args.step == "prepare" else run(args)


if __name__ == "__main__":
    main()
