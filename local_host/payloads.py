"""How payloads cross the host <-> worker boundary, step by step as the real host does it.

The Python SDK serialises every value it hands to the host (`df_dumps`), and the host wraps
some of them once more. These helpers keep each conversion in one place so the HTTP API, the
engine and the replay driver agree byte for byte:

- start_new: the SDK posts `df_dumps(input)` as a JSON body (so the body is a JSON string
  literal); the host stores the body text as the ExecutionStarted input and hands the parsed
  token (the SDK's JSON text) to the orchestrator, which `df_loads` it;
- call_activity: the action carries `df_dumps(input)`; DurableTask stores the parameters array
  `[input]`; the worker receives the element and `df_loads` it (ActivityTriggerConverter);
- activity result: `df_dumps(result)` becomes `TaskCompleted.Result` unchanged;
- raise_event: the SDK posts `json.dumps(data)` as a JSON body; the host parses the body to a
  token and serialises the token again, so the orchestrator receives the JSON *text* of the data
  (a `str`), exactly as on Azure (azure-functions-durable-python issue #295).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from azure.functions import meta

from .history import serialize_jtoken


class Converter(Protocol):
    """A worker binding converter: turns a Datum into a function argument and a result back."""

    def decode(
        self, data: meta.Datum, *, trigger_metadata: Mapping[str, meta.Datum] | None
    ) -> Any: ...

    def encode(self, obj: Any, *, expected_type: type | None) -> meta.Datum: ...


def converter(binding_type: str) -> Converter:
    """The converter the worker uses for `binding_type` (the SDK's registry is untyped)."""
    found: Converter | None = meta.get_binding_registry().get(binding_type)
    if found is None:
        raise RuntimeError(f"azure-functions has no converter for '{binding_type}' bindings")
    return found


def client_body_to_raw_input(body: str) -> str | None:
    """The ExecutionStarted input for a start request body; raises ValueError on bad JSON."""
    if not body.strip():
        return None
    json.loads(body)  # the host refuses invalid JSON with 400 before creating anything
    return body


def client_body_to_event_input(body: str) -> str | None:
    """The EventRaised input for a raise-event request body; raises ValueError on bad JSON."""
    if not body.strip():
        return None
    return serialize_jtoken(json.loads(body))


def action_input_to_raw_input(action_input: Any) -> str | None:
    """ExecutionStarted input of a sub-orchestration or continue-as-new (host serialises again)."""
    if action_input is None:
        return None
    return serialize_jtoken(action_input)


def action_input_to_task_parameters(action_input: Any) -> str:
    """TaskScheduled input: DurableTask serialises the activity parameters array."""
    return serialize_jtoken([action_input])


def raw_input_to_context_input(raw_input: str | None) -> Any:
    """The `input` of the orchestration context: the host's JToken of the raw input."""
    if raw_input is None:
        return None
    return json.loads(raw_input)


def task_parameters_to_trigger_datum(parameters_raw: str | None) -> meta.Datum:
    """The activity trigger value the worker receives for a TaskScheduled input."""
    if parameters_raw is None:
        return meta.Datum(type="json", value="null")
    parameters = json.loads(parameters_raw)
    value = parameters[0] if isinstance(parameters, list) and len(parameters) == 1 else parameters
    if isinstance(value, str):
        return meta.Datum(type="string", value=value)
    return meta.Datum(type="json", value=json.dumps(value))


def orchestrator_output_to_raw(output: Any) -> str | None:
    """The serialised orchestration output (state `output` token), as the host stores it."""
    if output is None:
        return None
    return serialize_jtoken(output)
