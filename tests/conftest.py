from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
GRAPH_SAMPLES = ROOT.parent / "shared" / "graph-samples"


class FakeClock:
    """Time that moves only when someone sleeps, so throttle tests never wait."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


def graph_sample(name: str) -> dict[str, Any]:
    """A payload from Microsoft's documentation, without our ``_source`` note."""
    path = GRAPH_SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not here (it lives in ../shared beside the repo)")
    data = json.loads(path.read_text())
    data.pop("_source", None)
    return data


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch, tmp_path):
    """No GROUPSYNC_* or proxy settings leak in; msal's cache goes to a temp folder."""
    for name in list(os.environ):
        if name.startswith("GROUPSYNC_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def run_cli(
    *args: str | bytes,
    db: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    umask: int | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """The real ``groupsync`` in a subprocess; arguments may be bytes (not UTF-8, say).

    ``env`` adds to a copy of the environment (GROUPSYNC_* already cleared by
    ``clean_environ``); ``db`` sets GROUPSYNC_DB; ``umask`` is the child's.
    """
    environ = {**os.environ, **(env or {})}
    if db is not None:
        environ["GROUPSYNC_DB"] = str(db)
    command = [os.fsencode(sys.executable), b"-m", b"groupsync"]
    command += [a if isinstance(a, bytes) else os.fsencode(a) for a in args]
    return subprocess.run(
        command,
        env=environ,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """Assert a failure told in exactly one line on stderr, no traceback; that line."""
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode not in (0, None), stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.fixture
def mounts():
    """Mount as root (``mounts(args, target)`` runs ``mount *args target``), unmounted at
    the end, last first; skips where this process may not mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    done: list[Path] = []

    def mount(args: list[str], target: Path) -> None:
        result = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mount is not permitted here: {result.stderr.strip()}")
        if target not in done:
            done.append(target)

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], check=False)
