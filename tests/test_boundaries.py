"""The import rules of ../shared/house-style.md, checked on every module's import nodes."""

from __future__ import annotations

import ast
import re
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


# Modules that may execute SQL: the archive package owns every statement of the product.
# ``migrations`` is the schema itself; ``throttle`` keeps its own small database (the
# shared call window in ``<db>.throttle``, not the archive), and as a leaf it may not
# import the archive.
SQL_OWNERS = {"archive", "migrations", "throttle"}
# Canned queries are metadata that Datasette runs, shown to users beside their tables.
SQL_AS_METADATA = {"datasette_plugin.metadata"}
SQL_TEXT = re.compile(
    r"^\s*(select\b.*\bfrom\b|insert\s+(or\s+\w+\s+)?into\b|update\s+\w+\s+set\b|"
    r"delete\s+from\b|(create|drop|alter)\s+(table|index|view|trigger|virtual)\b|"
    r"pragma\s+\w+|with\s+\w+\s+as\s*\()",
    re.IGNORECASE | re.DOTALL,
)
# (sqlite-utils' db.query cannot appear: only the archive imports sqlite_utils.)
EXECUTES = {"execute", "executemany", "executescript", "execute_fn"}


def _runs_archive_query(call: ast.Call) -> bool:
    """Datasette running the archive's SQL for the plugin (``db.execute(queries.X, ...)``,
    ``db.execute_fn(lambda conn: queries.f(conn, ...))``), under its own time limit."""
    return any("queries." in ast.unparse(arg) for arg in call.args)


def sql_uses(path: Path, datasette: bool = False) -> list[str]:
    """Calls that run SQL and string literals that read as SQL, with their line numbers;
    in the Datasette plugin, Datasette may run the archive package's queries."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in EXECUTES and not (datasette and _runs_archive_query(node)):
                found.append(f"{node.lineno}: .{node.func.attr}(")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_TEXT.match(node.value)
        ):
            found.append(f"{node.lineno}: {node.value.strip()[:40]!r}")
    return found


SQL_CHECKED = [
    (m, p) for m, p in ALL
    if m.split(".")[0] not in SQL_OWNERS | {"simulator"} and m not in SQL_AS_METADATA
]


@pytest.mark.parametrize("module,path", SQL_CHECKED, ids=[m for m, _ in SQL_CHECKED])
def test_sql_lives_in_the_archive(module, path):
    uses = sql_uses(path, datasette=module.startswith("datasette_plugin."))
    assert not uses, f"{module} runs SQL of its own; move it into groupsync.archive: {uses}"
