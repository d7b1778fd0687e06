"""Fuzzing the whole app against its own OpenAPI document (schemathesis), over HTTP.

The schema is loaded from the served `/api/openapi.json`. Every operation gets generated
requests that fit the document (positive) and, where it has inputs, requests that do not
(negative). For each response: no 5xx; the status, media type, headers and body are the ones
the document declares; every 4xx is `application/problem+json` with a non-empty `detail`; an
invalid request is refused.

Two phases, as `schemathesis run` has them: hypothesis fuzzing (positive and negative), and
the coverage phase (boundary values of every constraint, missing required headers, wrong
content types, and every HTTP method the document does not list, which must be a 405 with
`Allow`). Failures are counted, not stopped at: each scenario prints its requests, 5xx and
schema mismatches, and must have 0 of both; the last test prints the totals of the run.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from schemathesis.core.failures import Failure, FailureGroup, ServerError
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from devkit.scheduler import WEBHOOK_SECRET
from samples.scheduler_mcp.signing import Signer
from tests.e2e.conftest import FUNCTION_KEY, App
from tests.e2e.test_security import settings_changed

MAX_EXAMPLES = 25
MAX_WAIT_SECONDS = 1.0  # generated wait_seconds are clamped to this: keeps the run bounded
MAX_SCHEDULED_ITEMS = 3  # items kept per generated batch when it is made schedulable
REQUEST_TIMEOUT_SECONDS = 30
PROBLEM = "application/problem+json"
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE

# Given, not discovered: no schemathesis.toml changes what this test does. Schemathesis' own
# list: a schema violation (a content over maxLength too) must be a 400-class refusal, not 413.
REJECTION_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428"]
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


# The coverage phase's own checks besides: what a valid request gets (a 2xx, or a refusal the
# document allows for valid data, like 404 or 409), undeclared methods, missing headers.
COVERAGE_CHECKS = [
    *CHECKS,
    positive_data_acceptance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
]


@dataclass
class Tally:
    """What a scenario (or the whole run) saw."""

    requests: int = 0
    server_errors: int = 0  # 5xx
    mismatches: int = 0  # any other way a response disagreed with the document
    examples: list[str] = field(default_factory=list)

    def record(self, case: Case, failures: list[Failure]) -> None:
        self.requests += 1
        if not failures:
            return
        if any(isinstance(failure, ServerError) for failure in failures):
            self.server_errors += 1
        else:
            self.mismatches += 1
        if len(self.examples) < 5:
            titles = "; ".join(sorted({failure.title for failure in failures}))
            self.examples.append(f"{titles}\n  {case.as_curl_command()}")

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.server_errors += other.server_errors
        self.mismatches += other.mismatches
        self.examples += other.examples

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.requests} requests, {self.server_errors} 5xx, "
            f"{self.mismatches} schema mismatches"
        )


RUN = Tally()  # the whole module's run, printed by the last test


def checked(case: Case, response: requests.Response, checks: list[Any]) -> list[Failure]:
    try:
        case.validate_response(response, checks=checks)
    except FailureGroup as group:
        return list(group.exceptions)
    except Failure as failure:
        return [failure]
    return []


class SignedWebhook(requests.auth.AuthBase):
    """Signs the request as the Scheduler does (Standard Webhooks), over the exact body sent."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        webhook_id, timestamp = f"fuzz-{uuid.uuid4().hex}", int(time.time())
        request.headers["webhook-id"] = webhook_id
        request.headers["webhook-timestamp"] = str(timestamp)
        request.headers["webhook-signature"] = Signer(WEBHOOK_SECRET).sign(
            webhook_id, timestamp, raw
        )
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
    body_on: str | None = None  # a KnownIds attribute: its "id" as the body's conversationId
    query_on: str | None = None  # a KnownIds attribute: real values for valid query parameters

    @property
    def name(self) -> str:
        parts = [self.operation_id, self.mode.value]
        if self.on:
            parts.append(f"on-{self.on}")
        if self.signed:
            parts.append("signed")
        if self.body_on:
            parts.append(f"into-{self.body_on}")
        if self.query_on:
            parts.append(f"with-{self.query_on}")
        if self.prepare is schedulable:
            parts.append("schedulable")
        return "-".join(parts)


