"""Benchmark a whole `groupsync sync` against the simulator, at 10k posts and at full size.

    .venv/bin/python scripts/bench_sync.py [--groups 20 --threads 5000 --posts 50000
        --attachments 5000] [--tenant-dir DIR] [--profile] [--json]

For each size (a tenant scaled down to 10,000 posts, then the one asked for) it generates a
seeded tenant (cached in ``--tenant-dir`` when given and the parameters match), starts the
simulator in its own process (``groupsync simulate --max-concurrency 0``, ``$top`` up to
50), and runs the real CLI as a subprocess with the throttle off (GROUPSYNC_RATE=0):

1. ``sync --json --all`` into a fresh archive: wall time, posts stored per second, the
   requests it reports (cross-checked with the simulator's ``/_sim/log``) against the fewest
   the API allows, and the sync process's peak RSS (``/usr/bin/time -f %M``, else the
   child's VmHWM polled from /proc; the simulator is a separate process and not counted);
2. the archive's size after ``PRAGMA wal_checkpoint(TRUNCATE)``, per 1,000 posts, and how
   much of it is attachment bytes (``blobs``);
3. a no-change incremental ``sync --json`` and a ``sync --json --full`` reconcile of the
   unchanged archive: requests and time.

``--profile`` adds a ``python -m cProfile`` run of the 10k first sync (fresh archive) and
prints the 15 functions with the most cumulative time, and the 15 with the most own time.
cProfile sees the main thread only: that is where every archive write happens; the HTTP
fetching in the worker threads shows up as time waiting in ``Future.result``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pstats
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import httpx
from benchlib import free_port

ROOT = Path(__file__).resolve().parent.parent
SEED = 1
SMALL_POSTS = 10_000
PAGE = 50  # the simulator's --max-top default and the sync's $top
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None
TARGET_POSTS_PER_S = 2_000
TARGET_RSS_MB = 300


# -- tenants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    groups: int
    threads: int
    posts: int
    attachments: int

    @property
    def label(self) -> str:
        return f"{self.posts // 1000}k" if self.posts % 1000 == 0 else str(self.posts)

    @property
    def folder(self) -> str:
        return f"g{self.groups}-t{self.threads}-p{self.posts}-a{self.attachments}-s{SEED}"

    def scaled(self, posts: int) -> Size:
        f = posts / self.posts
        groups = max(1, round(self.groups * f))
        threads = max(groups, round(self.threads * f))
        return Size(groups, threads, posts, round(self.attachments * f))


def ensure_tenant(root: Path, size: Size) -> Path:
    """The generated tenant for ``size``, generated only if not already there."""
    return benchlib.ensure_tenant(
        root / size.folder,
        groups=size.groups,
        threads=size.threads,
        posts=size.posts,
        attachments=size.attachments,
        seed=SEED,
    )


def pages(n: int) -> int:
    """Requests to read a collection of ``n`` items: an empty one still takes one."""
    return max(1, math.ceil(n / PAGE))


def tenant_counts(tenant: Path) -> dict[str, int]:
    """Counts from the tenant's files and the fewest requests each kind of sync needs.

    First sync (``--all``): the groups pages, then per group its conversation pages and thread
    pages, and per thread its post pages (attachments come inside them with ``$expand``).
    A full reconcile of archived groups: the same without the groups pages. A no-change
    incremental sync: one thread page per group.
    """
    groups = json.loads((tenant / "groups.json").read_text())["value"]
    counts = dict(groups=len(groups), conversations=0, threads=0, posts=0, attachments=0)
    per_group_full = 0
    for group in groups:
        data = json.loads((tenant / "groups" / f"{group['id']}.json").read_text())
        conversations = data["conversations"]
        threads = [t for c in conversations for t in c["threads"]]
        posts = [p for t in threads for p in t["posts"]]
        counts["conversations"] += len(conversations)
        counts["threads"] += len(threads)
        counts["posts"] += len(posts)
        counts["attachments"] += sum(len(p.get("attachments") or []) for p in posts)
        per_group_full += pages(len(conversations)) + pages(len(threads))
        per_group_full += sum(pages(len(t["posts"])) for t in threads)
    counts["min_first"] = pages(len(groups)) + per_group_full
    counts["min_full"] = per_group_full
    counts["min_incremental"] = len(groups)
    return counts


# -- the simulator and the sync, each in its own process ---------------------------------



class SimulatorProcess:
    def __init__(self, tenant: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "groupsync", "simulate", "--data", str(tenant)),
                *("--port", str(self.port), "--max-concurrency", "0"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                self.log_total()
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the simulator did not start on {self.base}") from None
                time.sleep(0.2)

    def log_total(self) -> int:
        response = httpx.get(self.base + "/_sim/log", timeout=120)
        response.raise_for_status()
        return int(response.json()["total"])

    def reset_log(self) -> None:
        httpx.post(self.base + "/_sim/reset-log", timeout=30).raise_for_status()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    report: dict[str, Any]
    sim_requests: int
    cpu_seconds: float | None  # the sync process's user + sys (GNU time), None without it


def run_sync(
    sim: SimulatorProcess, db: Path, work: Path, *args: str, profile: Path | None = None
) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPSYNC_")}
    env.update(
        GROUPSYNC_GRAPH_URL=sim.base + "/v1.0",
        GROUPSYNC_ACCESS_TOKEN="bench",
        GROUPSYNC_DB=str(db),
        GROUPSYNC_RATE="0",
        XDG_CONFIG_HOME=str(work / "xdg"),
    )
    python = [sys.executable, *(("-m", "cProfile", "-o", str(profile)) if profile else ())]
    # --no-index: this measures the sync; the search index is bench_search.py's business.
    command = [*python, "-m", "groupsync", "sync", "--json", "--no-index", *args]
    rss_file = work / "sync.rss"
    rss_file.unlink(missing_ok=True)
    if GNU_TIME:
        # GNU time forks and execs the sync, then reports that child's ru_maxrss. Not
        # os.wait4 from here: a child's ru_maxrss starts from the RSS of the process that
        # forked it, which here holds the tenant's JSON (docs/performance.md, "Sync").
        # User and system CPU too: on 2 shared cores the simulator's work and the machine's
        # load move wall time; the sync's own CPU compares two versions of the client.
        command = [GNU_TIME, "-f", "%M %U %S", "-o", str(rss_file), *command]
    sim.reset_log()
    out, err = work / "sync.out", work / "sync.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        began = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        peak_kb = 0 if GNU_TIME else benchlib.poll_vmhwm(proc)
        proc.wait()
        seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err.read_text()[-3000:]}")
    cpu = None
    if GNU_TIME:
        kb, user, system = rss_file.read_text().split()[-3:]
        peak_kb, cpu = int(kb), float(user) + float(system)
    report = json.loads(out.read_text())
    return Run(seconds, peak_kb / 1024, report, sim.log_total(), cpu)


def archive_size(db: Path) -> dict[str, int]:
    """The file after a WAL checkpoint, attachment bytes, and (if SQLite has ``dbstat``) the
    bytes of pages per kind of table, indexes included."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes = {
            "file": db.stat().st_size,
            "blob_content": conn.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0],
        }
        try:
            rows = conn.execute(
                "SELECT m.tbl_name, sum(s.pgsize) FROM dbstat s "
                "JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
            ).fetchall()
        except sqlite3.OperationalError:
            return sizes
        sizes.update(id_sizes(conn))
    for table, size in rows:
        kind = "fts" if "_fts" in table else table
        if kind not in ("blobs", "posts", "post_versions", "fts"):
            kind = "other"
        sizes[f"pages_{kind}"] = sizes.get(f"pages_{kind}", 0) + size
    return sizes


