"""The shard recipes (issue 16), tried: the Kubernetes manifest is valid against the
Kubernetes schema (kubernetes-validate, which bundles the schemas: no network), and its
command, as Kubernetes expands it for each completion index, syncs that shard; the systemd
template unit passes ``systemd-analyze verify`` and its command, as systemd expands it
for an instance, syncs that shard."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from groupsync.shards import parse_shard
from groupsync.simulator import SimulatorOptions, make_app, serve_in_thread

from .conftest import ROOT, SAMPLE_DATA, rows, run_cli

kubernetes_validate = pytest.importorskip("kubernetes_validate")

MANIFEST = ROOT / "contrib" / "kubernetes" / "groupsync-shards.yaml"
UNITS = ROOT / "contrib" / "systemd"
K8S_VERSION = "1.37.0"


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def job_spec(doc: dict) -> dict:
    return doc["spec"]["jobTemplate"]["spec"]


def test_manifest_is_valid_against_the_kubernetes_schema():
    docs = documents()
    assert {d["kind"] for d in docs} == {"PersistentVolumeClaim", "CronJob"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "damage",
    [
        lambda job: job.update(completions="four"),
        lambda job: job["template"]["spec"]["containers"][0].update(arg=["sync"]),
        lambda job: job["template"]["spec"].update(restartPolicy=None, restartpolicy="Never"),
    ],
)
def test_the_validator_would_catch_a_broken_manifest(damage):
    cron = next(d for d in documents() if d["kind"] == "CronJob")
    broken = copy.deepcopy(cron)
    damage(job_spec(broken))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in a container's args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def test_indexed_job_runs_each_shard_once(tmp_path):
    cron = next(d for d in documents() if d["kind"] == "CronJob")
    job = job_spec(cron)
    assert job["completionMode"] == "Indexed"
    assert job["parallelism"] == job["completions"]
    container = job["template"]["spec"]["containers"][0]
    seen = set()
    for index in range(job["completions"]):
        args = [expand(a, {"JOB_COMPLETION_INDEX": str(index)}) for a in container["args"]]
        shard = parse_shard(args[args.index("--shard") + 1])
        assert (shard.index, shard.count) == (index, job["completions"])
        assert args[args.index("--db") + 1] == f"/data/shard-{index}.db"
        seen.add(shard.index)
    assert seen == set(range(job["completions"]))
    mount = container["volumeMounts"][0]
    assert "$(JOB_COMPLETION_INDEX)" in mount["subPathExpr"]


@pytest.fixture(scope="module")
def sim_url():
    with serve_in_thread(make_app(SAMPLE_DATA, SimulatorOptions(max_concurrency=0))) as url:
        yield url


def test_the_manifest_command_syncs_its_shard(tmp_path, sim_url):
    """The container's args, expanded for index 1 and with /data made a temp folder, run
    against the simulator."""
    cron = next(d for d in documents() if d["kind"] == "CronJob")
    container = job_spec(cron)["template"]["spec"]["containers"][0]
    args = [expand(a, {"JOB_COMPLETION_INDEX": "1"}).replace("/data", str(tmp_path))
            for a in container["args"]]  # fmt: skip
    env = {"GROUPSYNC_GRAPH_URL": sim_url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"}
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    groups = [r[0] for r in rows(tmp_path / "shard-1.db", "SELECT id FROM groups")]
    assert groups and all(parse_shard("1/4").holds(g) for g in groups)


def unit_exec(path: Path) -> str:
    return next(line.split("=", 1)[1] for line in path.read_text().splitlines()
                if line.startswith("ExecStart="))  # fmt: skip


def test_template_unit_command_syncs_its_instance(tmp_path, sim_url):
    """ExecStart as systemd expands it for groupsync-sync@2 (``%i``, ``${GROUPSYNC_SHARDS}``
    from the unit's Environment=), with the venv's groupsync."""
    service = UNITS / "groupsync-sync@.service"
    text = service.read_text()
    shards = re.search(r"^Environment=GROUPSYNC_SHARDS=(\d+)$", text, re.M)
    db = re.search(r"^Environment=GROUPSYNC_DB=(.*)$", text, re.M)
    assert shards and db
    command = unit_exec(service).replace("%i", "2").replace("${GROUPSYNC_SHARDS}", shards[1])
    argv = command.split()
    assert Path(argv[0]).name == "groupsync"
    env = {"GROUPSYNC_GRAPH_URL": sim_url, "GROUPSYNC_ACCESS_TOKEN": "t", "GROUPSYNC_RATE": "0"}
    path = tmp_path / Path(db[1].replace("%i", "2")).name
    result = run_cli(*argv[1:], db=path, env=env)
    assert result.returncode == 0, result.stderr
    groups = [r[0] for r in rows(path, "SELECT id FROM groups")]
    assert all(parse_shard(f"2/{shards[1]}").holds(g) for g in groups)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_template_unit_passes_systemd_analyze_verify(tmp_path):
    """As shipped the unit names /opt/groupsync; pointed at this venv it must verify."""
    groupsync = Path(sys.executable).parent / "groupsync"
    for name in ("groupsync-sync@.service", "groupsync-sync@.timer"):
        text = (UNITS / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/groupsync/.venv/bin/groupsync",
                                                  str(groupsync)))  # fmt: skip
    for instance in ("groupsync-sync@0.service", "groupsync-sync@3.timer"):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(tmp_path / instance)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        problems = [line for line in result.stderr.splitlines()
                    if str(tmp_path) in line or "groupsync" in line]  # fmt: skip
        assert result.returncode == 0 and not problems, result.stderr