SCENARIOS = [
    Scenario("create_conversation"),
    Scenario("create_conversation", NEGATIVE),
    Scenario("list_conversations", query_on="listing"),
    Scenario("list_conversations", NEGATIVE),
    Scenario("get_conversation"),
    Scenario("get_conversation", on="conversation"),
    Scenario("get_conversation", NEGATIVE),
    # Not on a known conversation: the other scenarios need it to stay.
    Scenario("delete_conversation"),
    Scenario("delete_conversation", NEGATIVE),
    Scenario("post_message", prepare=bounded_wait),
    Scenario("post_message", on="chat", prepare=bounded_wait),
    Scenario("post_message", NEGATIVE, on="chat", prepare=bounded_wait),
    Scenario("get_run"),
    Scenario("get_run", on="run"),
    Scenario("get_run", NEGATIVE),
    Scenario("run_events"),
    Scenario("run_events", on="run"),
    Scenario("run_events", NEGATIVE),
    Scenario("answer_approval"),
    Scenario("answer_approval", on="run"),
    Scenario("answer_approval", NEGATIVE),
    Scenario("answer_input"),
    Scenario("answer_input", on="run"),
    Scenario("answer_input", NEGATIVE),
    Scenario("cancel_run"),
    Scenario("cancel_run", on="run"),
    Scenario("cancel_run", NEGATIVE),
    Scenario("scheduler_callback"),  # unsigned: always refused with a 401 problem
    Scenario("scheduler_callback", signed=True),
    Scenario("scheduler_callback", NEGATIVE),
    Scenario("conversation_callback"),
    Scenario("conversation_callback", body_on="seed"),
    Scenario("conversation_callback", NEGATIVE),
    Scenario("schedule_batch"),
    Scenario("schedule_batch", prepare=schedulable),
    Scenario("schedule_batch", NEGATIVE),
    Scenario("get_batch"),
    Scenario("get_batch", on="batch"),
    Scenario("get_batch", NEGATIVE),
    Scenario("health"),
    Scenario("openapi_document"),
    Scenario("chat_page"),
    Scenario("chat_page_script"),
    Scenario("chat_page_style"),
]


@dataclass(frozen=True)
class KnownIds:
    conversation: dict[str, str]  # a conversation with one finished turn
    run: dict[str, str]  # that turn's run
    batch: dict[str, str]  # a scheduled batch
    chat: dict[str, str]  # a conversation the fuzzer may chat in
    seed: dict[str, str]  # a conversation the seeds' callback delivers into
    listing: dict[str, str]  # a continuation token the conversation listing gave this caller


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
    status, page, _ = await app.call("GET", "/conversations", params={"limit": 1})
    assert status == 200 and page["continuation"], page
    return KnownIds(
        conversation={"id": conversation},
        run={"run_id": run["run_id"]},
        batch={"batch_id": batch["batch_id"]},
        chat={"id": await app.new_conversation()},
        seed={"id": await app.new_conversation()},
        listing={"continuation": page["continuation"]},
    )


def into(ids: dict[str, str] | None) -> Callable[[Case], Case]:
    """A body that names a real conversation (random ids are almost always a 404)."""

    def prepare(case: Case) -> Case:
        if ids and isinstance(case.body, dict) and "conversationId" in case.body:
            case.body["conversationId"] = ids["id"]
        return case

    return prepare


def with_query(values: dict[str, str] | None) -> Callable[[Case], Case]:
    """Valid query parameters only the API can make (a continuation token) taken from it: a
    random token fits the schema, yet is not one the API gave (a 400). Negative ones stay."""

    def prepare(case: Case) -> Case:
        query = case.meta.components.get(ParameterLocation.QUERY) if case.meta else None
        if values and case.query and (query is None or query.mode is POSITIVE):
            for name in values.keys() & case.query.keys():
                case.query[name] = values[name]
        return case

    return prepare


def fuzz(
    schema: schemathesis.BaseSchema,
    scenario: Scenario,
    base_url: str,
    path_parameters: dict[str, str] | None,
    body_ids: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> Tally:
    """Run the scenario's examples and count what disagreed with the document."""
    operation = schema.find_operation_by_id(scenario.operation_id)
    strategy = operation.as_strategy(generation_mode=scenario.mode, path_parameters=path_parameters)
    if scenario.keep is not None:
        strategy = strategy.filter(scenario.keep)
    if scenario.prepare is not None:
        strategy = strategy.map(scenario.prepare)
    if body_ids is not None:
        strategy = strategy.map(into(body_ids))
    if query is not None:
        strategy = strategy.map(with_query(query))
    checks = CHECKS + ([negative_data_rejection] if scenario.mode is NEGATIVE else [])
    extra = request_options(scenario.signed)
    tally = Tally()

    with requests.Session() as session:

        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are counted
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=strategy)
        def run(case: Case) -> None:
            response = case.call(base_url=base_url, session=session, **extra)
            tally.record(case, checked(case, response, checks))

        run()
    return tally


def request_options(signed: bool) -> dict[str, Any]:
    # The real key wins over the random one the security schemes make schemathesis generate.
    extra: dict[str, Any] = {
        "timeout": REQUEST_TIMEOUT_SECONDS,
        "headers": {"x-functions-key": FUNCTION_KEY},
    }
    if signed:
        extra["auth"] = SignedWebhook()
    return extra


def coverage_cases(
    schema: schemathesis.BaseSchema, operation_id: str, path_parameters: dict[str, str] | None
) -> Iterator[Case]:
    """The coverage phase's cases for one operation (on a real resource when given)."""
    operation = schema.find_operation_by_id(operation_id)
    config = schema.config.generation_for(operation=operation, phase="coverage")
    for case in schema.iter_coverage_cases(
        operation, generation_modes=[POSITIVE, NEGATIVE], generation_config=config
    ):
        if path_parameters and case.path_parameters:
            case.path_parameters = {**case.path_parameters, **path_parameters}
        yield bounded_wait(case)