# Columns holding an Exchange id (about 150 characters) or a group's GUID, by table: what
# integer surrogate keys would replace (docs/design.md, "Reading the archive in Datasette").
ID_COLUMNS = {
    "posts": ["id", "group_id", "conversation_id", "thread_id", "in_reply_to_id"],
    "post_versions": ["post_id"],
    "attachments": ["post_id", "id"],
    "threads": ["id", "group_id", "conversation_id"],
    "conversations": ["id", "group_id"],
}


def id_sizes(conn: sqlite3.Connection) -> dict[str, int]:
    """Bytes of id text in those columns, and the pages of the indexes keyed by them (an
    upper bound on what surrogate keys could save; ids inside stored JSON stay)."""
    in_rows = sum(
        conn.execute(f"SELECT coalesce(sum(length({c})), 0) FROM {t}").fetchone()[0]
        for t, columns in ID_COLUMNS.items()
        for c in columns
    )
    in_indexes = 0
    try:
        pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    except sqlite3.OperationalError:
        return {"id_bytes_in_rows": in_rows}
    for name, table in conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'"):
        keyed = [r[2] for r in conn.execute(f"PRAGMA index_info('{name}')")]
        if table in ID_COLUMNS and set(keyed) & set(ID_COLUMNS[table]):
            in_indexes += pages.get(name, 0)
    return {"id_bytes_in_rows": in_rows, "id_index_pages": in_indexes}


