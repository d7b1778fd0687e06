"""Load `function_app.py` and index it the way the Python worker does.

Everything the host needs comes from the app itself: `app.get_functions()` gives each function,
`get_function_json()` its bindings (routes, methods, auth levels, binding names, durable names)
and `get_user_function()` the callable. There is no second table to keep in sync.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from azure.functions import FunctionRegister

from .errors import AppLoadError
from .routing import RouteTemplate, RouteTemplateError, compile_route

logger = logging.getLogger(__name__)

SCRIPT_FILE = "function_app.py"
MODULE_NAME = "function_app"

HTTP_TRIGGER = "httpTrigger"
ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"
TIMER_TRIGGER = "timerTrigger"
DURABLE_CLIENT = "durableClient"
HTTP_OUTPUT = "http"

ANONYMOUS = "ANONYMOUS"


@dataclass(frozen=True)
class FunctionInfo:
    """One indexed function: its name, bindings and the callable the worker would invoke."""

    name: str
    bindings: tuple[dict[str, Any], ...]
    trigger: dict[str, Any]
    user_function: Callable[..., Any]
    is_async: bool
    parameter_names: tuple[str, ...]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    def input_bindings(self) -> list[dict[str, Any]]:
        return [b for b in self.bindings if str(b.get("direction", "")).upper() == "IN"]


@dataclass(frozen=True)
class HttpRoute:
    function: FunctionInfo
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


@dataclass(frozen=True)
class AppIndex:
    """The indexed app: functions by name, HTTP routes by precedence, durable names."""

    functions: dict[str, FunctionInfo]
    http_routes: tuple[HttpRoute, ...]
    orchestrators: dict[str, FunctionInfo] = field(default_factory=dict)
    activities: dict[str, FunctionInfo] = field(default_factory=dict)
    unsupported: tuple[FunctionInfo, ...] = ()
    timers: tuple[FunctionInfo, ...] = ()  # run by local_host.timers

    def orchestrator(self, name: str) -> FunctionInfo | None:
        # Durable function names are matched case-insensitively, like the extension's FunctionName.
        return self.orchestrators.get(name.lower())

    def activity(self, name: str) -> FunctionInfo | None:
        return self.activities.get(name.lower())

    def orchestrator_names(self) -> list[str]:
        return sorted(durable_name(f) for f in self.orchestrators.values())

    def activity_names(self) -> list[str]:
        return sorted(durable_name(f) for f in self.activities.values())


def load_app_module(app_dir: Path, *, fresh: bool = False) -> ModuleType:
    """Import `function_app.py` from `app_dir` (the directory also goes on sys.path, like the worker).

    A `function_app` module already imported from the same file is reused (so tests can patch
    it before starting a host); `fresh=True` executes the file again in a new module.
    """
    script = (app_dir / SCRIPT_FILE).resolve()
    if not script.is_file():
        raise AppLoadError(f"{script} not found: the app directory must contain {SCRIPT_FILE}")
    app_path = str(script.parent)
    if app_path not in sys.path:
        sys.path.insert(0, app_path)
    previous = sys.modules.get(MODULE_NAME)
    if not fresh and previous is not None and _module_file(previous) == script:
        return previous
    spec = importlib.util.spec_from_file_location(MODULE_NAME, script)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if previous is not None:
            sys.modules[MODULE_NAME] = previous
        else:
            sys.modules.pop(MODULE_NAME, None)
        raise AppLoadError(f"importing {script} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _module_file(module: ModuleType) -> Path | None:
    location = getattr(module, "__file__", None)
    return Path(location).resolve() if location else None


def find_function_register(module: ModuleType) -> FunctionRegister:
    """The one FunctionApp/DFApp instance defined at module level (the worker requires exactly one)."""
    registers = {id(v): v for v in vars(module).values() if isinstance(v, FunctionRegister)}
    if len(registers) != 1:
        raise AppLoadError(
            f"{SCRIPT_FILE} must define exactly one FunctionApp/DFApp instance, found {len(registers)}"
        )
    return next(iter(registers.values()))


# get_functions() may run once per app object (it records the names it has seen and refuses
# them the second time), like the worker's single indexing at startup: cache its result.
_INDEXES: weakref.WeakKeyDictionary[FunctionRegister, AppIndex] = weakref.WeakKeyDictionary()


def index_app(register: FunctionRegister) -> AppIndex:
    """Index the app from its decorators: the same data the worker sends to the host."""
    cached = _INDEXES.get(register)
    if cached is not None:
        return cached
    # Forget names recorded by an earlier get_functions() call (by a test, say): it would
    # otherwise refuse every name as a duplicate.
    register.functions_bindings = None
    try:
        functions = register.get_functions()
    except Exception as exc:
        raise AppLoadError(f"indexing the app failed: {type(exc).__name__}: {exc}") from exc
    index = build_index(_function_info(function) for function in functions)
    _INDEXES[register] = index
    return index


def build_index(infos: Iterable[FunctionInfo]) -> AppIndex:
    by_name: dict[str, FunctionInfo] = {}
    routes: list[HttpRoute] = []
    orchestrators: dict[str, FunctionInfo] = {}
    activities: dict[str, FunctionInfo] = {}
    unsupported: list[FunctionInfo] = []
    timers: list[FunctionInfo] = []
    for info in infos:
        if info.name.lower() in {name.lower() for name in by_name}:
            raise AppLoadError(f"two functions are named {info.name!r}")
        by_name[info.name] = info
        kind = info.trigger_type
        if kind == HTTP_TRIGGER:
            routes.append(_http_route(info))
        elif kind == ORCHESTRATION_TRIGGER:
            _register_durable(orchestrators, info, "orchestration", "orchestrator")
        elif kind == ACTIVITY_TRIGGER:
            _register_durable(activities, info, "activity", "activity")
        elif kind == TIMER_TRIGGER:
            timers.append(info)
        else:
            unsupported.append(info)
    routes.sort(key=lambda route: route.template.precedence)
    return AppIndex(
        by_name, tuple(routes), orchestrators, activities, tuple(unsupported), tuple(timers)
    )


def _function_info(function: Any) -> FunctionInfo:
    name = function.get_function_name()
    document = json.loads(function.get_function_json())
    bindings = tuple(document.get("bindings", []))
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise AppLoadError(f"function {name!r} must have exactly one trigger")
    user_function = function.get_user_function()
    try:
        parameter_names = tuple(inspect.signature(user_function).parameters)
    except (TypeError, ValueError) as exc:
        raise AppLoadError(f"function {name!r}: cannot read its signature") from exc
    _check_parameters(name, bindings, parameter_names)
    return FunctionInfo(
        name=name,
        bindings=bindings,
        trigger=triggers[0],
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        parameter_names=parameter_names,
    )


def _check_parameters(
    name: str, bindings: tuple[dict[str, Any], ...], parameter_names: tuple[str, ...]
) -> None:
    """The worker's load-time check: parameters and binding names must match one to one.

    (So `orchestration_trigger(context_name=...)` with any name but `context` fails here as on
    Azure: the SDK's generated handle always takes `context`.)
    """
    bound = {str(b["name"]) for b in bindings if b.get("name") != "$return"}
    unbound = set(parameter_names) - bound - {"context"}
    if unbound:
        raise AppLoadError(
            f"cannot load the {name} function: the following parameters are declared in "
            f"Python but not in the bindings: {sorted(unbound)}"
        )
    missing = bound - set(parameter_names)
    if missing:
        raise AppLoadError(
            f"cannot load the {name} function: the following parameters are declared in "
            f"the bindings but not in Python: {sorted(missing)}"
        )


def _http_route(info: FunctionInfo) -> HttpRoute:
    trigger = info.trigger
    route = trigger.get("route")
    template_text = route if route is not None else info.name
    try:
        template = compile_route(template_text)
    except RouteTemplateError as exc:
        raise AppLoadError(f"function {info.name!r}: {exc}") from exc
    methods = trigger.get("methods")
    method_set = frozenset(str(m).upper() for m in methods) if methods else None
    auth_level = str(trigger.get("authLevel") or "FUNCTION").upper()
    return HttpRoute(info, template, method_set, auth_level)


def _register_durable(
    registry: dict[str, FunctionInfo], info: FunctionInfo, name_key: str, kind: str
) -> None:
    name = str(info.trigger.get(name_key) or info.name)
    if name.lower() in registry:
        raise AppLoadError(f"two {kind} functions are named {name!r}")
    registry[name.lower()] = info


def durable_name(info: FunctionInfo) -> str:
    """The name orchestrations use for this orchestrator or activity (binding name or function name)."""
    return str(info.trigger.get("orchestration") or info.trigger.get("activity") or info.name)


def describe_routes(index: AppIndex, base_url: str, route_prefix: str) -> list[str]:
    """Human-readable listing like the one Core Tools prints at startup."""
    lines: list[str] = []
    prefix = f"/{route_prefix}" if route_prefix else ""
    for route in index.http_routes:
        methods = ",".join(sorted(route.methods)) if route.methods else "*"
        template = route.template.template.strip("/")
        lines.append(f"{route.function.name}: [{methods}] {base_url}{prefix}/{template}")
    for info in index.orchestrators.values():
        lines.append(f"{info.name}: orchestrationTrigger")
    for info in index.activities.values():
        lines.append(f"{info.name}: activityTrigger")
    for info in index.timers:
        lines.append(f"{info.name}: timerTrigger ({info.trigger.get('schedule')})")
    for info in index.unsupported:
        lines.append(f"{info.name}: {info.trigger_type} (not supported by the local host, not run)")
    return lines
