"""Timer functions for the local host's timer trigger tests: each records what it was given."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp()

CALLS: list[dict[str, object]] = []  # read by the tests (the host runs in-process)


@app.timer_trigger(arg_name="timer", schedule="0 0 3 * * *", use_monitor=True)
async def nightly(timer: func.TimerRequest) -> None:
    CALLS.append({"name": "nightly", "past_due": timer.past_due, "status": timer.schedule_status})


@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
@app.durable_client_input(client_name="client")
async def every_five_minutes(timer: func.TimerRequest, client: df.DurableOrchestrationClient):
    CALLS.append({"name": "every_five_minutes", "past_due": timer.past_due, "client": client})


@app.timer_trigger(arg_name="timer", schedule="%FAILING_TIMER_SCHEDULE%", use_monitor=False)
def failing(timer: func.TimerRequest) -> None:
    CALLS.append({"name": "failing", "past_due": timer.past_due})
    raise RuntimeError("a timer function that fails")
