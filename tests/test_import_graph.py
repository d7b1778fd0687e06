"""The import graph, read with `ast` (nothing is imported): which way each package may depend,
and no cycle between packages, between units (a subpackage counts as one unit), or between modules.

Every import counts: module-level, inside a function (lazy, for cold start), under
`if TYPE_CHECKING:`, and `importlib.import_module("literal")`. A lazy or type-only import is
still a dependency: the importing code is written against the other module's names, so a cycle
through it ties the two together as much as any other. Laziness is a cold-start tool, not a
layering exemption. `from pkg import sub` is an edge to the module `pkg.sub`, not to `pkg`
(whose `__init__` Python runs on the way, whichever way a submodule is imported).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The first-party top-level packages and modules, and which of them each may import.
# wire (the JSON converter) and storage know nothing of the app; samples are separate deployables; local_host knows only the
# Functions contract; the offline model server stands alone; devkit (shared fakes) may use the
# app but never the tests or benchmarks that use it; function_app only wires the app.
ALLOWED: Mapping[str, frozenset[str]] = {
    "wire": frozenset(),
    "storage": frozenset({"wire"}),
    "agent": frozenset({"storage", "wire"}),
    "function_app": frozenset({"agent", "storage"}),
    "local_host": frozenset(),
    "offline_model": frozenset(),
    "samples": frozenset(),
    "devstack": frozenset(),
    "scripts": frozenset(),
    "devkit": frozenset({"agent", "storage", "wire", "local_host", "offline_model", "samples"}),
    # The MCP conformance runner: our client (agent.mcp) and sample servers, served by devkit.
    "conformance": frozenset({"agent", "samples", "devkit"}),
    "benchmarks": frozenset(
        {"agent", "storage", "function_app", "local_host", "offline_model", "samples", "devkit"}
    ),
    "tests": frozenset(
        {
            "agent",
            "storage",
            "wire",
            "function_app",
            "local_host",
            "offline_model",
            "samples",
            "devstack",
            "devkit",
            "conformance",
            "scripts",
        }
    ),
}
SKIPPED_DIRS = {".venv", ".venv-infra", "node_modules", "__pycache__", ".git"}

Graph = dict[str, set[str]]


# --- reading the tree --------------------------------------------------------------------------


def modules_under(root: Path, tops: Iterable[str]) -> dict[str, Path]:
    """Dotted module name → file, for the first-party packages and top-level modules."""
    found: dict[str, Path] = {}
    for top in tops:
        single = root / f"{top}.py"
        if single.is_file():
            found[top] = single
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else ():
            if SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                continue
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _targets(module: str, is_package: bool, node: ast.AST) -> Iterator[str]:
    """The dotted names one import statement (or import_module call) asks for."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        yield from (f"{base}.{alias.name}" for alias in node.names)
        yield base
    elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value


def _is_import_module(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest first-party module `name` falls in (`pkg.mod.Class` → `pkg.mod`)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules: Mapping[str, Path]) -> Graph:
    """Module → the first-party modules it imports (a `from pkg import sub` names `pkg.sub`)."""
    graph: Graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            targets = list(_targets(module, is_package, node))
            if isinstance(node, ast.ImportFrom):
                *names, base = targets
                submodules = [n for n in names if n in modules]
                # `from pkg import sub, name`: sub is a module edge, name one to pkg itself.
                targets = submodules + ([base] if len(submodules) < len(names) else [])
            deps.update(known for name in targets if (known := _known(name, modules)))
        graph[module] = deps - {module}
    return graph


# --- grouping and cycles -----------------------------------------------------------------------


def top_level(module: str) -> str:
    return module.split(".")[0]


def unit_of(module: str, modules: Mapping[str, Path]) -> str:
    """The subpackage a module sits in (below the top level), else the module itself."""
    parts = module.split(".")
    for end in range(2, len(parts)):
        package = ".".join(parts[:end])
        if modules.get(package, Path()).name == "__init__.py":
            return package
    return module


