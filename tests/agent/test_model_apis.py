"""Azure OpenAI's two URL shapes (`AZURE_OPENAI_API` v1 / legacy) and two model APIs
(`MODEL_API` chat / responses), through the real openai client against the local model server,
which checks every body against the openai package's own request types: replies, tool calls,
usage, content filters, 429s and other failures read the same on all four; the same scripted
conversation stores the same transcript."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent import activities
from agent.contracts import ModelStepInput, ToolCallInput
from agent.errors import ContentFiltered, PermanentModelError, TransientModelError
from agent.model import ModelClient, build_model_client
from agent.model_responses import reply_from_response
from agent.model_stream import stream
from devkit.azurite import AzuriteInstance
from devkit.fake_openai import (
    TEST_DEPLOYMENT,
    TEST_RESPONSES_API_VERSION,
    FakeAsyncCredential,
    FakeOpenAI,
    fake_openai,
)
from devkit.mcp_servers import AsgiServer
from offline_model import Completion, Paced, ScriptedBrain, ToolCallSpec
from storage.conversations import ConversationRef, StoredMessage
from storage.events import RunEvent, RunEventLog
from tests.agent.conftest import helper_only, new_run, runtime_on

USER = [{"role": "user", "content": "hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "demo__add",
            "description": "Add two numbers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}}},
        },
    }
]
ANSWER = "An answer long enough to arrive in several pieces when streamed."
COMBOS = [("v1", "chat"), ("legacy", "chat"), ("v1", "responses"), ("legacy", "responses")]
COMBO_IDS = [f"{api}-{model_api}" for api, model_api in COMBOS]
ALL = pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
# (path, query) of each combination's requests
URLS = {
    ("v1", "chat"): ("/openai/v1/chat/completions", {}),
    ("legacy", "chat"): (
        f"/openai/deployments/{TEST_DEPLOYMENT}/chat/completions",
        {"api-version": "2024-10-21"},
    ),
    ("v1", "responses"): ("/openai/v1/responses", {}),
    ("legacy", "responses"): (
        "/openai/responses",
        {"api-version": TEST_RESPONSES_API_VERSION},
    ),
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai() as server:
        yield server


@pytest.fixture(params=COMBOS, ids=COMBO_IDS)
async def client(request: pytest.FixtureRequest, fake: FakeOpenAI) -> AsyncIterator[ModelClient]:
    api, model_api = request.param
    async with build_model_client(fake.azure_config(azure_api=api, model_api=model_api)) as c:
        yield c


def combo_of(client: ModelClient) -> tuple[str, str]:
    return client.config.azure_api, client.config.model_api


# --- where requests go ---------------------------------------------------------------------


async def test_each_api_calls_its_own_url_with_the_key_in_the_api_key_header(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.answer("hi")
    await client.complete(USER, [])
    sent = fake.chat_requests()[-1]
    assert (sent.path, dict(sent.query)) == URLS[combo_of(client)]
    assert sent.api_key == fake.api_key


@pytest.mark.parametrize("model_api", ["chat", "responses"])
async def test_v1_without_a_key_sends_an_entra_token_from_the_credential_as_the_bearer(
    model_api: str,
):
    credential = FakeAsyncCredential(token="entra-token-v1")
    async with fake_openai(api_key=None, bearer_tokens=["entra-token-v1"]) as fake:
        fake.brain.answer("hi")
        config = fake.azure_config(azure_api="v1", model_api=model_api, api_key=None)
        async with build_model_client(config, credential) as client:
            await client.complete(USER, [])
    sent = fake.chat_requests()[-1]
    assert sent.bearer_token == "entra-token-v1" and sent.api_key is None
    assert credential.scopes_requested == [("https://cognitiveservices.azure.com/.default",)]
    assert not credential.closed  # the caller's credential stays the caller's


async def test_responses_requests_keep_nothing_on_the_service_and_send_non_strict_tools(
    fake: FakeOpenAI,
):
    fake.brain.answer("hi")
    async with build_model_client(fake.azure_config(azure_api="v1", model_api="responses")) as c:
        await c.complete(USER, TOOLS, max_output_tokens=100)
    body = fake.chat_requests()[-1].body
    assert body["store"] is False
    assert body["input"] == [{"role": "user", "content": "hello"}]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "demo__add",
            "description": "Add two numbers.",
            "parameters": TOOLS[0]["function"]["parameters"],
            "strict": False,
        }
    ]
    assert body["max_output_tokens"] == 100 and "include" not in body


async def test_a_body_the_official_request_types_refuse_is_refused_by_the_fake(fake: FakeOpenAI):
    """The fake is as strict as the service: an unknown key in a message is a 400."""
    async with build_model_client(fake.azure_config(azure_api="v1")) as client:
        with pytest.raises(PermanentModelError, match="unknown key 'surprise'"):
            await client.complete([{"role": "user", "content": "hi", "surprise": 1}], [])
    assert fake.brain.requests == []  # refused before the brain saw it


# --- replies ---------------------------------------------------------------------------------


@ALL
async def test_tool_calls_keep_their_ids_and_usage_maps_to_prompt_and_completion_tokens(
    fake: FakeOpenAI, client: ModelClient, combo: Any
):
    fake.brain.call_tools(
        ToolCallSpec("demo__add", '{"a": 1}', id="call_first"),
        ToolCallSpec("demo__add", '{"a": 2}', id="call_second"),
        prompt_tokens=11,
        completion_tokens=7,
    )
    reply = await client.complete(USER, TOOLS)
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_first", "demo__add", '{"a": 1}'),
        ("call_second", "demo__add", '{"a": 2}'),
    ]
    assert reply.finish_reason == "tool_calls" and reply.content is None
    assert reply.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


async def test_a_reply_cut_at_the_output_cap_finishes_with_length(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.then(Completion(content="cut", finish_reason="length"))
    reply = await client.complete(USER, [], max_output_tokens=20)
    assert reply.finish_reason == "length" and reply.content == "cut"


async def test_the_answer_streams_as_text_deltas_into_the_same_reply(
    fake: FakeOpenAI, client: ModelClient
):
    fake.brain.answer(ANSWER, prompt_tokens=5, completion_tokens=9)
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    reply = await stream(client, USER, TOOLS, on_text=on_text)
    assert "".join(pieces) == ANSWER and len(pieces) > 5
    assert reply.content == ANSWER and reply.finish_reason == "stop"
    assert reply.usage == {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
    assert fake.chat_requests()[-1].body["stream"] is True


async def test_streamed_tool_calls_arrive_whole(fake: FakeOpenAI, client: ModelClient):
    fake.brain.call_tools(ToolCallSpec("demo__add", '{"a": 12345678901234}', id="call_s"))
    reply = await stream(client, USER, TOOLS)
    assert [(c.id, c.arguments) for c in reply.tool_calls] == [("call_s", '{"a": 12345678901234}')]
    assert reply.finish_reason == "tool_calls"


# --- failures: the same classification on every API -----------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_a_completion_the_filter_cut_is_content_filtered(
    fake: FakeOpenAI, client: ModelClient, streamed: bool
):
    fake.brain.filter_completion(("violence",))
    with pytest.raises(ContentFiltered):
        await (stream(client, USER, []) if streamed else client.complete(USER, []))


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_a_prompt_the_filter_refused_is_content_filtered_with_its_categories(
    fake: FakeOpenAI, client: ModelClient, streamed: bool
):
    fake.brain.filter_prompt(("hate", "violence"))
    with pytest.raises(ContentFiltered, match=r"categories: hate, violence"):
        await (stream(client, USER, []) if streamed else client.complete(USER, []))


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_a_429_is_transient_and_carries_its_retry_after(
    fake: FakeOpenAI, client: ModelClient, streamed: bool
):
    fake.brain.rate_limit(retry_after_seconds=4, retry_after_ms=3500)
    with pytest.raises(TransientModelError) as raised:
        await (stream(client, USER, []) if streamed else client.complete(USER, []))
    assert raised.value.retry_after == 3.5  # retry-after-ms wins, as Azure means it


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientModelError), (503, TransientModelError), (400, PermanentModelError),
     (401, PermanentModelError), (404, PermanentModelError)],
)  # fmt: skip
async def test_http_failures_are_classified_alike(
    fake: FakeOpenAI, client: ModelClient, status: int, error: type[Exception]
):
    fake.brain.fail(status)
    with pytest.raises(error):
        await client.complete(USER, [])


async def test_a_stream_cut_off_midway_is_transient(fake: FakeOpenAI, client: ModelClient):
    fake.brain.then(Paced(Completion(content=ANSWER), drop_after_chunks=6))
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    with pytest.raises(TransientModelError):
        await stream(client, USER, [], on_text=on_text)
    assert pieces  # it broke off after some text had arrived


# --- reasoning items (Responses API) ---------------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "legacy"])
async def test_reasoning_is_asked_for_once_the_model_reasons_and_goes_back_on_the_next_step(
    api: str,
):
    async with fake_openai() as fake:
        fake.brain.answer("first", reasoning="warming up").call_tools(
            ToolCallSpec("demo__add", "{}", id="call_r"), reasoning="I should add"
        ).answer("done")
        config = fake.azure_config(azure_api=api, model_api="responses")
        async with build_model_client(config) as client:
            first = await client.complete(USER, TOOLS)
            second = await client.complete(USER, TOOLS)
            following = [
                *USER,
                second.assistant_message(),
                {"role": "tool", "tool_call_id": "call_r", "content": "3"},
            ]
            await stream(client, following, TOOLS)
    bodies = [r.body for r in fake.chat_requests()]
    assert "include" not in bodies[0]  # not before the model showed it reasons
    assert first.reasoning is None  # nothing that could be sent back (no encrypted content)
    assert bodies[1]["include"] == ["reasoning.encrypted_content"]
    assert second.reasoning == [
        {
            "type": "reasoning",
            "id": second.reasoning[0]["id"],
            "summary": [{"type": "summary_text", "text": "I should add"}],
            "encrypted_content": "enc:I should add",
        }
    ]
    assert [item.get("type") for item in bodies[2]["input"]] == [
        None,  # the user's message
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert fake.brain.requests[2]["reasoning_items"] == second.reasoning


async def test_a_reasoning_deployment_asks_for_reasoning_from_a_cold_starts_first_step():
    """MODEL_REASONING=on: a fresh worker keeps the first step's reasoning too."""
    async with fake_openai() as fake:
        fake.brain.call_tools(ToolCallSpec("demo__add", "{}", id="call_r"), reasoning="add")
        config = fake.azure_config(azure_api="v1", model_api="responses", reasoning="on")
        async with build_model_client(config) as client:
            first = await client.complete(USER, TOOLS)
    assert fake.chat_requests()[0].body["include"] == ["reasoning.encrypted_content"]
    assert first.reasoning is not None
    assert first.reasoning[0]["encrypted_content"] == "enc:add"


