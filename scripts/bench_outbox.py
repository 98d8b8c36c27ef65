"""Benchmark the outbox's replay with the throttle and the send cap off.

    .venv/bin/python scripts/bench_outbox.py [--replies 1000] [--json]

Syncs sample_data/ from a simulator in its own process, queues N replies spread over a few
threads, then times `groupsync send --max-per-minute 0` with GROUPSYNC_RATE=0: items sent
per second, one request each (replies are sequential by design: FIFO per thread). A
second run with --write-504-rate shows what reconciling uncertain items costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchlib import free_port, wait_until_responds  # noqa: E402

from groupsync.archive import Archive  # noqa: E402
from groupsync.outbox import Draft, Outbox  # noqa: E402

ENGINEERING = "b8f3e8ed-9bff-4e7e-acca-272a78b653ec"


def run(replies: int, write_504_rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "groupsync",
                "simulate",
                "--data",
                str(ROOT / "sample_data"),
                "--port",
                str(port),
                "--max-concurrency",
                "0",
                "--seed",
                "1",
                "--write-504-rate",
                str(write_504_rate),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        db = os.path.join(tmp, "bench.db")
        env = {
            **os.environ,
            "GROUPSYNC_GRAPH_URL": base + "/v1.0",
            "GROUPSYNC_ACCESS_TOKEN": "bench",
            "GROUPSYNC_DB": db,
            "GROUPSYNC_RATE": "0",
        }
        try:
            wait_until_responds(base)
            subprocess.run(
                [sys.executable, "-m", "groupsync", "sync", "--quiet"], env=env, check=True
            )
            with Archive.open_for_writing(db) as archive:
                threads = [
                    r[0]
                    for r in archive.conn.execute(
                        "SELECT id FROM threads WHERE group_id = ? AND isLocked = 0 LIMIT 4",
                        (ENGINEERING,),
                    )
                ]
                box = Outbox(archive)
                for i in range(replies):
                    box.queue(
                        "reply-to-thread",
                        ENGINEERING,
                        Draft(content=f"<p>benchmark reply {i}</p>"),
                        thread_id=threads[i % len(threads)],
                    )
            httpx.post(base + "/_sim/reset-log")
            start = time.monotonic()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "groupsync",
                    "send",
                    "--max-per-minute",
                    "0",
                    "--reconcile-delay",
                    "0",
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            elapsed = time.monotonic() - start
            report = json.loads(result.stdout)
            requests = httpx.get(base + "/_sim/log").json()["total"]
        finally:
            sim.terminate()
            sim.wait(timeout=10)
    return {
        "replies": replies,
        "write_504_rate": write_504_rate,
        "seconds": round(elapsed, 2),
        "items_per_second": round(replies / elapsed, 1),
        "requests": requests,
        "reconciled": report["reconciled"],
        "sent": report["sent"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run(args.replies, 0.0), run(args.replies, 0.2)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
