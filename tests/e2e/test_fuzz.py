"""Fuzzing the whole app against its own OpenAPI document (schemathesis), over HTTP.

The schema is loaded from the served `/api/openapi.json`. Every operation gets generated
requests that fit the document (positive) and, where it has inputs, requests that do not
(negative). For each response: no 5xx; the status, media type, headers and body are the ones
the document declares; every 4xx is `application/problem+json` with a non-empty `detail`; an
invalid request is refused.

Bounded and repeatable: `MAX_EXAMPLES` per scenario, derandomized, no example database.
Schemathesis is synchronous (`requests`) while the app is served by this event loop, so each
scenario runs in a worker thread.

Random ids almost always give 404, so the path-parameter operations are also fuzzed on real
resources (a conversation with a finished run, a batch); the Scheduler callback also with
requests signed with the webhook secret; and a batch schedule also with its times moved into
the future, so the handlers behind those checks are reached too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.webhooks import sign
from tests.e2e.conftest import FUNCTION_KEY, App
from tests.support.scheduler import WEBHOOK_SECRET

MAX_EXAMPLES = 25
MAX_WAIT_SECONDS = 1.0  # generated wait_seconds are clamped to this: keeps the run bounded
MAX_SCHEDULED_ITEMS = 3  # items kept per generated batch when it is made schedulable
REQUEST_TIMEOUT_SECONDS = 30
PROBLEM = "application/problem+json"
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE

# Given, not discovered: no schemathesis.toml changes what this test does. An invalid request
# may also be refused as too large (413: a body or content limit), besides schemathesis' list.
REJECTION_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428"]
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*REJECTION_STATUSES, "429"]}}}
)


def problem_details(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every error is application/problem+json whose `detail` says something."""
    if response.status_code < 400:
        return None
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    assert media_type == PROBLEM, f"a {response.status_code} answered as {media_type!r}"
    body = response.json()
    detail = body.get("detail") if isinstance(body, dict) else None
    assert isinstance(detail, str) and detail.strip(), f"no detail in {body!r}"
    assert body.get("status") == response.status_code, "the body's status is another one"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_details,  # a plain check function: not registered globally
]


class SignedWebhook(requests.auth.AuthBase):
    """Signs the request as the Scheduler does (Standard Webhooks), over the exact body sent."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        webhook_id, timestamp = f"fuzz-{uuid.uuid4().hex}", int(time.time())
        request.headers["webhook-id"] = webhook_id
        request.headers["webhook-timestamp"] = str(timestamp)
        request.headers["webhook-signature"] = sign(WEBHOOK_SECRET, webhook_id, timestamp, raw)
        return request


# --- shaping generated cases -----------------------------------------------------------------


def bounded_wait(case: Case) -> Case:
    """Clamp a valid wait_seconds (the handler caps it at 100 s; 25 of those would not do)."""
    body = case.body
    if isinstance(body, dict):
        wait = body.get("wait_seconds")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_WAIT_SECONDS:
            body["wait_seconds"] = MAX_WAIT_SECONDS
    return case


def schedulable(case: Case) -> Case:
    """A few items, each due tomorrow: random date-times are mostly past (400 for the batch)."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body["items"] = body["items"][:MAX_SCHEDULED_ITEMS]
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        for index, item in enumerate(body["items"]):
            if isinstance(item, dict):
                item["scheduled_time"] = (tomorrow + timedelta(seconds=index)).isoformat()
    return case


@dataclass(frozen=True)
class Scenario:
    operation_id: str
    mode: GenerationMode = POSITIVE
    on: str | None = None  # a KnownIds attribute: fuzz this operation on a real resource
    signed: bool = False
    prepare: Callable[[Case], Case] | None = None
    keep: Callable[[Case], bool] | None = None

    @property
    def name(self) -> str:
        parts = [self.operation_id, self.mode.value]
        if self.on:
            parts.append(f"on-{self.on}")
        if self.signed:
            parts.append("signed")
        if self.prepare is schedulable:
            parts.append("schedulable")
        return "-".join(parts)


SCENARIOS = [
    Scenario("create_conversation"),
    Scenario("create_conversation", NEGATIVE),
    Scenario("get_conversation"),
    Scenario("get_conversation", on="conversation"),
    Scenario("get_conversation", NEGATIVE),
    Scenario("post_message", prepare=bounded_wait),
    Scenario("post_message", on="chat", prepare=bounded_wait),
    Scenario("post_message", NEGATIVE, on="chat", prepare=bounded_wait),
    Scenario("get_run"),
    Scenario("get_run", on="run"),
    Scenario("get_run", NEGATIVE),
    Scenario("answer_approval"),
    Scenario("answer_approval", on="run"),
    Scenario("answer_approval", NEGATIVE),
    Scenario("cancel_run"),
    Scenario("cancel_run", on="run"),
    Scenario("cancel_run", NEGATIVE),
    Scenario("scheduler_callback"),  # unsigned: always refused with a 401 problem
    Scenario("scheduler_callback", signed=True),
    Scenario("scheduler_callback", NEGATIVE),
    Scenario("schedule_batch"),
    Scenario("schedule_batch", prepare=schedulable),
    Scenario("schedule_batch", NEGATIVE),
    Scenario("get_batch"),
    Scenario("get_batch", on="batch"),
    Scenario("get_batch", NEGATIVE),
    Scenario("health"),
    Scenario("openapi_document"),
]


@dataclass(frozen=True)
class KnownIds:
    conversation: dict[str, str]  # a conversation with one finished turn
    run: dict[str, str]  # that turn's run
    batch: dict[str, str]  # a scheduled batch
    chat: dict[str, str]  # a conversation the fuzzer may chat in


