"""What README.md and docs/*.md generate with cog: command help and the archive's schema.

Both come from the code, so a changed option or column description shows up in the docs at
the next ``cog -r`` and ``./scripts/test`` (``cog --check``) fails until it does. Used from
the cog blocks as ``import cogdocs`` (``cog -I scripts``).
"""

from __future__ import annotations

import click
import cog
from click.testing import CliRunner

from groupsync.cli import cli
from groupsync.datasette_plugin.metadata import CANNED_QUERIES, TABLES

# Fixed, so the generated help does not depend on the terminal that ran cog.
WIDTH = 88


def _command(path: list[str]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def commands() -> list[list[str]]:
    """Every command's path, sorted, a group's subcommands after the group."""
    found = []
    for name in sorted(cli.commands):
        found.append([name])
        command = cli.commands[name]
        if isinstance(command, click.Group):
            found.extend([name, sub] for sub in sorted(command.commands))
    return found


def help_text(*path: str) -> str:
    """``groupsync PATH --help`` as a user's terminal of WIDTH columns shows it."""
    result = CliRunner().invoke(
        cli, [*path, "--help"], prog_name="groupsync", terminal_width=WIDTH, env={}
    )
    if result.exit_code != 0:
        raise RuntimeError(f"groupsync {' '.join(path)} --help: {result.output}")
    return result.output


def summary(*path: str) -> str:
    """The first line of a command's help, as ``groupsync --help`` lists it (but whole)."""
    return _command(list(path)).get_short_help_str(limit=1000)


def anchor(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def command_table(link_to: str) -> None:
    """One row per command: its name, linking to its help in ``link_to``, and its summary."""
    cog.outl("| command | what it does |")
    cog.outl("| --- | --- |")
    for path in commands():
        name = " ".join(path)
        cog.outl(f"| [`{name}`]({link_to}#{anchor('groupsync ' + name)}) | {summary(*path)} |")


def all_help() -> None:
    """A heading and the ``--help`` of every command."""
    for path in commands():
        cog.outl(f"\n## groupsync {' '.join(path)}\n")
        cog.outl("```")
        cog.out(help_text(*path))
        cog.outl("```")


def table_summary(link_to: str) -> None:
    """One row per table the archive holds, with the description Datasette shows."""
    cog.outl("| table | what it holds |")
    cog.outl("| --- | --- |")
    for name, table in TABLES.items():
        cog.outl(f"| [`{name}`]({link_to}#{anchor(name)}) | {_cell(table['description'])} |")


def table_columns() -> None:
    """A heading per table, its description, and its columns with theirs."""
    for name, table in TABLES.items():
        cog.outl(f"\n### {name}\n")
        cog.outl(_cell(table["description"]) + "\n")
        cog.outl("| column | description |")
        cog.outl("| --- | --- |")
        for column, description in table.get("columns", {}).items():
            cog.outl(f"| `{column}` | {_cell(description)} |")


def canned_queries() -> None:
    """One row per canned query Datasette offers on an archive, with its description."""
    cog.outl("| query | answers |")
    cog.outl("| --- | --- |")
    for name, query in CANNED_QUERIES.items():
        cog.outl(f"| `{name}` | {_cell(query['description'])} |")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_table() -> None:
    """One row per setting: its environment variable, default, meaning and valid values."""
    import dataclasses

    from groupsync.config import SETTING_DOCS, Settings, format_rate

    cog.outl("| setting | environment | default | what it is | valid values |")
    cog.outl("| --- | --- | --- | --- | --- |")
    for f in dataclasses.fields(Settings):
        if f.name == "sources":
            continue
        meaning, valid = SETTING_DOCS[f.name]
        if f.name == "token_cache":
            default = "`~/.config/groupsync/token_cache.json`"
        elif f.name == "rate":
            default = f"`{format_rate(f.default)}`"  # type: ignore[arg-type]
        elif f.default is None:
            default = "none"
        elif isinstance(f.default, float):
            default = f"`{f.default:g}` seconds"
        else:
            default = f"`{f.default}`"
        env = "GROUPSYNC_" + f.name.upper()
        cog.outl(f"| `{f.name}` | `{env}` | {default} | {_cell(meaning)} | {_cell(valid)} |")
