"""Which third-party packages a folder of Python code imports, and whether a requirements file
pins each (as the distribution that provides the module)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from functools import cache
from pathlib import Path

# Namespace packages shared by many distributions: the module's second part names the package.
NAMESPACES = {"azure", "opentelemetry"}


def third_party_imports(folder: Path, local: set[str]) -> set[str]:
    """Imported modules outside the standard library and `local`, as `top` or `namespace.sub`."""
    imported: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {_key(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module in NAMESPACES:  # from azure import core: the module is azure.core
                    imported |= {_key(f"{node.module}.{alias.name}") for alias in node.names}
                else:
                    imported.add(_key(node.module))
    skip = local | set(sys.stdlib_module_names) | {"__future__"}
    return {module for module in imported if module.split(".")[0] not in skip}


def _key(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in NAMESPACES and len(parts) > 1 else parts[0]


@cache
def _providers() -> dict[str, set[str]]:
    """`top` or `namespace.sub` → the installed distributions whose files provide it."""
    found: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            parts = file.parts
            if not parts or not str(file).endswith(".py"):
                continue
            depth = 2 if parts[0] in NAMESPACES and len(parts) > 2 else 1
            module = ".".join(parts[:depth]).removesuffix(".py")
            found.setdefault(module, set()).add(distribution.metadata["Name"])
    return found


def unpinned(modules: set[str], requirements: Path) -> list[str]:
    """The modules no `name==version` line of `requirements` provides."""
    lines = requirements.read_text(encoding="utf-8").splitlines()
    pinned = {_normal(line.split("==")[0]) for line in lines if "==" in line}
    return [
        module
        for module in sorted(modules)
        if not {_normal(name) for name in _providers().get(module, {module})} & pinned
    ]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").strip()