# -- one size -----------------------------------------------------------------------------


def bench_size(size: Size, tenants: Path, profile: bool) -> dict[str, Any]:
    tenant = ensure_tenant(tenants, size)
    counts = tenant_counts(tenant)
    result: dict[str, Any] = {"size": size.label, "tenant": counts}
    sim = SimulatorProcess(tenant)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            work = Path(tmp)
            db = work / "archive.db"
            first = run_sync(sim, db, work, "--all")
            result["first"] = summarize(first, counts["min_first"])
            result["first"]["posts_per_s"] = round(counts["posts"] / first.seconds)
            result["first"]["items_new"] = first.report["items_new"]
            sizes = archive_size(db)
            result["archive"] = {
                **sizes,
                "bytes_per_1000_posts": round(sizes["file"] * 1000 / counts["posts"]),
                "blob_share_pct": round(100 * sizes["blob_content"] / sizes["file"], 1),
            }
            incremental = run_sync(sim, db, work)
            result["incremental"] = summarize(incremental, counts["min_incremental"])
            full = run_sync(sim, db, work, "--full")
            result["full"] = summarize(full, counts["min_full"])
            if profile:
                prof = work / "sync.prof"
                run_sync(sim, work / "profiled.db", work, "--all", profile=prof)
                result["profile"] = profile_tables(prof)
    finally:
        sim.stop()
    return result


PROFILE_VIEWS = {
    "cumulative": ("cumulative", ()),
    "cumulative, groupsync's own functions": ("cumulative", ("groupsync/",)),
    "own time": ("tottime", ()),
}


def profile_tables(prof: Path) -> dict[str, str]:
    """The top 15 by cumulative time (the first dozen are click and runpy wrappers, hence a
    second list of groupsync's functions only) and by own time."""
    tables = {}
    for title, (order, restrictions) in PROFILE_VIEWS.items():
        text = io.StringIO()
        stats = pstats.Stats(str(prof), stream=text)
        stats.sort_stats(order).print_stats(*restrictions, 15)
        body = text.getvalue()
        tables[title] = body[body.index("   ncalls") :] if "   ncalls" in body else body
    return tables


def summarize(run: Run, minimum: int) -> dict[str, Any]:
    requests = int(run.report["requests"])
    return {
        "seconds": round(run.seconds, 2),
        "requests": requests,
        "sim_requests": run.sim_requests,
        "minimum": minimum,
        "overhead_pct": round(100 * (requests - minimum) / minimum, 2),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "cpu_seconds": None if run.cpu_seconds is None else round(run.cpu_seconds, 2),
        "status": run.report["status"],
    }


