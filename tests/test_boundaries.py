"""The import rules of ../shared/house-style.md, checked on every module's import nodes."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "groupsync"

# third-party top-level name -> the only modules (dotted, under groupsync) that may import it
OWNERS = {
    "msal": {"auth"},
    "httpx": {"graph"},
    "sqlite_utils": {"archive", "migrations"},
    "whoosh": {"search"},
    "click": {"cli"},
    "datasette": {"datasette_plugin"},
    # html is the one leaf with two focused libraries, one per job: nh3 sanitises for
    # display, selectolax's HTML5 parser turns bodies into text at sync speed.
    "nh3": {"html"},
    "selectolax": {"html"},
}
LEAVES = {
    "errors", "files", "models", "html", "throttle", "config", "ids", "mailheaders", "terminal",
}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(parts) or "__init__", path


def runtime_imports(path: Path, module: str) -> set[str]:
    """Absolute names imported outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    package_parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                prefix = ".".join(["groupsync", *[p for p in base if p and p != "__init__"]])
                target = f"{prefix}.{node.module}" if node.module else prefix
                if node.module is None:
                    names.update(f"{target}.{a.name}" for a in node.names)
                else:
                    names.add(target)
            else:
                names.add(node.module or "")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


ALL = list(modules())


@pytest.mark.parametrize("module,path", ALL, ids=[m for m, _ in ALL])
def test_third_party_owners(module, path):
    top = module.split(".")[0]
    for name in runtime_imports(path, module):
        root = name.split(".")[0]
        if root in OWNERS:
            assert top in OWNERS[root], f"{module} imports {name}; only {OWNERS[root]} may"


@pytest.mark.parametrize("module,path", ALL, ids=[m for m, _ in ALL])
def test_layers(module, path):
    top = module.split(".")[0]
    ours = {n.split(".")[1] for n in runtime_imports(path, module) if n.startswith("groupsync.")}
    ours.discard(top)
    if top in LEAVES:
        assert ours <= {"errors", "files"}, f"leaf {module} imports {ours}"
    if top == "graph":
        assert not ours & {"auth", "archive", "cli", "sync", "outbox"}
    if top == "simulator":
        assert ours <= {"models"}, f"the simulator must not share code with the client: {ours}"
        stdlib = set(sys.stdlib_module_names) | {"groupsync", "__future__"}
        third = {n.split(".")[0] for n in runtime_imports(path, module)} - stdlib
        assert not third, f"the simulator imports {third}"
    if top == "datasette_plugin":
        assert not ours & {"graph", "auth", "outbox"}, "the UI must not reach the network"
    if top not in {"cli", "__main__"}:
        assert "cli" not in ours
