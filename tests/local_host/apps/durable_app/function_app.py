"""Durable test app: one orchestrator per pattern the local host must run like Azure does."""

import asyncio
import threading
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# ---------------------------------------------------------------- HTTP starters (durable client)


@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_orchestration(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    payload = req.get_json() if req.get_body() else None
    instance_id = await client.start_new(
        req.route_params["name"], req.params.get("instance_id"), payload
    )
    return client.create_check_status_response(req, instance_id)


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def run_and_wait(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    payload = req.get_json() if req.get_body() else None
    instance_id = await client.start_new(req.route_params["name"], None, payload)
    return await client.wait_for_completion_or_create_check_status_response(
        req, instance_id, timeout_in_milliseconds=10_000, retry_interval_in_milliseconds=20
    )


# ---------------------------------------------------------------- activities


@app.activity_trigger(input_name="city")
def say_hello(city: str) -> str:
    return f"Hello {city}!"


@app.activity_trigger(input_name="value")
async def double(value: int) -> int:
    return value * 2


@app.activity_trigger(input_name="instance_id")
@app.durable_client_input(client_name="client")
async def status_of(instance_id: str, client: df.DurableOrchestrationClient) -> str | None:
    """An activity with a durable client, as on Azure: another instance's runtime status."""
    status = await client.get_status(instance_id)
    return status.runtime_status.value if status.runtime_status else None


FLAKY_ATTEMPTS: dict[str, int] = {}


@app.activity_trigger(input_name="request")
def flaky(request: dict) -> str:
    key = request["key"]
    FLAKY_ATTEMPTS[key] = FLAKY_ATTEMPTS.get(key, 0) + 1
    if FLAKY_ATTEMPTS[key] <= request["failures"]:
        raise ConnectionError(f"attempt {FLAKY_ATTEMPTS[key]} failed")
    return f"succeeded after {FLAKY_ATTEMPTS[key]} attempts"


@app.activity_trigger(input_name="message")
def always_fails(message: str) -> None:
    raise ValueError(message)


class Probe:
    """Counts concurrently running probe activities; they wait at a gate the test opens."""

    lock = threading.Lock()
    gate = threading.Semaphore(0)
    running = 0
    max_running = 0


def _enter_probe() -> None:
    with Probe.lock:
        Probe.running += 1
        Probe.max_running = max(Probe.max_running, Probe.running)


def _leave_probe() -> None:
    with Probe.lock:
        Probe.running -= 1


@app.activity_trigger(input_name="index")
def probe_sync(index: int) -> int:
    _enter_probe()
    try:
        Probe.gate.acquire(timeout=30)
    finally:
        _leave_probe()
    return index


@app.activity_trigger(input_name="index")
async def probe_async(index: int) -> int:
    _enter_probe()
    try:
        await asyncio.to_thread(Probe.gate.acquire, timeout=30)
    finally:
        _leave_probe()
    return index


# ---------------------------------------------------------------- orchestrators


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    cities = context.get_input() or ["Tokyo", "Seattle", "London"]
    results = []
    for city in cities:
        results.append((yield context.call_activity("say_hello", city)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out_fan_in(context: df.DurableOrchestrationContext):
    count = context.get_input()
    results = yield context.task_all([context.call_activity(double, i) for i in range(count)])
    return {"sum": sum(results), "count": len(results)}


@app.orchestration_trigger(context_name="context")
def retry_then_succeed(context: df.DurableOrchestrationContext):
    request = context.get_input()
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=1, max_number_of_attempts=request["max_attempts"]
    )
    try:
        result = yield context.call_activity_with_retry("flaky", options, request)
    except Exception as error:
        return {"failed": str(error).split("\n")[0].strip()}
    return {"result": result}


@app.orchestration_trigger(context_name="context")
def catch_failure(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("always_fails", "bad input")
    except Exception as error:
        context.set_custom_status("recovered")
        return {"caught": str(error).split("\n")[0].strip()}
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def uncaught_failure(context: df.DurableOrchestrationContext):
    yield context.call_activity("say_hello", "before the failure")
    raise RuntimeError("orchestrator gave up")


@app.orchestration_trigger(context_name="context")
def timer(context: df.DurableOrchestrationContext):
    fire_at = context.current_utc_datetime + timedelta(milliseconds=context.get_input())
    yield context.create_timer(fire_at)
    return "timer fired"


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    context.set_custom_status("waiting for approval")
    decision = yield context.wait_for_external_event("approval")
    context.set_custom_status("decided")
    return {"decision": decision}


@app.orchestration_trigger(context_name="context")
def race(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + timedelta(seconds=context.get_input())
    timeout = context.create_timer(deadline)
    go = context.wait_for_external_event("go")
    winner = yield context.task_any([go, timeout])
    if winner == go:
        timeout.cancel()
        return {"winner": "event", "value": go.result}
    return {"winner": "timer"}


@app.orchestration_trigger(context_name="context")
def first_of_activities(context: df.DurableOrchestrationContext):
    winner = yield context.task_any(
        [context.call_activity("say_hello", "first"), context.call_activity("double", 21)]
    )
    return winner.result


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator("sequence", ["A", "B"])
    second = yield context.call_sub_orchestrator(
        "sequence", ["C"], instance_id=f"{context.instance_id}-child"
    )
    return [first, second]


@app.orchestration_trigger(context_name="context")
def parent_of_failure(context: df.DurableOrchestrationContext):
    try:
        yield context.call_sub_orchestrator("uncaught_failure")
    except Exception as error:
        return {"caught": str(error).split("\n")[0].strip()}
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def fragile_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("say_hello", context.get_input()))


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    return (yield context.call_sub_orchestrator_with_retry("fragile_child", options, "retried"))


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    state = context.get_input()
    doubled = yield context.call_activity("double", state["n"])
    if state["n"] < state["limit"]:
        context.continue_as_new({"n": state["n"] + 1, "limit": state["limit"]})
        return None
    return {"n": state["n"], "doubled": doubled}


@app.orchestration_trigger(context_name="context")
def count_in_a_child(context: df.DurableOrchestrationContext):
    return (yield context.call_sub_orchestrator("counter", context.get_input(), "counting-child"))


@app.orchestration_trigger(context_name="context")
def progress(context: df.DurableOrchestrationContext):
    for step in ["one", "two", "three"]:
        context.set_custom_status({"step": step})
        yield context.call_activity("say_hello", step)
    context.set_custom_status({"step": "done"})
    return "finished"


@app.orchestration_trigger(context_name="context")
def calls_missing_activity(context: df.DurableOrchestrationContext):
    yield context.call_activity("no_such_activity", 1)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def wait_forever(context: df.DurableOrchestrationContext):
    yield context.wait_for_external_event("never")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def probe_fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    names = ["probe_sync", "probe_async"]
    results = yield context.task_all([context.call_activity(names[i % 2], i) for i in range(count)])
    return sorted(results)


@app.orchestration_trigger(context_name="context")
def ask_status(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("status_of", context.get_input()))
