from __future__ import annotations

import json
import os
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
