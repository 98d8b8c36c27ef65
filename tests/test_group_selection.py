"""``GroupSelection``: the --group/--joined/--all of ``sync`` and ``watch``, checked once."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from groupsync.cli import cli, group_selection_options
from groupsync.errors import ValidationError
from groupsync.groupref import GroupSelection

GROUP = "11111111-1111-4111-8111-111111111111"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"group_ids": (GROUP,)}, {"joined": True}, {"all_groups": True},
     {"group_ids": (GROUP,), "joined": True}, {"group_ids": (GROUP,), "all_groups": True}],
)  # fmt: skip
def test_a_selection_takes_any_one_of_joined_and_all(kwargs):
    selection = GroupSelection(**kwargs)
    assert selection.group_ids == kwargs.get("group_ids", ())
    assert (selection.joined, selection.all_groups) == (
        kwargs.get("joined", False), kwargs.get("all_groups", False)
    )


def test_joined_and_all_do_not_go_together():
    with pytest.raises(ValidationError, match="--joined and --all do not go together") as info:
        GroupSelection(joined=True, all_groups=True)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("command", ["sync", "watch"])
def test_the_commands_refuse_it_before_anything_runs(command, tmp_path):
    db = tmp_path / "a.db"
    result = CliRunner().invoke(cli, ["--db", str(db), command, "--joined", "--all"])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line == (
        f"Error: --joined and --all do not go together (see `cli {command} --help`)"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_options_arrive_as_one_selection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no archive: a GUID is taken as it is

    @click.command()
    @group_selection_options
    def probe(selection):
        click.echo(repr(selection))

    result = CliRunner().invoke(probe, ["--group", GROUP.upper(), "--group", GROUP, "--joined"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(GroupSelection((GROUP, GROUP), joined=True))