def collapse(graph: Graph, group: Mapping[str, str]) -> Graph:
    collapsed: Graph = {}
    for module, deps in graph.items():
        source = group[module]
        collapsed.setdefault(source, set()).update(group[d] for d in deps if group[d] != source)
    return collapsed


def cycles(graph: Graph) -> list[list[str]]:
    """Every strongly connected component of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def forbidden_imports(graph: Graph, allowed: Mapping[str, frozenset[str]]) -> list[str]:
    return sorted(
        f"{module} imports {dep}"
        for module, deps in graph.items()
        for dep in deps
        if top_level(dep) != top_level(module)
        and top_level(dep) not in allowed.get(top_level(module), frozenset())
    )


def sample_crossings(graph: Graph) -> list[str]:
    """Each sample is its own deployable: none imports another."""
    return sorted(
        f"{module} imports {dep}"
        for module, deps in graph.items()
        if top_level(module) == "samples" and module.count(".") >= 1
        for dep in deps
        if dep.count(".") >= 1 and dep.split(".")[1] != module.split(".")[1]
    )


# --- the house -------------------------------------------------------------------------------

MODULES = modules_under(ROOT, ALLOWED)
GRAPH = import_graph(MODULES)


def test_every_first_party_package_has_a_rule() -> None:
    on_disk = {
        path.stem if path.is_file() else path.name
        for path in ROOT.iterdir()
        if ((path.is_dir() and (path / "__init__.py").exists()) or path.suffix == ".py")
        and path.name not in SKIPPED_DIRS
    }
    assert on_disk - set(ALLOWED) == set(), "add the new package to ALLOWED"


def test_no_package_imports_against_the_layering() -> None:
    assert forbidden_imports(GRAPH, ALLOWED) == []


def test_no_sample_imports_another_sample() -> None:
    assert sample_crossings(GRAPH) == []


def test_there_is_no_cycle_between_top_level_packages() -> None:
    assert cycles(collapse(GRAPH, {m: top_level(m) for m in GRAPH})) == []


def test_there_is_no_cycle_between_subpackages_and_modules() -> None:
    assert cycles(collapse(GRAPH, {m: unit_of(m, MODULES) for m in GRAPH})) == []


def test_there_is_no_cycle_between_modules() -> None:
    assert cycles(GRAPH) == []


# --- the checker itself --------------------------------------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return modules_under(root, {name.split("/")[0].removesuffix(".py") for name in files})


def test_the_checker_sees_lazy_type_only_and_relative_imports(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "storage/__init__.py": "",
            "storage/store.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from agent.errors import NotFound\n"
            ),
            "agent/__init__.py": "",
            "agent/errors.py": "def late():\n    from . import loop\n",
            "agent/loop.py": "import importlib\nimportlib.import_module('agent.errors')\n",
            "agent/mcp/__init__.py": "",
            "agent/mcp/pool.py": "from agent import secrets\n",
            "agent/secrets.py": "from agent.mcp.config import X\n",
            "agent/mcp/config.py": "X = 1\n",
        },
    )
    graph = import_graph(modules)
    assert forbidden_imports(graph, {"agent": frozenset({"storage"})}) == [
        "storage.store imports agent.errors"
    ]
    assert cycles(graph) == [["agent.errors", "agent.loop"]]
    units = collapse(graph, {m: unit_of(m, modules) for m in graph})
    assert ["agent.mcp", "agent.secrets"] in cycles(units)


def test_importing_a_submodule_through_its_package_is_an_edge_to_the_submodule(
    tmp_path: Path,
) -> None:
    modules = _tree(
        tmp_path,
        {
            "samples/__init__.py": "",
            "samples/a/__init__.py": "from samples.a.server import Server\n",
            "samples/a/server.py": "from samples.a import errors\nclass Server: ...\n",
            "samples/a/errors.py": "class E(Exception): ...\n",
            "samples/b/__init__.py": "from samples.a import Server\n",
        },
    )
    graph = import_graph(modules)
    assert cycles(graph) == []
    assert sample_crossings(graph) == ["samples.b imports samples.a"]
