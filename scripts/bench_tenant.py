"""Benchmark a first archive of a whole tenant under Graph's per-mailbox limits.

    .venv/bin/python scripts/bench_tenant.py [--groups 200 --threads 20000 --posts 100000
        --attachments 2000] [--latency 50] [--tenant-dir DIR] [--only app|mailbox]

It generates a seeded tenant (``scripts/generate_tenant.py``, cached in ``--tenant-dir``
when the parameters match), then for each of two set-ups starts the simulator in its own
process with ``--latency`` ms per request and Graph's limits enforced (``--mailbox-window
10000/600``, 4 in flight), and syncs the tenant (``--all``) into a fresh archive with the
``graph`` throttle profile, in this process (the library, as ``groupsync sync`` calls it), so
that a sampler thread can read the client's own in-flight counter every 5 ms:

1. ``app``: the simulator caps 4 in flight for the app; the client 4 for the app.
2. ``mailbox``: the simulator caps 4 in flight per mailbox (``--concurrency-per mailbox``);
   the client 4 per mailbox and 16 for the app.

For each: wall time; requests (the sync's own count, cross-checked with the simulator's
``/_sim/log``) against the fewest the API allows (``bench_sync.tenant_counts``); 429s
(the client's count and the simulator's log); the share of samples with every one of the
app's in-flight slots busy; and the speed-up over the ``connector`` profile, whose time is
computed from its window (requests / 100 per 60 s: that profile can go no faster). Then a
no-change sync of the archived groups (set-up 1): requests and seconds. Each run's line
goes to stderr as it ends; everything, with the load average before and after, as JSON on
stdout.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import benchlib
import httpx
from bench_sync import tenant_counts

from groupsync.archive import Archive
from groupsync.config import load_settings
from groupsync.connect import connect
from groupsync.sync import Syncer, SyncOptions

SEED = 16
GRAPH_WINDOW = "10000/600"  # Graph: 10,000 requests per 10 minutes per app and mailbox
CONNECTOR = (100, 60.0)
SAMPLE_EVERY = 0.005


class Simulator:
    """``groupsync simulate`` in its own process, with Graph's limits."""

    def __init__(self, tenant: Path, latency: int, scope: str) -> None:
        self.port = benchlib.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "groupsync", "simulate", "--data", str(tenant)),
                *("--port", str(self.port), "--latency", str(latency)),
                *("--max-concurrency", "4", "--concurrency-per", scope),
                *("--mailbox-window", GRAPH_WINDOW),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        benchlib.wait_until_responds(self.base + "/v1.0", timeout=600)

    def log(self) -> dict[str, Any]:
        response = httpx.get(self.base + "/v1.0/_sim/log", timeout=300)
        response.raise_for_status()
        data = response.json()
        statuses: dict[int, int] = {}
        for entry in data["entries"]:
            statuses[entry["status"]] = statuses.get(entry["status"], 0) + 1
        return {"total": data["total"], "throttled": statuses.get(429, 0)}

    def reset_log(self) -> None:
        httpx.post(self.base + "/v1.0/_sim/reset-log", timeout=60).raise_for_status()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Result:
    setup: str
    seconds: float
    requests: int
    sim_requests: int
    minimum: int
    over_minimum_pct: float
    throttled: int
    sim_throttled: int
    all_slots_busy_pct: float
    mean_in_flight: float
    connector_seconds: float
    speedup: float
    posts: int
    status: str