async def test_with_reasoning_off_no_request_asks_for_it_even_after_the_model_reasoned():
    async with fake_openai() as fake:
        fake.brain.call_tools(ToolCallSpec("demo__add", "{}", id="call_r"), reasoning="add")
        fake.brain.answer("done", reasoning="done")
        config = fake.azure_config(azure_api="v1", model_api="responses", reasoning="off")
        async with build_model_client(config) as client:
            first = await client.complete(USER, TOOLS)
            await client.complete(USER, TOOLS)
    assert [("include" in r.body) for r in fake.chat_requests()] == [False, False]
    assert first.reasoning is None


async def test_the_chat_api_leaves_reasoning_items_out_of_its_requests(fake: FakeOpenAI):
    """Reasoning kept from a Responses step is not sent when the app now speaks chat."""
    message = {"role": "assistant", "content": "earlier", "reasoning_items": [{"id": "rs_1"}]}
    fake.brain.answer("ok")
    async with build_model_client(fake.azure_config(azure_api="v1")) as client:
        await client.complete([*USER, message, {"role": "user", "content": "again"}], [])
    assert "reasoning_items" not in fake.chat_requests()[-1].body["messages"][1]


# --- the same conversation on every API gives the same transcript ---------------------------

VOLATILE = {"id", "run_id", "conversation_id", "created_at", "unknown"}


