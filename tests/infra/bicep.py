"""The Azure templates (infra/*.bicep) as data: parsed with pycep-parser in `.venv-infra` (its
versions conflict with ours), and a small evaluator for the expressions the tests read.

    templates = parse_templates()                    # {"modules/functionapp.bicep": {...}, ...}
    scope = Scope(templates["modules/functionapp.bicep"], {"name": "func-x", "storage.name": "st"})
    settings = scope.variable("appSettings")          # {"AzureWebJobsStorage__accountName": "st", ...}

pycep writes a reference to a parameter or variable as its bare name, the same as a string
literal: a string that names one of the template's parameters or variables is read as that
reference. `resource.property` chains are looked up in the values given for them. Anything the
evaluator does not know raises, so a template that outgrows it fails the tests loudly.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
INFRA_VENV = ROOT / ".venv-infra"
INFRA_PYTHON = INFRA_VENV / "bin" / "python"

_PARSE_ALL = """
import json, sys
from pathlib import Path
from pycep import BicepParser
parser = BicepParser()
root = Path(sys.argv[1])
print(json.dumps({str(p.relative_to(root)): parser.parse(file_path=p) for p in sorted(root.rglob("*.bicep"))}))
"""
_INTERPOLATION = re.compile(r"(?<!\\)\$\{([^}]*)\}")


def require_infra_venv() -> Path:
    if not INFRA_PYTHON.exists():
        raise AssertionError(
            f"{INFRA_VENV.name} is missing: run scripts/bootstrap.sh (requirements-infra.txt)"
        )
    return INFRA_PYTHON


@cache
def parse_templates() -> dict[str, dict[str, Any]]:
    """Every .bicep under infra/, parsed; a file pycep cannot parse fails here, naming it."""
    done = subprocess.run(
        [str(require_infra_venv()), "-c", _PARSE_ALL, str(INFRA)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"pycep-parser failed:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)


class Scope:
    """One template's parameters (given), variables (evaluated) and resource references (given)."""

    def __init__(self, template: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self.template = template
        self.values = dict(values)

    def variable(self, name: str) -> Any:
        return self.value(self.template["variables"][name]["value"])

    def names(self, name: str) -> bool:
        return name in self.template.get("parameters", {}) or name in self.template.get(
            "variables", {}
        )

    def reference(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name in self.template.get("variables", {}):
            return self.variable(name)
        raise KeyError(f"no value given for parameter or reference {name!r}")

    def value(self, node: Any) -> Any:
        if isinstance(node, str):
            return self._string(node)
        if node is None or isinstance(node, bool | int | float):
            return node
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if set(node) == {"operator"}:
            return self._operator(node["operator"])
        if set(node) == {"function"}:
            return self._function(node["function"])
        return {key: self.value(item) for key, item in node.items()}

    def _string(self, text: str) -> Any:
        if self.names(text):
            return self.reference(text)

        def substitute(match: re.Match[str]) -> str:
            inner = match.group(1).strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner):
                raise ValueError(f"interpolation not understood: ${{{inner}}}")
            return str(self.reference(inner))

        return _INTERPOLATION.sub(substitute, text).replace("\\${", "${")

    def _operator(self, operator: Mapping[str, Any]) -> Any:
        kind, operands = operator["type"], operator["operands"]
        if kind == "property_accessor":
            return self._path(accessor_path(operator))
        if kind == "conditional":
            chosen = "true_value" if self.value(operands["condition"]) else "false_value"
            return self.value(operands[chosen])
        if kind == "logical_not":
            return not self.value(operands["bool_value"])
        raise ValueError(f"operator not understood: {kind}")

    def _path(self, path: str) -> Any:
        if path in self.values:
            return self.values[path]
        head, _, rest = path.partition(".")
        if not self.names(head):
            raise KeyError(f"no value given for {path!r}")
        value = self.reference(head)
        for key in rest.split("."):
            value = value[key]
        return value

    def _function(self, function: Mapping[str, Any]) -> Any:
        kind, parameters = function["type"], function.get("parameters") or {}
        args = [self.value(item) for item in parameters.values()]
        if kind == "string":
            return json.dumps(args[0], separators=(",", ":"))
        if kind == "empty":
            return not args[0]
        if kind == "union":
            merged: dict[str, Any] = {}
            for arg in args:
                merged.update(arg)
            return merged
        raise ValueError(f"function not understood: {kind}")


def accessor_path(operator: Mapping[str, Any]) -> str:
    """`a.b.c` of pycep's nested property accessors."""
    parts: list[str] = []
    for operand in (operator["operands"]["operand_1"], operator["operands"]["operand_2"]):
        if isinstance(operand, dict) and set(operand) == {"operator"}:
            parts.append(accessor_path(operand["operator"]))
        else:
            parts.append(str(operand))
    return ".".join(parts)


def body(declaration: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's or module's own configuration, inside any `if (...)` or `for` around it."""
    config = declaration["config"]
    while "condition" in config and "config" in config:
        config = config["config"]
    return config


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    return {
        name: resource
        for name, resource in template.get("resources", {}).items()
        if resource["type"].lower() == resource_type.lower()
    }
