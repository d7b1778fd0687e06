"""Which third-party packages a folder of Python code imports, and whether a requirements file
pins each (as the distribution that provides the module)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path


def third_party_imports(folder: Path, local: set[str]) -> set[str]:
    imported: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    return imported - local - set(sys.stdlib_module_names) - {"__future__"}


def unpinned(modules: set[str], requirements: Path) -> list[str]:
    """The modules no `name==version` line of `requirements` provides."""
    lines = requirements.read_text(encoding="utf-8").splitlines()
    pinned = {_normal(line.split("==")[0]) for line in lines if "==" in line}
    distributions = importlib.metadata.packages_distributions()
    return [
        module
        for module in sorted(modules)
        if not {_normal(name) for name in distributions.get(module, [module])} & pinned
    ]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").strip()
