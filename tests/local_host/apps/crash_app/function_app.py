"""Crash-recovery test app: activities append to a call log; `block` waits for a release file.

The test sets CRASH_APP_WORK_DIR (the log and the release marker live there), kills the host
while `block` is waiting, restarts it and checks which activities ran again.
CRASH_APP_SLOW_ACTIVITY=stubborn makes f3 an async activity that swallows its cancellation.
"""

import asyncio
import os
import time
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

WORK_DIR = Path(os.environ["CRASH_APP_WORK_DIR"])
CALL_LOG = WORK_DIR / "calls.log"
RELEASE = WORK_DIR / "release"
BLOCK_LIMIT_SECONDS = 60
SLOW_ACTIVITY = os.environ.get("CRASH_APP_SLOW_ACTIVITY", "block")


def _log_call(line: str) -> None:
    with CALL_LOG.open("a", encoding="utf-8") as log:
        log.write(line + "\n")


@app.activity_trigger(input_name="name")
def record(name: str) -> str:
    _log_call(name)
    return name


@app.activity_trigger(input_name="name")
def block(name: str) -> str:
    _log_call(f"{name}:start")
    deadline = time.monotonic() + BLOCK_LIMIT_SECONDS
    while not RELEASE.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the release marker never appeared")
        time.sleep(0.01)
    _log_call(f"{name}:end")
    return name


@app.activity_trigger(input_name="name")
async def stubborn(name: str) -> str:
    """Like `block`, but async and deaf to cancellation (as some client libraries are)."""
    _log_call(f"{name}:start")
    deadline = time.monotonic() + BLOCK_LIMIT_SECONDS
    while not RELEASE.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the release marker never appeared")
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue
    _log_call(f"{name}:end")
    return name


@app.orchestration_trigger(context_name="context")
def crashy(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("record", "a")
    fanned = yield context.task_all(
        [
            context.call_activity("record", "f1"),
            context.call_activity("record", "f2"),
            context.call_activity(SLOW_ACTIVITY, "f3"),
        ]
    )
    last = yield context.call_activity("record", "c")
    return [first, *fanned, last]


@app.route(route="start/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new("crashy", req.route_params["instance_id"])
    return client.create_check_status_response(req, instance_id)
