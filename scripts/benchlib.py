"""What the benchmark scripts share: a free loopback port, waiting for the simulator, and
generated tenants kept between runs."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
STAMP = "bench-tenant.json"


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_responds(url: str, timeout: float = 30.0) -> None:
    """Wait for a simulator at ``url`` (without ``/v1.0``) to answer its log endpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/_sim/log", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"simulator did not start at {url}")


def generator_hash() -> str:
    """The SHA-256 of ``scripts/generate_tenant.py``: any change to it (its text,
    ``GENERATOR_VERSION``) makes every cached benchmark tenant and archive stale."""
    return hashlib.sha256((ROOT / "scripts" / "generate_tenant.py").read_bytes()).hexdigest()


def ensure_tenant(
    out: Path, *, groups: int, threads: int, posts: int, attachments: int, seed: int
) -> Path:
    """``scripts/generate_tenant.py`` into ``out``, unless the same tenant, made by the same
    generator, is already there."""
    generator = ROOT / "scripts" / "generate_tenant.py"
    stamp = {
        "generator": generator_hash(),
        "groups": groups,
        "threads": threads,
        "posts": posts,
        "attachments": attachments,
        "seed": seed,
    }
    if (out / STAMP).is_file() and json.loads((out / STAMP).read_text()) == stamp:
        return out
    subprocess.run(
        [
            sys.executable,
            str(generator),
            *("--groups", str(groups), "--threads", str(threads)),
            *("--posts", str(posts), "--attachments", str(attachments)),
            *("--seed", str(seed), "--out", str(out)),
        ],
        check=True,
        capture_output=True,
    )
    (out / STAMP).write_text(json.dumps(stamp))
    return out


def poll_vmhwm(proc: subprocess.Popen, every: float = 0.02) -> int:
    """The child's VmHWM (peak RSS of its own address space), read until it exits; a peak
    reached in its last ``every`` seconds may be missed."""
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(every)
    return peak
