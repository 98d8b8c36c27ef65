"""Benchmark the Graph simulator and the Graph client on loopback.

    .venv/bin/python scripts/bench_graph.py [--posts 4000] [--seconds 5] [--json]

Measures, with the simulator in its own process (so client and server do not share a GIL):
1. simulator requests/second served to 1 and to 4 concurrent raw httpx clients;
2. GraphClient requests/second with the throttle off, sequential and with 4 worker threads,
   paging every post of every thread of a generated tenant;
3. the same client with the shared SQLite throttle file in use but no limit, to show what
   the cross-process bookkeeping costs per call.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from benchlib import free_port, wait_until_responds

from groupsync.graph import GraphClient
from groupsync.throttle import Throttle

ROOT = Path(__file__).resolve().parent.parent



def raw_rate(base: str, path: str, seconds: float, workers: int) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * workers

    def worker(i: int) -> None:
        with httpx.Client(headers={"Authorization": "Bearer bench"}) as http:
            while time.monotonic() < stop:
                http.get(base + path).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def client_rate(
    base: str, groups: list[str], workers: int, throttle: Throttle
) -> tuple[float, int]:
    graph = GraphClient(base + "/v1.0", lambda force_refresh=False: "bench", throttle=throttle)
    start = time.monotonic()
    with graph:
        threads = [(g, t["id"]) for g in groups for t in graph.list_threads(g, top=50)]

        def posts(item: tuple[str, str]) -> int:
            return sum(1 for _ in graph.list_posts(item[0], item[1], top=50))

        if workers == 1:
            total = sum(map(posts, threads))
        else:
            with ThreadPoolExecutor(workers) as pool:
                total = sum(pool.map(posts, threads))
        elapsed = time.monotonic() - start
        return graph.stats.requests / elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--threads", type=int, default=800)
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tenant = Path(tmp) / "tenant"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "generate_tenant.py"),
                "--groups",
                str(args.groups),
                "--threads",
                str(args.threads),
                "--posts",
                str(args.posts),
                "--attachments",
                "0",
                "--seed",
                "1",
                "--out",
                str(tenant),
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "groupsync",
                "simulate",
                "--data",
                str(tenant),
                "--port",
                str(port),
                "--max-concurrency",
                "0",
                "--max-top",
                "50",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_responds(base)
            groups = [g["id"] for g in json.loads((tenant / "groups.json").read_text())["value"]]
            path = f"/v1.0/groups/{groups[0]}/threads?$top=10"
            results = {
                "simulator_rps_1_client": raw_rate(base, path, args.seconds, 1),
                "simulator_rps_4_clients": raw_rate(base, path, args.seconds, 4),
            }
            for workers in (1, 4):
                rps, posts = client_rate(base, groups, workers, Throttle(None))
                results[f"client_rps_throttle_off_{workers}_workers"] = rps
            throttle_file = os.path.join(tmp, "bench.db.throttle")
            rps, posts = client_rate(base, groups, 4, Throttle(None, throttle_file))
            results["client_rps_throttle_file_no_limit_4_workers"] = rps
            unlimited = Throttle((10**9, 60.0), throttle_file, key="counting")
            rps, posts = client_rate(base, groups, 4, unlimited)
            results["client_rps_throttle_counting_4_workers"] = rps
            results["posts_paged"] = posts
        finally:
            sim.send_signal(signal.SIGINT)
            sim.wait(timeout=10)

    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:45} {value:10.1f}")


if __name__ == "__main__":
    main()
