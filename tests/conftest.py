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


# The sample tenant's groups (sample_data/groups.json), named once for every test.
MARKETING = "83231e12-1380-4fe3-b849-b614bcff5d6c"
ENGINEERING = "b8f3e8ed-9bff-4e7e-acca-272a78b653ec"
PARIS = "639ffed1-1c46-44c0-b07f-d0f918950bdf"
ANNOUNCEMENTS = "36a8fb87-f96d-447b-8a27-33dd4dc585be"  # public; the demo user is not a member
LEADERSHIP = "99e3878d-a879-41d7-a784-fd7d80e16089"  # private; the demo user is not a member
SECURITY_GROUP = "5f0c8a4e-2d7b-4c1e-9a63-0b8e4d2f7a15"  # in memberOf, no mailbox
DISTRIBUTION_LIST = "c4a1e7d2-6b3f-4f8a-8e25-7d9b1c3e5f60"  # in memberOf, no mailbox
JOINED = [MARKETING, ENGINEERING, PARIS]
GRAPH_BASE = "http://graph.test/v1.0"


def graph_for(app: Any, token: str = "t", **options: Any) -> Any:
    """A GraphClient talking to a simulator (or any WSGI app) in-process, throttle off."""
    import httpx

    from groupsync.graph import GraphClient

    return GraphClient(
        GRAPH_BASE,
        lambda force_refresh=False: token,
        transport=httpx.WSGITransport(app=app),
        **options,
    )