@pytest_asyncio.fixture(scope="module")
async def schema(app: App) -> schemathesis.BaseSchema:
    return await asyncio.to_thread(
        schemathesis.openapi.from_url,
        f"{app.api}/openapi.json",
        config=CONFIG,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


@pytest_asyncio.fixture(scope="module")
async def known(app: App) -> KnownIds:
    conversation = await app.new_conversation()
    status, run, _ = await app.send(conversation, "hello", wait=30)
    assert status == 200, run
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    status, batch, _ = await app.call(
        "POST", "/schedules", json={"items": [{"content": "later", "scheduled_time": later}]}
    )
    assert status == 202, batch
    return KnownIds(
        conversation={"id": conversation},
        run={"run_id": run["run_id"]},
        batch={"batch_id": batch["batch_id"]},
        chat={"id": await app.new_conversation()},
    )


def fuzz(
    schema: schemathesis.BaseSchema,
    scenario: Scenario,
    base_url: str,
    path_parameters: dict[str, str] | None,
) -> int:
    """Run the scenario's examples; raises (with a reproducing curl) on a failure.
    Returns how many requests were sent."""
    operation = schema.find_operation_by_id(scenario.operation_id)
    strategy = operation.as_strategy(generation_mode=scenario.mode, path_parameters=path_parameters)
    if scenario.keep is not None:
        strategy = strategy.filter(scenario.keep)
    if scenario.prepare is not None:
        strategy = strategy.map(scenario.prepare)
    checks = CHECKS + ([negative_data_rejection] if scenario.mode is NEGATIVE else [])
    # The real key wins over the random one the security schemes make schemathesis generate.
    extra: dict[str, Any] = {
        "timeout": REQUEST_TIMEOUT_SECONDS,
        "headers": {"x-functions-key": FUNCTION_KEY},
    }
    if scenario.signed:
        extra["auth"] = SignedWebhook()
    sent = 0

    with requests.Session() as session:

        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=strategy)
        def run(case: Case) -> None:
            nonlocal sent
            response = case.call(base_url=base_url, session=session, **extra)
            sent += 1
            case.validate_response(response, checks=checks)

        run()
    return sent


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_an_operation_keeps_to_its_document_under_fuzzing(
    app: App, schema: schemathesis.BaseSchema, known: KnownIds, scenario: Scenario
) -> None:
    path_parameters = getattr(known, scenario.on) if scenario.on else None
    sent = await asyncio.to_thread(fuzz, schema, scenario, app.host.base_url, path_parameters)
    assert sent > 0


def test_every_documented_operation_is_fuzzed(schema_document: dict[str, Any]) -> None:
    documented = {
        operation["operationId"]
        for item in schema_document["paths"].values()
        for operation in item.values()
    }
    assert documented == {scenario.operation_id for scenario in SCENARIOS}


@pytest_asyncio.fixture(scope="module")
async def schema_document(app: App) -> dict[str, Any]:
    status, document, _ = await app.call("GET", "/openapi.json")
    assert status == 200
    return document


# --- requests the fuzzing found to break a handler (all fixed): each is refused with a 400 -----

DEEP = b"[" * 20_000 + b"]" * 20_000  # RecursionError in json.loads (not a ValueError)
LONE_SURROGATE = b'"\\ud800 hello"'  # valid JSON, not encodable as UTF-8 when stored

HOSTILE = [
    pytest.param("/conversations", b'{"id": ""}', False, id="empty-id"),
    pytest.param("/conversations", b'{"id": 0}', False, id="zero-id"),
    pytest.param("/conversations", b'{"id": false}', False, id="false-id"),
    pytest.param("/conversations", DEEP, False, id="deep-create"),
    pytest.param("/conversations/{chat}/messages", DEEP, False, id="deep-message"),
    pytest.param("/scheduler/callback", DEEP, True, id="deep-callback"),
    pytest.param(
        "/conversations/{chat}/messages",
        b'{"content": %s}' % LONE_SURROGATE,
        False,
        id="surrogate-message",
    ),
    pytest.param(
        "/schedules",
        b'{"items": [{"content": %s, "scheduled_time": "2099-01-01T00:00:00Z"}]}' % LONE_SURROGATE,
        False,
        id="surrogate-schedule",
    ),
    pytest.param(
        "/scheduler/callback",
        b'{"conversationId": "{chat}", "content": %s}' % LONE_SURROGATE,
        True,
        id="surrogate-callback",
    ),
    pytest.param(
        "/schedules",
        b'{"items": [{"content": "x", "scheduled_time": "9999-12-31T23:30:00-01:00"}]}',
        False,
        id="year-9999",
    ),
    pytest.param(
        "/conversations/{chat}/messages", b'{"content": "x", "wait_seconds": NaN}', False, id="nan"
    ),
    pytest.param(
        "/conversations/{chat}/messages",
        '{"content": "grüß dich"}'.encode("utf-16"),
        False,
        id="utf-16-message",
    ),
]


@pytest.mark.parametrize(("path", "body", "signed"), HOSTILE)
async def test_a_hostile_request_is_refused_with_a_problem(
    app: App, path: str, body: bytes, signed: bool
) -> None:
    chat = await app.new_conversation()  # its own: no turn of another test in the way
    headers = {"Content-Type": "application/json"}
    body = body.replace(b"{chat}", chat.encode())
    if signed:
        webhook_id, timestamp = f"hostile-{uuid.uuid4().hex}", int(time.time())
        headers["webhook-id"] = webhook_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign(WEBHOOK_SECRET, webhook_id, timestamp, body)
    status, problem, response_headers = await app.call(
        "POST", path.replace("{chat}", chat), data=body, headers=headers
    )
    assert status == 400, problem
    assert response_headers["Content-Type"].startswith(PROBLEM) and problem["detail"]