def sync_once(
    sim: Simulator, db: Path, *, app_cap: int, mailbox_cap: int, all_groups: bool
) -> tuple[dict[str, Any], float, list[int]]:
    """One sync with the graph profile; its report, seconds, and in-flight samples."""
    settings = load_settings(
        {
            "graph_url": sim.base + "/v1.0",
            "db": str(db),
            "throttle_profile": "graph",
            "max_concurrency": app_cap,
            "mailbox_concurrency": mailbox_cap,
        },
        environ={},
    )
    samples: list[int] = []
    done = threading.Event()
    with (
        connect(settings, token=lambda force_refresh=False: "bench") as graph,
        Archive.open_for_writing(str(db)) as archive,
    ):

        def sample() -> None:
            while not done.is_set():
                samples.append(graph.in_flight)
                time.sleep(SAMPLE_EVERY)

        sampler = threading.Thread(target=sample, daemon=True)
        spread = app_cap * 2 if mailbox_cap else 1  # as `groupsync sync` sets it
        syncer = Syncer(archive, graph, options=SyncOptions(workers=app_cap, spread=spread))
        began = time.perf_counter()
        sampler.start()
        try:
            report = syncer.run(all_groups=all_groups)
        finally:
            done.set()
            sampler.join()
        seconds = time.perf_counter() - began
    return report.as_dict(), seconds, samples


def first_archive(
    tenant: Path, work: Path, counts: dict[str, int], setup: str, latency: int
) -> tuple[Result, Simulator]:
    app_cap, mailbox_cap, scope = (4, 0, "app") if setup == "app" else (16, 4, "mailbox")
    sim = Simulator(tenant, latency, scope)
    db = work / f"{setup}.db"
    report, seconds, samples = sync_once(
        sim, db, app_cap=app_cap, mailbox_cap=mailbox_cap, all_groups=True
    )
    log = sim.log()
    busy = sum(1 for s in samples if s >= app_cap) / max(1, len(samples))
    connector = report["requests"] / CONNECTOR[0] * CONNECTOR[1]
    result = Result(
        setup=f"{mailbox_cap or '-'} per mailbox / {app_cap} per app, simulator per {scope}",
        seconds=round(seconds, 1),
        requests=report["requests"],
        sim_requests=log["total"],
        minimum=counts["min_first"],
        over_minimum_pct=round(100 * (report["requests"] / counts["min_first"] - 1), 2),
        throttled=report["throttled"],
        sim_throttled=log["throttled"],
        all_slots_busy_pct=round(100 * busy, 1),
        mean_in_flight=round(sum(samples) / max(1, len(samples)), 2),
        connector_seconds=round(connector, 1),
        speedup=round(connector / seconds, 1),
        posts=report["items_new"],
        status=report["status"],
    )
    return result, sim


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--threads", type=int, default=20_000)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--attachments", type=int, default=2_000)
    parser.add_argument("--latency", type=int, default=50, help="ms per request")
    parser.add_argument("--tenant-dir", type=Path, help="cache generated tenants here")
    parser.add_argument("--only", choices=["app", "mailbox"], help="run one set-up")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tenant-") as tmp:
        work = Path(tmp)
        root = args.tenant_dir or work
        folder = (
            f"g{args.groups}-t{args.threads}-p{args.posts}-a{args.attachments}-s{SEED}"
        )
        began = time.perf_counter()
        tenant = benchlib.ensure_tenant(
            root / folder,
            groups=args.groups,
            threads=args.threads,
            posts=args.posts,
            attachments=args.attachments,
            seed=SEED,
        )
        generated = time.perf_counter() - began
        counts = tenant_counts(tenant)
        out: dict[str, Any] = {
            "tenant": counts,
            "latency_ms": args.latency,
            "tenant_seconds": round(generated, 1),
            "load_before": os.getloadavg(),
            "runs": [],
        }
        for setup in [args.only] if args.only else ["app", "mailbox"]:
            result, sim = first_archive(tenant, work, counts, setup, args.latency)
            out["runs"].append(asdict(result))
            if setup == "app":
                sim.reset_log()
                report, seconds, _ = sync_once(
                    sim, work / "app.db", app_cap=4, mailbox_cap=0, all_groups=False
                )
                out["no_change"] = {
                    "requests": report["requests"],
                    "sim_requests": sim.log()["total"],
                    "minimum": counts["min_incremental"],
                    "seconds": round(seconds, 2),
                    "items_new": report["items_new"],
                }
            sim.stop()
            print(json.dumps(out["runs"][-1]), file=sys.stderr)
        out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
