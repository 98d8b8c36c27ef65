"""The docs stay true to the code: links resolve, and every command is documented.

The generated parts (each command's help, the schema) are checked by ``cog --check`` in
``./scripts/test``; this checks what cog cannot: that every relative link and ``#anchor`` in
README.md, CHANGELOG.md and docs/*.md points at a file and heading that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from groupsync.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (duplicates get -1, -2, ...)."""
    found: set[str] = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if not line.startswith("#"):
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line.lstrip("#").strip())
        slug = "".join(c for c in text.lower() if c.isalnum() or c in " -_").replace(" ", "-")
        name, n = slug, 0
        while name in found:
            n += 1
            name = f"{slug}-{n}"
        found.add(name)
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(doc):
    broken = []
    for target in links(doc):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert broken == []


def test_every_command_has_help_and_a_readme_example():
    readme = (ROOT / "README.md").read_text()
    reference = anchors(ROOT / "docs" / "cli.md")
    missing = []
    for name, command in cli.commands.items():
        if not (command.help or "").strip():
            missing.append(f"{name}: no help")
        if f"groupsync {name}" not in readme and f"`{name}`" not in readme:
            missing.append(f"{name}: not in README.md")
        if f"groupsync-{name}" not in reference:
            missing.append(f"{name}: not in docs/cli.md")
        if isinstance(command, click.Group):
            missing += [
                f"{name} {sub}: no help"
                for sub, c in command.commands.items()
                if not (c.help or "").strip()
            ]
    assert missing == []


def test_every_setting_is_documented():
    """docs/configuration.md is generated from SETTING_DOCS: a new setting needs its words."""
    import dataclasses

    from groupsync.config import SETTING_DOCS, Settings

    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "sources"]
    assert sorted(SETTING_DOCS) == sorted(fields)