def comparable(messages: list[StoredMessage]) -> list[dict[str, Any]]:
    """The stored records without what differs from run to run (ids, times)."""
    return [{k: v for k, v in m.to_dict().items() if k not in VOLATILE} for m in messages]


FINAL_ANSWER = "2 + 3 = 5, as the calculator says; streamed to followers in pieces."


async def scripted_conversation(
    azurite: AzuriteInstance, helper: AsgiServer, api: str, model_api: str
) -> tuple[list[dict[str, Any]], list[Any], list[str]]:
    """A tool call, a second step and an answer, through the activities on real parts."""
    brain = ScriptedBrain()
    brain.call_tools(
        ToolCallSpec("helper__calculate", '{"operation": "add", "a": 2, "b": 3}', id="call_add"),
        prompt_tokens=40,
        completion_tokens=8,
    ).answer(FINAL_ANSWER, prompt_tokens=60, completion_tokens=6)
    api_settings = {"AZURE_OPENAI_API": api, "MODEL_API": model_api}
    if api == "legacy" and model_api == "responses":
        api_settings["AZURE_OPENAI_API_VERSION"] = TEST_RESPONSES_API_VERSION
    async with (
        fake_openai(brain) as model,
        runtime_on(
            azurite, model, f"apis-{uuid.uuid4().hex[:8]}", helper_only(helper), **api_settings
        ) as rt,
    ):
        run = await new_run(rt, "user:apis", "what is 2 + 3?")
        first = await activities.model_step(ModelStepInput(run, 1).to_dict(), rt)
        for call_id in first["tool_call_ids"]:
            await activities.tool_call(ToolCallInput(run, 1, call_id).to_dict(), rt)
        second = await activities.model_step(ModelStepInput(run, 2).to_dict(), rt)
        assert second["outcome"] == "final"
        ref = ConversationRef(run.owner, run.conversation_id)
        stored = await rt.store.read_messages(ref)
        events = await RunEventLog(rt.container).read(ref, run.run_id)
        paths = [r.path for r in model.chat_requests()]
    return comparable(stored), comparable_events(events), paths


