"""Running one activity the way the worker and the extension's TaskActivityShim do.

The input is decoded by the SDK's own `ActivityTriggerConverter` (so custom objects with
`to_json`/`from_json`, plain JSON and bare strings behave as on Azure) and the return value is
encoded by it (`df_dumps`). An exception becomes a TaskFailed whose Reason is
"Activity function '<name>' failed: <Type>: <message>" and whose Details is a JSON description of
the exception with the Python traceback, like the serialized cause the extension stores.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path

from azure.functions import meta

from . import payloads
from .engine import ActivityResult, ActivityWork
from .indexing import DURABLE_CLIENT, FunctionInfo
from .invocation import FunctionInvoker

logger = logging.getLogger(__name__)


def decode_activity_input(parameters_raw: str | None) -> object:
    """The value the activity's trigger parameter receives."""
    datum = payloads.task_parameters_to_trigger_datum(parameters_raw)
    return payloads.converter("activityTrigger").decode(datum, trigger_metadata=None)


def encode_activity_result(result: object) -> str | None:
    """`TaskCompleted.Result`: the converter's JSON text of the return value."""
    datum = payloads.converter("activityTrigger").encode(result, expected_type=None)
    return None if datum.value is None else str(datum.value)


_HOST_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def user_traceback(exc: BaseException) -> str:
    """The traceback without the host's own frames (the worker reports only user code)."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not str(Path(frame.filename).resolve()).startswith(_HOST_PACKAGE_DIR)
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(exc)
    return "".join(lines).strip()


def activity_failure(name: str, exc: BaseException) -> ActivityResult:
    message = f"{type(exc).__name__}: {exc}"
    cause = {
        "$type": "System.Exception, System.Private.CoreLib",
        "ClassName": "System.Exception",
        "Message": message,
        "Data": None,
        "InnerException": None,
        "StackTraceString": user_traceback(exc),
        "Source": "local_host",
    }
    return ActivityResult(
        failure_reason=f"Activity function '{name}' failed: {message}",
        failure_details=json.dumps(cause),
    )


def unknown_activity(name: str) -> ActivityResult:
    return ActivityResult(
        failure_reason=(
            f"The function '{name}' doesn't exist, is disabled, or is not an activity function."
        ),
        failure_details=None,
    )


async def run_activity(
    invoker: FunctionInvoker,
    info: FunctionInfo | None,
    work: ActivityWork,
    client_binding: Callable[[], str] | None = None,
) -> ActivityResult:
    """Execute one scheduled activity; never raises for a failure of the user code.

    `client_binding` gives the JSON a `durableClient` input binding receives: the extension
    binds one on an activity trigger as on any other (without it, such an activity fails)."""
    if info is None:
        return unknown_activity(work.name)
    try:
        arguments = {info.trigger["name"]: decode_activity_input(work.parameters_raw)}
        arguments.update(durable_clients(info, client_binding))
        result = await invoker.invoke(info, arguments, details=f"InstanceId={work.instance_id}")
        return ActivityResult(result_raw=encode_activity_result(result))
    except Exception as exc:
        logger.warning(
            "Activity '%s' (instance %s) failed: %s: %s",
            work.name,
            work.instance_id,
            type(exc).__name__,
            exc,
        )
        return activity_failure(work.name, exc)


def durable_clients(
    info: FunctionInfo, client_binding: Callable[[], str] | None
) -> dict[str, object]:
    """The activity's `durableClient` input bindings, decoded by the SDK's own converter."""
    clients: dict[str, object] = {}
    for binding in info.input_bindings():
        if binding.get("type") != DURABLE_CLIENT:
            continue
        if client_binding is None:
            raise RuntimeError("this host was started without a durable client binding")
        datum = meta.Datum(type="string", value=client_binding())
        converter = payloads.converter(DURABLE_CLIENT)
        clients[str(binding["name"])] = converter.decode(datum, trigger_metadata=None)
    return clients