# -- output -------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, ...]] = [("", *(r["size"] + " posts" for r in results))]

    def row(label: str, fn) -> None:
        rows.append((label, *(fn(r) for r in results)))

    row("groups / threads", lambda r: f"{r['tenant']['groups']} / {r['tenant']['threads']}")
    row("posts / attachments", lambda r: f"{r['tenant']['posts']} / {r['tenant']['attachments']}")
    for key, title in (("first", "first sync --all"), ("incremental", "no-change incremental"),
                       ("full", "--full, unchanged")):
        row(f"{title}: time", lambda r, k=key: f"{r[k]['seconds']:.2f} s")
        row("  requests (sim log)", lambda r, k=key: f"{r[k]['requests']} ({r[k]['sim_requests']})")
        row("  minimum, overhead", lambda r, k=key: f"{r[k]['minimum']}, {r[k]['overhead_pct']}%")
        row("  peak RSS", lambda r, k=key: f"{r[k]['peak_rss_mb']:.0f} MB")
        row("  sync CPU (user+sys)", lambda r, k=key: f"{r[k]['cpu_seconds'] or 0:.2f} s")
        if key == "first":
            row("  posts stored / s", lambda r: f"{r['first']['posts_per_s']}")
    row("archive file", lambda r: f"{r['archive']['file'] / 1e6:.1f} MB")
    row("  attachment bytes", lambda r: f"{r['archive']['blob_content'] / 1e6:.1f} MB "
        f"({r['archive']['blob_share_pct']}%)")
    row("  per 1,000 posts", lambda r: f"{r['archive']['bytes_per_1000_posts'] / 1e6:.2f} MB")
    if "id_index_pages" in results[0]["archive"]:
        row("  ids: in rows / indexes", lambda r: f"{r['archive']['id_bytes_in_rows'] / 1e6:.1f}"
            f" / {r['archive']['id_index_pages'] / 1e6:.1f} MB")  # fmt: skip
    for key in ("posts", "post_versions", "fts", "blobs", "other"):
        if f"pages_{key}" in results[0]["archive"]:
            row(f"  pages: {key}", lambda r, k=key: f"{r['archive'][f'pages_{k}'] / 1e6:.1f} MB")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        values = (c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
        lines.append("  ".join([r[0].ljust(widths[0]), *values]))
    return "\n".join(lines)


def verdicts(results: list[dict[str, Any]]) -> dict[str, Any]:
    rss = [r["first"]["peak_rss_mb"] for r in results]
    return {
        "posts_per_s_target": TARGET_POSTS_PER_S,
        "posts_per_s_met": all(r["first"]["posts_per_s"] >= TARGET_POSTS_PER_S for r in results),
        "rss_target_mb": TARGET_RSS_MB,
        "rss_met": max(rss) < TARGET_RSS_MB,
        "rss_growth_ratio": round(rss[-1] / rss[0], 2),
        "stored_every_post": all(r["first"]["items_new"] == r["tenant"]["posts"] for r in results),
        "requests_match_sim_log": all(
            r[k]["requests"] == r[k]["sim_requests"]
            for r in results
            for k in ("first", "incremental", "full")
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--threads", type=int, default=5000)
    parser.add_argument("--posts", type=int, default=50000)
    parser.add_argument("--attachments", type=int, default=5000)
    parser.add_argument("--tenant-dir", type=Path, help="cache generated tenants here")
    parser.add_argument("--profile", action="store_true", help="cProfile the 10k first sync")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    full = Size(args.groups, args.threads, args.posts, args.attachments)
    sizes = [full.scaled(SMALL_POSTS), full] if full.posts > SMALL_POSTS else [full]

    with tempfile.TemporaryDirectory(prefix="bench-tenants-") as tmp:
        tenants = args.tenant_dir or Path(tmp)
        tenants.mkdir(parents=True, exist_ok=True)
        results = [bench_size(s, tenants, args.profile and i == 0) for i, s in enumerate(sizes)]
    summary = {"results": results, "verdicts": verdicts(results)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(table(results))
    print()
    for key, value in summary["verdicts"].items():
        print(f"{key:28} {value}")
    for r in results:
        for title, text in r.get("profile", {}).items():
            print(f"\ncProfile of the {r['size']} first sync (main thread), top 15 by {title}:")
            print(text.rstrip())


if __name__ == "__main__":
    main()
