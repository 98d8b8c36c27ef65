"""The public API: ``groupsync.__all__`` sorted and importable, and nothing inside the
package importing its root (which would make import order matter)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
from inspect import ismodule
from pathlib import Path

import pytest

import groupsync
from groupsync.version import __version__

PACKAGE = Path(groupsync.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_all_is_sorted_and_unique():
    assert groupsync.__all__ == sorted(set(groupsync.__all__))


@pytest.mark.parametrize("name", groupsync.__all__)
def test_every_name_in_all_is_importable(name):
    namespace: dict[str, object] = {}
    exec(f"from groupsync import {name}", namespace)
    assert namespace[name] is getattr(groupsync, name)


def test_all_names_every_public_name_of_the_root():
    public = {n for n in vars(groupsync) if not n.startswith("_")}
    # Submodules bound as attributes by importing them are not the API, unless listed.
    modules = {n for n in public if ismodule(getattr(groupsync, n))}
    assert public - modules - {"annotations", "TYPE_CHECKING", "ModuleType"} <= set(
        groupsync.__all__
    )


def test_search_is_the_search_package():
    assert groupsync.search is importlib.import_module("groupsync.search")
    assert callable(groupsync.search.search) and callable(groupsync.search.update_index)


def test_version_has_one_home():
    assert groupsync.__version__ == __version__
    assert importlib.metadata.version("groupsync") == __version__


def test_import_does_not_load_whoosh():
    code = "import sys, groupsync.cli; print('whoosh' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _root_imports(source: str, relative: Path) -> list[str]:
    """Each import in ``source`` (the module at ``relative`` in the package) that reaches
    ``groupsync/__init__.py`` itself rather than a module beside it, as ``line: what``."""
    depth = len(relative.parts) - 1  # folders between the root and this file
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name == "groupsync"]
            found += [f"{node.lineno}: import {name}" for name in names]
        elif isinstance(node, ast.ImportFrom):
            root = node.module == "groupsync" if node.level == 0 else (
                node.level == depth + 1 and node.module is None
            )
            if not root:
                continue
            for alias in node.names:
                name = alias.name
                submodule = (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()
                # A submodule whose name the root also exports as a function (``export``,
                # ``connect``) would be the function here, so it counts as the root too.
                shadowed = name in groupsync.__all__ and not ismodule(getattr(groupsync, name))
                if not submodule or shadowed:
                    found.append(f"{node.lineno}: from {'.' * node.level} import {name}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_nothing_inside_imports_the_package_root(path):
    if path != PACKAGE / "__init__.py":
        assert _root_imports(path.read_text(), path.relative_to(PACKAGE)) == []


def test_the_root_import_check_sees_what_it_should():
    source = "from .. import __version__\nfrom .. import search\nfrom .. import export\n"
    found = _root_imports(source, Path("datasette_plugin/views.py"))
    assert found == ["1: from .. import __version__", "3: from .. import export"]
    assert _root_imports("import groupsync\nfrom . import reads\n", Path("cli.py")) == [
        "1: import groupsync"
    ]
