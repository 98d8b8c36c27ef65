"""read_options: the nine read commands share --live, --include-deleted and --table, and
read the archive unless --live (groups and group included)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from groupsync.cli import cli

READS = ["groups", "group", "conversations", "conversation", "threads", "thread", "posts",
         "post", "attachments"]  # fmt: skip


@pytest.mark.parametrize("command", READS)
def test_every_read_has_the_same_options(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    for option in ("--live", "--include-deleted", "--table"):
        assert option in result.output, (command, option)
    assert "--offline" not in result.output  # kept working, no longer shown


@pytest.mark.parametrize(
    "args,message",
    [
        (["groups", "--live", "--offline"], "--live and --offline do not go together"),
        (["groups", "--all", "--include-deleted"], "--include-deleted reads the archive"),
    ],
)
def test_contradictions_are_refused_up_front(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "a.db"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["groups"], ["groups", "--offline"]])
def test_groups_read_the_archive_by_default(args, tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPSYNC_GRAPH_URL", "http://127.0.0.1:9/v1.0")  # never asked
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "a.db"), *args])
    assert result.exit_code == 1
    assert "no archive at" in result.output and "Graph" not in result.output
