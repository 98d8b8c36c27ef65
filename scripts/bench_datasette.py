"""Page load times of the Datasette plugin on the 100,000-post benchmark archive.

    .venv/bin/python scripts/bench_datasette.py [--posts 100000 --threads 5000 --groups 20]
        [--cache /tmp/gs-bench-ds] [--runs 20] [--json]

Builds the archive once and keeps it in ``--cache`` (rebuilt when the parameters change):
``scripts/generate_tenant.py`` writes a seeded tenant, ``groupsync simulate`` serves it in
its own process, ``groupsync sync --all`` (GROUPSYNC_RATE=0) archives it, and the Whoosh
index is built (``groupsync index`` where that command exists, else ``search.update_index``).

Then Datasette runs in this process on the archive (read-only, immutable, as
``groupsync serve --immutable``) and every page is fetched through Datasette's own client,
so the times are server time: routing, SQL, sanitising, search and template rendering,
without a network. Each page is fetched once cold (first load) and then ``--runs`` times;
the median and the 95th percentile are reported. Targets: the thread view of a 100-post
thread and a search page under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import free_port  # noqa: E402
from datasette.utils import tilde_encode  # noqa: E402

from groupsync import search  # noqa: E402
from groupsync.archive import Archive  # noqa: E402
from groupsync.datasette_plugin.server import make_datasette  # noqa: E402

SEED = 1
TARGET_MS = 300.0



def groupsync(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return subprocess.run([sys.executable, "-m", "groupsync", *args], env=env, **kwargs)


def ensure_archive(cache: Path, groups: int, threads: int, posts: int) -> Path:
    """The synced archive for these parameters, built only when missing."""
    name = f"g{groups}-t{threads}-p{posts}-s{SEED}"
    db = cache / f"{name}.db"
    stamp = cache / f"{name}.synced"
    if stamp.exists() and db.exists():
        return db
    cache.mkdir(parents=True, exist_ok=True)
    tenant = cache / f"tenant-{name}"
    if not (tenant / "groups.json").exists():
        print(f"generating the tenant in {tenant} ...", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "generate_tenant.py"),
                *("--groups", str(groups), "--threads", str(threads)),
                *("--posts", str(posts), "--seed", str(SEED), "--out", str(tenant)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    for stale in cache.glob(f"{name}.db*"):
        if stale.is_file():
            stale.unlink()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "groupsync", "simulate", "--data", str(tenant)]
        + ["--port", str(port), "--max-concurrency", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with closing(socket.create_connection(("127.0.0.1", port), 0.5)):
                    break
            except OSError:
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the simulator did not start") from None
                time.sleep(0.3)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPSYNC_")}
        env.update(
            GROUPSYNC_GRAPH_URL=f"http://127.0.0.1:{port}/v1.0",
            GROUPSYNC_ACCESS_TOKEN="bench",
            GROUPSYNC_DB=str(db),
            GROUPSYNC_RATE="0",
            XDG_CONFIG_HOME=str(cache / "xdg"),
        )
        print(f"syncing {posts:,} posts into {db} ...", file=sys.stderr)
        began = time.perf_counter()
        groupsync("sync", "--all", "--quiet", env=env, check=True)
        print(f"  synced in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stamp.write_text(json.dumps({"groups": groups, "threads": threads, "posts": posts}))
    return db


def ensure_index(db: Path) -> None:
    """Build or catch up the search index, as the CLI would (``groupsync index``)."""
    began = time.perf_counter()
    has_index_command = groupsync("index", "--help", capture_output=True).returncode == 0
    if has_index_command:
        groupsync("--db", str(db), "index", check=True, stdout=subprocess.DEVNULL)
    else:
        with Archive.open_for_writing(db) as archive:
            search.update_index(archive, search.index_path_for(db))
        search.close_indexes()
    took = time.perf_counter() - began
    if took > 2:
        print(f"  search index built in {took:.0f} s", file=sys.stderr)


def pages_to_time(db: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(db)) as conn:
        group_id, thread_id, n = conn.execute(
            "select group_id, thread_id, count(*) as n from posts where deleted_at is null "
            "group by thread_id order by n desc limit 1"
        ).fetchone()
        group_name = conn.execute(
            "select displayName from groups where id = ?", (group_id,)
        ).fetchone()[0]
        attachments = conn.execute(
            "select t.group_id, t.id, count(a.id) from threads t join posts p on p.thread_id = "
            "t.id join attachments a on a.post_id = p.id group by t.id order by 3 desc limit 1"
        ).fetchone()
    thread = f"/-/groupsync/thread/{tilde_encode(group_id)}/{tilde_encode(thread_id)}"

    def find(**args: Any) -> str:
        return "/-/groupsync/search?" + urlencode(args)

    out = [
        (f"thread view, {n}-post thread", thread),
        (
            f"thread view, {attachments[2]} attachments",
            f"/-/groupsync/thread/{tilde_encode(attachments[0])}/{tilde_encode(attachments[1])}",
        ),
        ("search: invoice (a common word)", find(q="invoice")),
        ("search: invoice, page 5", find(q="invoice", page=5)),
        ("search: invoice, newest first", find(q="invoice", sort="date")),
        ('search: "budget forecast" (phrase)', find(q='"budget forecast"')),
        ("search: smörgåsbord Kraków (rare)", find(q="smörgåsbord Kraków")),
        (
            "search: topic + group + dates",
            find(
                q='topic:"Budget planning"', group=group_id, after="2024-03-01", before="2025-06-30"
            ),
        ),  # fmt: skip
        (
            f"search: group:{group_name.split()[0].lower()} launch",
            find(q=f"group:{group_name.split()[0].lower()} launch"),
        ),  # fmt: skip
        ("index page (/-/groupsync/)", "/-/groupsync/"),
    ]
    return out


async def measure(db: Path, runs: int) -> list[dict[str, Any]]:
    ds = make_datasette(db, immutable=True)
    await ds.invoke_startup()
    results = []
    for label, path in pages_to_time(db):
        times = []
        status = None
        for _ in range(runs + 1):
            began = time.perf_counter()
            response = await ds.client.get(path)
            times.append((time.perf_counter() - began) * 1000)
            status = response.status_code
        if status != 200:
            raise SystemExit(f"{path} answered {status}: {response.text[:500]}")
        warm = sorted(times[1:])
        results.append(
            {
                "page": label,
                "path": path,
                "first_ms": round(times[0], 1),
                "median_ms": round(statistics.median(warm), 1),
                "p95_ms": round(warm[max(0, round(0.95 * len(warm)) - 1)], 1),
                "bytes": len(response.content),
            }
        )
    search.close_indexes()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--threads", type=int, default=5000)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/gs-bench-ds"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    db = ensure_archive(args.cache, args.groups, args.threads, args.posts)
    ensure_index(db)
    with closing(sqlite3.connect(db)) as conn:
        count = conn.execute("select count(*) from posts").fetchone()[0]
    results = asyncio.run(measure(db, args.runs))
    if args.json:
        print(json.dumps({"posts": count, "archive": str(db), "results": results}, indent=2))
        return 0
    print(f"{count:,} posts in {db} ({db.stat().st_size / 1e6:.0f} MB); {args.runs} runs each")
    print(f"{'page':<40} {'first':>9} {'median':>9} {'p95':>9}")
    for r in results:
        flag = "" if r["median_ms"] < TARGET_MS else "  over target"
        print(
            f"{r['page']:<40} {r['first_ms']:>7.1f}ms {r['median_ms']:>7.1f}ms "
            f"{r['p95_ms']:>7.1f}ms{flag}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
