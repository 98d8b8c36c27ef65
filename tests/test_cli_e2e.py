"""The real ``groupsync`` command, as a subprocess, against the simulator on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread

from .conftest import SAMPLE_DATA, cli_env

pytestmark = pytest.mark.e2e

ME = "11111111-1111-4111-8111-111111111111"


def make_tenant(root: Path, groups: int) -> list[str]:
    """A tenant of many small groups: enough directory objects to page through."""
    (root / "groups").mkdir(parents=True)
    ids = [str(uuid.UUID(int=i + 1, version=4)) for i in range(groups)]
    (root / "tenant.json").write_text(
        json.dumps(
            {
                "tenantId": str(uuid.UUID(int=999, version=4)),
                "me": ME,
                "users": [
                    {
                        "id": ME,
                        "displayName": "Demo User",
                        "mail": "demo@contoso.test",
                        "userPrincipalName": "demo@contoso.test",
                    }
                ],
                "directoryRoles": [],
            }
        )
    )
    value = []
    for n, gid in enumerate(ids):
        value.append(
            {
                "id": gid,
                "displayName": f"Group {n:02d}",
                "description": "",
                "mail": f"group{n:02d}@contoso.test",
                "mailNickname": f"group{n:02d}",
                "groupTypes": ["Unified"],
                "visibility": "Private",
                "mailEnabled": True,
                "securityEnabled": False,
                "createdDateTime": "2024-01-01T00:00:00Z",
                "@sim.members": [ME],
            }
        )
        (root / "groups" / f"{gid}.json").write_text(json.dumps({"conversations": []}))
    (root / "groups.json").write_text(json.dumps({"value": value}))
    return ids


def run(
    base_url: str,
    tmp_path: Path,
    *args: str,
    rate: str = "0",
    db: str = "a.db",
    background: bool = False,
):
    env = cli_env(base_url, tmp_path / db, rate=rate)
    command = [sys.executable, "-m", "groupsync", *args]
    if background:
        return subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tenant(tmp_path) -> tuple[Path, list[str]]:
    root = tmp_path / "tenant"
    return root, make_tenant(root, 30)


def test_groups_pages_through_empty_pages(tmp_path, tenant):
    root, ids = tenant
    app = make_app(root, SimulatorOptions(page_size=4, empty_page_every=2))
    with serve_in_thread(app) as url:
        result = run(url, tmp_path, "groups", "--all")
    assert result.returncode == 0, result.stderr
    assert sorted(g["id"] for g in json.loads(result.stdout)["value"]) == sorted(ids)
    pages = app.log.count(endpoint="GET /groups")
    assert pages >= 3 + 30 // 4  # every page, the empty ones too


def test_member_of_lists_groups_only(tmp_path):
    app = make_app(SAMPLE_DATA)
    with serve_in_thread(app) as url:
        result = run(url, tmp_path, "groups", "--live")
        table = run(url, tmp_path, "groups", "--live", "--table")
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)["value"]
    assert groups and all(g["@odata.type"] == "#microsoft.graph.group" for g in groups)
    assert all(not k.startswith("@sim.") for g in groups for k in g)
    assert "displayName" in table.stdout.splitlines()[0]


def test_a_429_storm_completes_with_every_item(tmp_path, tenant):
    root, ids = tenant
    app = make_app(root, SimulatorOptions(page_size=2, rate=(5, 1.0)))
    with serve_in_thread(app) as url:
        result = run(url, tmp_path, "-v", "groups", "--all")
    assert result.returncode == 0, result.stderr
    assert sorted(g["id"] for g in json.loads(result.stdout)["value"]) == sorted(ids)
    statuses = [entry[3] for entry in app.log.entries]
    assert statuses.count(429) >= 1
    assert '"reason": "429"' in result.stderr


def test_503s_and_504s_are_retried(tmp_path, tenant):
    root, ids = tenant
    app = make_app(root, SimulatorOptions(page_size=5, fail_rate=0.3, seed=7))
    with serve_in_thread(app) as url:
        result = run(url, tmp_path, "groups", "--all")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["value"]) == len(ids)
    statuses = {entry[3] for entry in app.log.entries}
    assert statuses & {503, 504}


@pytest.mark.parametrize(
    "group_id,code,message",
    [
        ("00000000-0000-4000-8000-000000000000", 1, "not found, or you cannot access it"),
        ("not-a-guid", 2, "no archived group matches 'not-a-guid'"),
    ],
)
def test_unknown_group_is_one_line_and_non_zero(tmp_path, group_id, code, message):
    app = make_app(SAMPLE_DATA)
    with serve_in_thread(app) as url:
        result = run(url, tmp_path, "group", group_id, "--live")
    assert result.returncode == code
    assert app.log.count() == (1 if code == 1 else 0)  # a name no archive knows: not sent
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_no_simulator_is_one_line(tmp_path):
    result = run("http://127.0.0.1:9/v1.0", tmp_path, "group", str(uuid.uuid4()), "--live")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no answer from Graph" in result.stderr


def test_throttle_holds_across_two_processes(tmp_path, tenant):
    """Two ``groupsync`` processes sharing an archive never exceed 10 calls per 1 s together."""
    root, _ = tenant
    app = make_app(root, SimulatorOptions(page_size=2, max_concurrency=0))
    with serve_in_thread(app) as url:
        procs = [
            run(url, tmp_path, "groups", "--all", rate="10/1", background=True) for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert app.log.count() >= 30
    assert app.log.max_in_window(1.0) <= 10
    # And the budget was used: 30+ calls at 10/s cannot finish much faster than 3 s.
    times = [entry[0] for entry in app.log.entries]
    assert max(times) - min(times) >= (app.log.count() - 10) / 10 - 0.1


def test_config_show_masks_secrets(tmp_path):
    result = run("http://127.0.0.1:9/v1.0", tmp_path, "config", "show")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["settings"]["access_token"] == "********"
    assert "e2e-token" not in result.stdout
    assert shown["sources"]["graph_url"] == "env"
