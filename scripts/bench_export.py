"""Benchmark ``groupsync export`` (and ``verify``) on the 50,000-post benchmark tenant.

    .venv/bin/python scripts/bench_export.py [--groups 20 --threads 5000 --posts 50000
        --attachments 5000] [--work /tmp/gs-bench-export]
        [--formats mbox,eml,jsonl,production] [--json]

1. generates the seeded tenant (``scripts/generate_tenant.py``, seed 1) into
   ``WORK/tenant-…`` unless it is there already;
2. syncs it once with the real CLI (``groupsync sync --all``) against ``groupsync simulate``
   in its own process, throttle off (GROUPSYNC_RATE=0), into ``WORK/archive-….db``, kept
   for later runs (delete it to sync again);
3. for each format runs ``groupsync export --format F --out WORK/out-F --json`` in a fresh
   process: wall time, posts per second, peak RSS of the export process (GNU time, else
   VmHWM polled from /proc), and the size of what it wrote against the archive's; for a
   production also documents (posts and attachments) per second, and ``verify --export``
   of it (every file hashed, the load files' rows checked against the archive);
4. runs ``groupsync verify`` on the archive: wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import benchlib
import httpx
from benchlib import free_port

ROOT = Path(__file__).resolve().parent.parent
SEED = 1
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None



def ensure_tenant(work: Path, size: dict[str, int]) -> Path:
    out = work / "tenant-{groups}g-{threads}t-{posts}p-{attachments}a".format(**size)
    return benchlib.ensure_tenant(out, **size, seed=SEED)


def env_for(db: Path, work: Path, url: str = "http://127.0.0.1:9/v1.0") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPSYNC_")}
    env.update(
        GROUPSYNC_GRAPH_URL=url,
        GROUPSYNC_ACCESS_TOKEN="bench",
        GROUPSYNC_DB=str(db),
        GROUPSYNC_RATE="0",
        XDG_CONFIG_HOME=str(work / "xdg"),
    )
    return env


def ensure_archive(work: Path, tenant: Path) -> tuple[Path, float | None]:
    """The tenant synced once; the sync's seconds, or None when the archive was kept."""
    db = work / f"archive-{tenant.name}.db"
    if db.exists() and (work / f"{db.name}.done").exists():
        return db, None
    for stale in work.glob(f"{db.name}*"):
        stale.unlink()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "groupsync", "simulate", "--data", str(tenant),
         "--port", str(port), "--max-concurrency", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_sim/log", timeout=30).raise_for_status()
                break
            except httpx.TransportError:
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the simulator did not start") from None
                time.sleep(0.2)
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "groupsync", "sync", "--all", "--quiet"],
            env=env_for(db, work, f"http://127.0.0.1:{port}/v1.0"),
            check=True,
        )
        seconds = time.perf_counter() - began
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    (work / f"{db.name}.done").write_text("")
    return db, seconds


def timed(command: list[str], env: dict[str, str], work: Path, name: str) -> dict[str, Any]:
    """Run a groupsync command: seconds, peak RSS in MB, stdout, exit code."""
    rss_file = work / f"{name}.rss"
    rss_file.unlink(missing_ok=True)
    full = [sys.executable, "-m", "groupsync", *command]
    if GNU_TIME:
        full = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *full]
    out, err = work / f"{name}.out", work / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        began = time.perf_counter()
        proc = subprocess.Popen(full, env=env, stdout=stdout, stderr=stderr)
        peak_kb = 0 if GNU_TIME else benchlib.poll_vmhwm(proc)
        proc.wait()
        seconds = time.perf_counter() - began
    if GNU_TIME:
        peak_kb = int(rss_file.read_text().split()[-1])
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "stdout": out.read_text(),
        "stderr": err.read_text(),
        "code": proc.returncode,
    }


