"""The package's dependencies run one way, and the tree shows it.

core <- warehouse <- ops <- the stages (intake, validate, link, status, pairing, followup, privacy)
<- export <- figures <- tasks, cli, dashboard, worker (the Celery workers' preload). No module
imports one of a later layer, imports count wherever they are written (a function-level import is a
dependency too), there is no import cycle
between modules, and no production module imports the synthetic-data generators: only the CLI's
``sample`` command does, inside the command.

Read from the source with ``ast``: no module is imported to check this.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from rosterlink.core import paths

PACKAGE = "rosterlink"
ROOT = paths.PACKAGE_DIR

STAGES = {"intake", "validate", "link", "status", "pairing", "followup", "privacy"}
# what each part of the package may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "warehouse": {"core"},
    "ops": {"core", "warehouse"},
    "intake": {"core", "warehouse", "ops"},
    "validate": {"core", "warehouse", "ops", "intake"},
    "link": {"core", "warehouse", "ops"},
    "pairing": {"core", "warehouse", "ops"},
    "status": {"core", "warehouse", "ops", "pairing"},
    "followup": {"core", "warehouse", "ops"},
    "privacy": {"core", "warehouse", "ops"},
    "export": {"core", "warehouse", "ops", *STAGES},
    "figures": {"core", "warehouse", "ops", *STAGES, "export"},
    "tasks": {"core", "warehouse", "ops", *STAGES, "export", "figures"},
    "dashboard": {"core", "warehouse", "ops", *STAGES, "export", "figures"},
    "cli": {"core", "warehouse", "ops", *STAGES, "export", "figures", "tasks"},
    "worker": {"core", "warehouse", "ops", *STAGES, "export", "figures", "tasks"},
    "synthetic": {"core", "warehouse", "ops", *STAGES, "export"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported rosterlink module, at module level?, line) for every import in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are not run, but still count as module level
        if isinstance(node, ast.If):
            top |= {id(n) for n in node.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from rosterlink.x import y` depends on rosterlink.x.y when y is a module, else on rosterlink.x
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                out.append((target, id(node) in top, node.lineno))
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, bool, int]]]]:
    modules = _modules()
    return modules, {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_part_of_the_package_is_in_the_layer_table():
    modules, _ = _graph()
    parts = {_part(m) for m in modules} - {""}
    assert parts - set(ALLOWED) == set(), "a new part of the package needs its place in ALLOWED"


def test_dependencies_run_one_way():
    _, graph = _graph()
    wrong = []
    for module, imports in graph.items():
        mine = _part(module)
        for target, _at_top, line in imports:
            theirs = _part(target)
            if theirs in ("", mine) or theirs in ALLOWED.get(mine, set()):
                continue
            if mine == "cli" and theirs == "synthetic" and not _at_top:
                continue  # `rosterlink sample` imports the generators inside the command
            wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_no_production_module_imports_the_synthetic_generators():
    _, graph = _graph()
    wrong = [
        f"{module}:{line}"
        for module, imports in graph.items()
        if _part(module) not in ("synthetic", "cli")
        for target, _top, line in imports
        if _part(target) == "synthetic"
    ]
    assert wrong == []


def test_no_import_cycles_between_modules():
    _, graph = _graph()
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in graph.items():
        for target, _top, _line in imports:
            # a package's __init__ and its own submodules import each other by design (re-exports)
            if (
                target != module
                and not module.startswith(target + ".")
                and not target.startswith(module + ".")
            ):
                edges[module].add(target)
    cycles = _cycles(set(graph), edges)
    assert cycles == []


def _cycles(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_cycle_and_a_wrong_way_import():
    """The rules above can fail: a made-up graph with a cycle and an upward import is caught."""
    assert _cycles({"a", "b", "c"}, {"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert "export" not in ALLOWED["link"]