def negative_headers(case: Case) -> bool:
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    return header is not None and header.mode is NEGATIVE


def cover(
    schema: schemathesis.BaseSchema,
    scenario: Scenario,
    base_url: str,
    path_parameters: dict[str, str] | None,
    body_ids: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> Tally:
    tally = Tally()
    extra = request_options(scenario.signed)
    with requests.Session() as session:
        for case in coverage_cases(schema, scenario.operation_id, path_parameters):
            if scenario.signed and negative_headers(case):
                continue  # signing replaces the webhook headers: the case would be valid
            case = with_query(query)(into(body_ids)(case))
            response = case.call(base_url=base_url, session=session, **extra)
            tally.record(case, checked(case, response, COVERAGE_CHECKS))
    return tally


def report(name: str, tally: Tally) -> None:
    RUN.add(tally)
    print(tally.line(name))
    assert tally.requests > 0
    assert (tally.server_errors, tally.mismatches) == (0, 0), "\n".join(tally.examples)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_an_operation_keeps_to_its_document_under_fuzzing(
    app: App, schema: schemathesis.BaseSchema, known: KnownIds, scenario: Scenario
) -> None:
    path_parameters = getattr(known, scenario.on) if scenario.on else None
    body_ids = getattr(known, scenario.body_on) if scenario.body_on else None
    query = getattr(known, scenario.query_on) if scenario.query_on else None
    tally = await asyncio.to_thread(
        fuzz, schema, scenario, app.host.base_url, path_parameters, body_ids, query
    )
    report(f"fuzz {scenario.name}", tally)


COVERED = [
    Scenario(operation_id)
    for operation_id in (
        "create_conversation",
        "get_conversation",
        "delete_conversation",
        "post_message",
        "get_run",
        "answer_approval",
        "answer_input",
        "cancel_run",
        "scheduler_callback",
        "conversation_callback",
        "schedule_batch",
        "get_batch",
        "health",
        "openapi_document",
        "chat_page",
        "chat_page_script",
        "chat_page_style",
    )
] + [
    Scenario("get_conversation", on="conversation"),
    Scenario("post_message", on="chat"),
    Scenario("get_run", on="run"),
    Scenario("answer_approval", on="run"),
    Scenario("answer_input", on="run"),
    Scenario("cancel_run", on="run"),
    Scenario("get_batch", on="batch"),
    Scenario("scheduler_callback", signed=True),
    Scenario("conversation_callback", body_on="seed"),
    Scenario("list_conversations", query_on="listing"),
]


@pytest.mark.parametrize("scenario", COVERED, ids=lambda s: s.name.replace("-positive", ""))
async def test_an_operation_keeps_to_its_document_in_the_coverage_phase(
    app: App, schema: schemathesis.BaseSchema, known: KnownIds, scenario: Scenario
) -> None:
    path_parameters = getattr(known, scenario.on) if scenario.on else None
    body_ids = getattr(known, scenario.body_on) if scenario.body_on else None
    query = getattr(known, scenario.query_on) if scenario.query_on else None
    tally = await asyncio.to_thread(
        cover, schema, scenario, app.host.base_url, path_parameters, body_ids, query
    )
    report(f"coverage {scenario.name.replace('-positive', '')}", tally)


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
    pytest.param("/scheduler/conversation-callback", DEEP, False, id="deep-seed-callback"),
    pytest.param(
        "/scheduler/conversation-callback",
        b'{"conversationId": "{chat}", "status": "due", "content": %s}' % LONE_SURROGATE,
        False,
        id="surrogate-seed-callback",
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
        headers["webhook-signature"] = Signer(WEBHOOK_SECRET).sign(webhook_id, timestamp, body)
    status, problem, response_headers = await app.call(
        "POST", path.replace("{chat}", chat), data=body, headers=headers
    )
    assert status == 400, problem
    assert response_headers["Content-Type"].startswith(PROBLEM) and problem["detail"]


async def test_a_conversation_over_its_token_budget_keeps_to_the_document(
    app: App, schema: schemathesis.BaseSchema
) -> None:
    """Valid messages to a conversation that has used its budget: a documented refusal (409)."""
    conversation = await app.new_conversation()
    status, run, _ = await app.send(conversation, "spend some tokens", wait=30)
    assert status == 200, run
    spent = run["usage"]["total_tokens"]
    with settings_changed(max_tokens_per_conversation=spent):
        tally = await asyncio.to_thread(
            cover, schema, Scenario("post_message"), app.host.base_url, {"id": conversation}
        )
    report("coverage post_message-over-budget", tally)


def test_the_whole_run_shows_no_5xx_and_no_schema_mismatch() -> None:
    """Runs last (module order): the totals of every scenario above that ran."""
    print(RUN.line("schemathesis run"))
    assert (RUN.server_errors, RUN.mismatches) == (0, 0)
