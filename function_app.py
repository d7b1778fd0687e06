"""Azure Functions entry point: wiring only. The logic lives in `agent/` and `storage/`.

Handlers import their modules on first call, so the worker's cold start pays only for
azure.functions and azure.durable_functions (the model, MCP and Blob SDKs load on first use).
"""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from agent import http_streaming
from agent.runtime import check_settings
from agent.ui import page as chat_page

# httpx2 logs request URLs at INFO (a function key travels as `?code=`), the MCP SDK logs message
# bodies at DEBUG, and azure-core logs request headers: none of that belongs in our logs.
for _noisy in ("httpx2", "mcp", "azure.core.pipeline.policies.http_logging_policy"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

# Parsed once, at startup. A missing or malformed setting is logged here, naming it, and never
# stops indexing: every function is still registered and answers 503 naming the setting.
check_settings()

# AGENT_HTTP_STREAMING: the worker's streaming mode must be on while the app is indexed.
http_streaming.enable_worker()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


# --- chat HTTP API -----------------------------------------------------------------------------


@app.route(route="conversations", methods=["POST"])
async def create_conversation(req: func.HttpRequest) -> func.HttpResponse:
    from agent.http import conversations

    return await conversations.create_conversation(req)


@app.route(route="conversations", methods=["GET"])
async def list_conversations(req: func.HttpRequest) -> func.HttpResponse:
    from agent.http import conversations

    return await conversations.list_conversations(req)


@app.route(route="conversations/{id}", methods=["GET"])
async def get_conversation(req: func.HttpRequest) -> func.HttpResponse:
    from agent.http import conversations

    return await conversations.get_conversation(req)


@app.route(route="conversations/{id}", methods=["DELETE"])
@app.durable_client_input(client_name="client")
async def delete_conversation(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import conversations

    return await conversations.delete_conversation(req, client)


@app.route(route="conversations/{id}/messages", methods=["POST"])
@app.durable_client_input(client_name="client")
async def post_message(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import conversations

    return await conversations.post_message(req, client)


@app.route(route="runs/{run_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import runs

    return await runs.get_run(req, client)


@app.route(route="runs/{run_id}/cancel", methods=["POST"])
@app.durable_client_input(client_name="client")
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import runs

    return await runs.cancel_run(req, client)


@app.route(route="runs/{run_id}/approvals", methods=["POST"])
@app.durable_client_input(client_name="client")
async def answer_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import runs

    return await runs.answer_approval(req, client)


@app.route(route="runs/{run_id}/input", methods=["POST"])
@app.durable_client_input(client_name="client")
async def answer_input(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import runs

    return await runs.answer_input(req, client)


# Server-Sent Events (streamed when AGENT_HTTP_STREAMING is on; else buffered, and `?wait=` JSON).
@app.route(route="runs/{run_id}/events", methods=["GET"])
@app.durable_client_input(client_name="client")
async def run_events(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import run_events

    return await run_events.run_events(req, client)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    from agent.http import service

    return await service.health(req)


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    from agent.http import service

    return await service.openapi_document(req)


# The chat page, GET /api/ui (+ its script and style sheet): anonymous static files.
app.register_functions(chat_page.blueprint)


# Lowest precedence, every method: what no route above takes (405 with Allow, or 404 problem).
@app.route(route="{*path}", auth_level=func.AuthLevel.ANONYMOUS)
async def unrouted(req: func.HttpRequest) -> func.HttpResponse:
    from agent.http import service

    return await service.unrouted(req)


# --- scheduled conversations -------------------------------------------------------------------


# Anonymous at the Functions level: every request must carry a valid Standard Webhooks signature.
@app.route(route="scheduler/callback", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.durable_client_input(client_name="client")
async def scheduler_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import callbacks

    return await callbacks.scheduler_callback(req, client)


# Function key: the seeds' unsigned form, for Scheduler senders that cannot sign.
@app.route(route="scheduler/conversation-callback", methods=["POST"])
@app.durable_client_input(client_name="client")
async def conversation_callback(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import callbacks

    return await callbacks.conversation_callback(req, client)


@app.route(route="schedules", methods=["POST"])
@app.durable_client_input(client_name="client")
async def schedule_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import schedules

    return await schedules.schedule_batch(req, client)


@app.route(route="batches/{batch_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    from agent.http import schedules

    return await schedules.get_batch(req, client)


@app.orchestration_trigger(context_name="context")
def scheduled_batch(context: df.DurableOrchestrationContext):
    from agent import orchestrators

    return orchestrators.scheduled_batch(context)


@app.orchestration_trigger(context_name="context")
def batch_lane(context: df.DurableOrchestrationContext):
    from agent import orchestrators

    return orchestrators.batch_lane(context)


@app.activity_trigger(input_name="data")
async def claim_batch_item(data: dict) -> dict:
    from agent import activities, runtime

    return await activities.claim_batch_item(data, await runtime.runtime())


@app.activity_trigger(input_name="data")
async def record_batch_outcome(data: dict) -> None:
    from agent import activities, runtime

    await activities.record_batch_outcome(data, await runtime.runtime())


# The client: to learn whether the run holding the item's conversation is over (cancelled or
# failed runs keep their lock), see agent.activities.take_batch_item.
@app.activity_trigger(input_name="data")
@app.durable_client_input(client_name="client")
async def take_batch_item(data: dict, client: df.DurableOrchestrationClient) -> dict:
    from agent import activities, runtime

    return await activities.take_batch_item(data, await runtime.runtime(), client)


# --- the chat turn -----------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def chat_turn(context: df.DurableOrchestrationContext):
    from agent import orchestrators

    return orchestrators.chat_turn(context)


@app.activity_trigger(input_name="data")
async def model_step(data: dict) -> dict:
    from agent import activities, runtime

    return await activities.model_step(data, await runtime.runtime())


@app.activity_trigger(input_name="data")
async def compact(data: dict) -> dict:
    from agent import compaction, runtime

    return await compaction.compact(data, await runtime.runtime())


@app.activity_trigger(input_name="data")
async def tool_call(data: dict) -> dict:
    from agent import activities, runtime

    return await activities.tool_call(data, await runtime.runtime())


@app.activity_trigger(input_name="data")
async def poll_tool_task(data: dict) -> dict:
    from agent import runtime, tool_tasks

    return await tool_tasks.poll_tool_task(data, await runtime.runtime())


@app.activity_trigger(input_name="data")
async def answer_tool_task(data: dict) -> dict:
    from agent import runtime, tool_tasks

    return await tool_tasks.answer_tool_task(data, await runtime.runtime())


@app.activity_trigger(input_name="data")
async def finish_turn(data: dict) -> None:
    from agent import activities, runtime

    await activities.finish_turn(data, await runtime.runtime())


# --- retention ---------------------------------------------------------------------------------


# Daily at 03:30 UTC; does nothing unless CONVERSATION_RETENTION_DAYS is set (agent.retention).
# use_monitor: a run missed while the app was down runs once when it is up again (past due).
@app.timer_trigger(
    arg_name="timer", schedule="0 30 3 * * *", run_on_startup=False, use_monitor=True
)
@app.durable_client_input(client_name="client")
async def conversation_retention(
    timer: func.TimerRequest, client: df.DurableOrchestrationClient
) -> None:
    from agent import retention

    await retention.run_retention(client, past_due=timer.past_due)


# Last: with streaming on, every HTTP function takes and gives the worker's starlette objects.
http_streaming.adapt(app)