def comparable_events(events: list[RunEvent]) -> list[Any]:
    """The run's events as a follower sees them: the streamed text whole (how it was cut
    into deltas may differ), every other event without ids and times."""
    seen: list[Any] = []
    for event in events:
        if event.type == "text_delta":
            if not seen or seen[-1][0] != "text":
                seen.append(["text", ""])
            seen[-1][1] += event.data["delta"]
        else:
            seen.append((event.type, {k: v for k, v in event.data.items() if k not in VOLATILE}))
    return seen


async def test_the_same_conversation_stores_the_same_transcript_on_every_api(
    azurite: AzuriteInstance, helper: AsgiServer
):
    transcripts, logs = {}, {}
    for api, model_api in COMBOS:
        transcript, events, paths = await scripted_conversation(azurite, helper, api, model_api)
        assert set(paths) == {URLS[(api, model_api)][0]}
        transcripts[(api, model_api)], logs[(api, model_api)] = transcript, events
    reference = transcripts[("legacy", "chat")]
    assert [m["role"] for m in reference] == ["user", "assistant", "tool", "assistant"]
    assert reference[1]["tool_calls"][0]["function"]["name"] == "helper__calculate"
    assert "5" in (reference[2]["content"] or "") and reference[3]["content"] == FINAL_ANSWER
    assert reference[3]["usage"] == {"prompt_tokens": 60, "completion_tokens": 6,
                                     "total_tokens": 66}  # fmt: skip
    assert ["text", FINAL_ANSWER] in logs[("legacy", "chat")]  # the answer streamed
    for combo, transcript in transcripts.items():
        assert transcript == reference, combo
        assert logs[combo] == logs[("legacy", "chat")], combo


# --- reading responses the fake does not script ----------------------------------------------


def response_of(**fields: Any) -> Any:
    """An openai `Response` as the service would send it, with `fields` changed."""
    from openai.types.responses import Response

    from offline_model.responses_wire import response_body

    body = response_body(Completion(content="hi"), {}, {"messages": []}, model="m", created=0)
    return Response.model_validate({**body, **fields})


@pytest.mark.parametrize(
    ("code", "error"),
    [("server_error", TransientModelError), ("rate_limit_exceeded", TransientModelError),
     ("invalid_prompt", PermanentModelError), ("content_filter", ContentFiltered)],
)  # fmt: skip
def test_a_failed_response_is_classified_by_its_code(code: str, error: type[Exception]):
    from openai.types.responses import ResponseError

    # Constructed, not validated: the client keeps codes its types do not list (Azure's own).
    error_object = ResponseError.model_construct(code=code, message="secret prompt text")
    failed = response_of(status="failed").model_copy(update={"error": error_object})
    with pytest.raises(error) as raised:
        reply_from_response(failed, service="Azure OpenAI")
    assert "secret prompt text" not in str(raised.value)  # the service's text is not copied


def test_a_response_without_output_or_with_an_unknown_item_is_permanent():
    with pytest.raises(PermanentModelError, match="no output"):
        reply_from_response(object(), service="Azure OpenAI")
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed",
              "action": {"type": "search", "query": "q"}}  # fmt: skip
    with pytest.raises(PermanentModelError, match="unsupported item: web_search_call"):
        reply_from_response(response_of(output=[search]), service="Azure OpenAI")