def archive_size(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {
            "file": db.stat().st_size,
            "posts": conn.execute("SELECT count(*) FROM posts").fetchone()[0],
            "blob_bytes": conn.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0],
            "body_bytes": conn.execute(
                "SELECT coalesce(sum(length(CAST(body_content AS BLOB))), 0) FROM posts"
            ).fetchone()[0],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--threads", type=int, default=5000)
    parser.add_argument("--posts", type=int, default=50000)
    parser.add_argument("--attachments", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gs-bench-export"))
    parser.add_argument("--formats", default="mbox,eml,jsonl,production")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    size = {k: getattr(args, k) for k in ("groups", "threads", "posts", "attachments")}
    tenant = ensure_tenant(work, size)
    db, sync_seconds = ensure_archive(work, tenant)
    sizes = archive_size(db)
    env = env_for(db, work)
    results: dict[str, Any] = {
        "tenant": size,
        "sync_seconds": sync_seconds,
        "archive": sizes,
        "exports": {},
    }
    for fmt in args.formats.split(","):
        out = work / f"out-{fmt}"
        shutil.rmtree(out, ignore_errors=True)
        run = timed(["export", "--format", fmt, "--out", str(out), "--json"], env, work, fmt)
        if run["code"] != 0:
            raise SystemExit(f"export {fmt} failed: {run['stderr'][-2000:]}")
        report = json.loads(run["stdout"])
        results["exports"][fmt] = {
            "seconds": round(run["seconds"], 2),
            "posts": report["posts"],
            "posts_per_s": round(report["posts"] / run["seconds"]),
            "files": report["files"],
            "bytes": report["bytes"],
            "vs_archive": round(report["bytes"] / sizes["file"], 2),
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
        }
        if fmt == "production":
            documents = report["posts"] + report["attachments"]
            documents += report["attachments_without_bytes"]
            checked = timed(["verify", "--export", str(out), "--json"], env, work, "verify-export")
            results["exports"][fmt].update(
                documents=documents,
                documents_per_s=round(documents / run["seconds"]),
                verify_export_seconds=round(checked["seconds"], 2),
                verify_export_ok=json.loads(checked["stdout"])["ok"],
                verify_export_peak_rss_mb=round(checked["peak_rss_mb"], 1),
            )
        shutil.rmtree(out, ignore_errors=True)
    run = timed(["verify", "--json"], env, work, "verify")
    verified = json.loads(run["stdout"])
    results["verify"] = {
        "seconds": round(run["seconds"], 2),
        "ok": verified["ok"],
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "checked": verified["checked"],
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    mb = 1024 * 1024
    print(
        f"archive: {sizes['posts']:,} posts, {sizes['file'] / mb:.1f} MB "
        f"({sizes['blob_bytes'] / mb:.1f} MB attachment bytes, "
        f"{sizes['body_bytes'] / mb:.1f} MB bodies)"
        + (f"; synced in {sync_seconds:.1f} s" if sync_seconds else "; kept from an earlier run")
    )
    head = ("format", "seconds", "posts/s", "files", "MB", "× db", "RSS MB")
    print("{:<11}{:>9}{:>10}{:>8}{:>9}{:>7}{:>9}".format(*head))
    for fmt, r in results["exports"].items():
        print(
            f"{fmt:<11}{r['seconds']:>9.1f}{r['posts_per_s']:>10,}{r['files']:>8,}"
            f"{r['bytes'] / mb:>9.1f}{r['vs_archive']:>7.2f}{r['peak_rss_mb']:>9.1f}"
        )
        if "documents" in r:
            print(
                f"  {r['documents']:,} documents, {r['documents_per_s']:,} documents/s; "
                f"verify --export {r['verify_export_seconds']:.1f} s "
                f"(ok={r['verify_export_ok']}, peak RSS {r['verify_export_peak_rss_mb']:.1f} MB)"
            )
    v = results["verify"]
    print(f"verify: {v['seconds']:.1f} s, ok={v['ok']}, peak RSS {v['peak_rss_mb']:.1f} MB")


if __name__ == "__main__":
    main()
