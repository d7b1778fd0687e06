"""The Durable Functions HTTP management API, as the extension's HttpApiHandler serves it.

The SDK's DurableOrchestrationClient calls it at the binding's `rpcBaseUrl`; the management
URLs in check-status responses point at its public twin under `/runtime/webhooks/durabletask/`.
Status codes and bodies follow the extension, because the SDK interprets them:

    POST   orchestrators/{name}[/{instanceId}]       202 + management payload; 409 if running
    GET    instances/{id}?showHistory&showHistoryOutput&showInput
                                                     200 done / 202 running / 404 unknown
    GET    instances/?runtimeStatus&createdTimeFrom&createdTimeTo&instanceIdPrefix&top
    DELETE instances/{id}                            200 {instancesDeleted} / 404 / 412
    DELETE instances/?createdTimeFrom&...            200 / 404 when nothing was purged
    POST   instances/{id}/raiseEvent/{event}         202 / 404 / 410 / 400 (not JSON)
    POST   instances/{id}/terminate?reason=          202 / 404 / 410

Suspend, resume, rewind, restart and entities are answered 501 (not supported locally).
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType

from . import payloads
from .engine import InstanceQuery, InstanceRecord
from .errors import DurableApiError, InstanceAlreadyExists, InvalidInstanceId, UnknownFunction
from .history import (
    TERMINAL_STATUSES,
    Event,
    RuntimeStatus,
    format_status_time,
    parse_jtoken,
    parse_timestamp,
)
from .runtime import DurableRuntime

logger = logging.getLogger(__name__)

RPC_PATH = "/durabletask/"  # what the worker's client calls (rpcBaseUrl); behind the system key
WEBHOOK_PATH = "/runtime/webhooks/durabletask/"  # its public twin, behind the system key
RPC_USER = "durabletask"  # the user name of rpcBaseUrl; its password is the system key
INSTANCE_ID_PLACEHOLDER = "INSTANCEID"
DEFAULT_PAGE_SIZE = 100
RUNNING_RETRY_AFTER_SECONDS = 5

_STATUS_EVENT_NAMES = {int(kind): kind for kind in HistoryEventType}
_HIDDEN_HISTORY_EVENTS = {
    HistoryEventType.ORCHESTRATOR_STARTED,
    HistoryEventType.ORCHESTRATOR_COMPLETED,
    HistoryEventType.TASK_SCHEDULED,
    HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
}
_PASCAL_EVENT_NAMES = {
    HistoryEventType.EXECUTION_STARTED: "ExecutionStarted",
    HistoryEventType.EXECUTION_COMPLETED: "ExecutionCompleted",
    HistoryEventType.EXECUTION_FAILED: "ExecutionFailed",
    HistoryEventType.EXECUTION_TERMINATED: "ExecutionTerminated",
    HistoryEventType.TASK_COMPLETED: "TaskCompleted",
    HistoryEventType.TASK_FAILED: "TaskFailed",
    HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "SubOrchestrationInstanceCompleted",
    HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "SubOrchestrationInstanceFailed",
    HistoryEventType.TIMER_CREATED: "TimerCreated",
    HistoryEventType.TIMER_FIRED: "TimerFired",
    HistoryEventType.EVENT_RAISED: "EventRaised",
    HistoryEventType.CONTINUE_AS_NEW: "ContinueAsNew",
}
_STATUS_NAMES = {
    0: "Running",
    1: "Completed",
    2: "ContinuedAsNew",
    3: "Failed",
    4: "Canceled",
    5: "Terminated",
}


class DurableUrls:
    """The URLs of the management API: with the system key for the durable client binding (the
    app's own client, as on Azure), without it for every URL the host hands to a caller."""

    def __init__(self, *, base_url: str, hub_name: str, system_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.hub_name = hub_name
        self._system_key = system_key
        self.public_query = f"taskHub={quote(hub_name)}&connection=Storage"
        self.query = f"{self.public_query}&code={quote(system_key, safe='')}"

    @property
    def rpc_base_url(self) -> str:
        """The SDK appends paths to `rpcBaseUrl` and sends no key of its own: the key rides as
        the URL's password, which aiohttp sends as `Authorization: Basic` (so it never appears in
        a request line, where proxies and access logs would see it)."""
        scheme, rest = self.base_url.split("://", 1)
        password = quote(self._system_key, safe="")
        return f"{scheme}://{RPC_USER}:{password}@{rest}{RPC_PATH}"

    @property
    def webhook_base_url(self) -> str:
        return f"{self.base_url}{WEBHOOK_PATH}".rstrip("/")

    def management_urls(self, instance_id: str, *, with_key: bool = False) -> dict[str, str]:
        """The check-status payload; `with_key` only for the durable client binding."""
        instance = f"{self.webhook_base_url}/instances/{quote(instance_id, safe='')}"
        query = self.query if with_key else self.public_query
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        }

    def own_url(self, request: web.Request) -> str:
        """The request's URL on this host, built from the host's own address (never from the
        `Host` header) and without a `code` (a key) in its query."""
        query = [(k, v) for k, v in request.query.items() if k.lower() != "code"]
        url = request.rel_url.with_query(query)
        return f"{self.base_url}{url}"

    def client_binding(self) -> str:
        """The JSON string the host passes for a `durableClient` binding."""
        base = self.webhook_base_url
        management = self.management_urls(INSTANCE_ID_PLACEHOLDER, with_key=True)
        binding = {
            "taskHubName": self.hub_name,
            "creationUrls": {
                "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?{self.query}",
                "createAndWaitOnNewInstancePostUri": (
                    f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                    f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{self.query}"
                ),
            },
            "managementUrls": management,
            "baseUrl": base,
            "requiredQueryStringParameters": self.query,
            "rpcBaseUrl": self.rpc_base_url,
            "httpBaseUrl": "",
            "maxGrpcMessageSizeInBytes": 0,
            "grpcHttpClientTimeout": "00:01:40",
        }
        return json.dumps(binding)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _error(status: int, message: str, exception: Exception | None = None) -> web.Response:
    body: dict[str, Any] = {"Message": message}
    if exception is not None:
        body["ExceptionMessage"] = str(getattr(exception, "message", exception))
        body["ExceptionType"] = "System.ArgumentException"
    return _json(status, body)


def _empty(status: int) -> web.Response:
    return web.Response(status=status)


def _refusal(exc: DurableApiError) -> web.Response:
    """404/410 have empty bodies (the SDK maps them to its own messages); others carry the text."""
    if exc.status in (404, 410):
        return _empty(exc.status)
    return _error(exc.status, exc.message)


class DurableApi:
    """Serves the management API for one runtime."""

    def __init__(self, runtime: DurableRuntime, urls: DurableUrls) -> None:
        self._runtime = runtime
        self._urls = urls

    async def handle(self, request: web.Request, segments: list[str]) -> web.Response:
        """`segments`: the URL-decoded path segments after the API base path."""
        method = request.method.upper()
        segments = list(segments)
        while segments and segments[-1] == "":
            segments.pop()  # the extension trims slashes around the path
        head = segments[0].lower() if segments else ""
        if head == "orchestrators" and len(segments) in (2, 3) and method == "POST":
            instance_id = segments[2] if len(segments) == 3 and segments[2] else None
            return await self._start(request, segments[1], instance_id)
        if head == "instances":
            return await self._instances(request, method, segments[1:])
        if head == "entities":
            return _error(501, "Durable entities are not supported by the local host.")
        return _empty(404)

    async def _instances(self, request: web.Request, method: str, rest: list[str]) -> web.Response:
        if not rest:
            if method == "GET":
                return self._list(request)
            if method == "DELETE":
                return self._purge_matching(request)
            return _empty(404)
        instance_id = rest[0]
        if len(rest) == 1:
            if method == "GET":
                return self._status(request, instance_id)
            if method == "DELETE":
                try:
                    deleted = self._runtime.purge(instance_id)
                except DurableApiError as exc:
                    return _refusal(exc)
                return _json(200, {"instancesDeleted": deleted})
            return _empty(404)
        operation = rest[1].lower()
        if method != "POST":
            return _empty(404)
        if operation == "raiseevent" and len(rest) == 3:
            return await self._raise_event(request, instance_id, rest[2])
        if operation == "terminate" and len(rest) == 2:
            try:
                self._runtime.terminate(instance_id, request.query.get("reason"))
            except DurableApiError as exc:
                return _refusal(exc)
            return _empty(202)
        if operation in {"suspend", "resume", "rewind", "restart"}:
            return _error(501, f"'{operation}' is not supported by the local host.")
        return _empty(404)

    async def _start(
        self, request: web.Request, name: str, instance_id: str | None
    ) -> web.Response:
        body = await request.text()
        try:
            input_raw = payloads.client_body_to_raw_input(body)
        except ValueError as exc:
            return _error(400, "Invalid JSON content", exc)
        try:
            record = self._runtime.start_new(
                name, instance_id, input_raw, request.query.get("version")
            )
        except (UnknownFunction, InvalidInstanceId) as exc:
            return _error(400, "One or more of the arguments submitted is incorrect", exc)
        except InstanceAlreadyExists as exc:
            return _error(409, exc.message)
        wait_seconds = _float_query(request, "timeout")
        if wait_seconds is not None and _float_query(request, "pollingInterval") is not None:
            return await self._wait_or_check_status(request, record.instance_id, wait_seconds)
        return self._check_status_response(record.instance_id)

    async def _wait_or_check_status(
        self, request: web.Request, instance_id: str, wait_seconds: float
    ) -> web.Response:
        try:
            record = await self._runtime.wait_for_status(
                instance_id, TERMINAL_STATUSES, within=wait_seconds
            )
        except TimeoutError:
            return self._check_status_response(instance_id)
        if record.runtime_status == RuntimeStatus.COMPLETED:
            return _json(200, parse_jtoken(record.output_raw))
        return self._status(request, instance_id)

    def _check_status_response(self, instance_id: str) -> web.Response:
        payload = self._urls.management_urls(instance_id)  # no key: the caller holds its own
        headers = {"Location": payload["statusQueryGetUri"], "Retry-After": "10"}
        return _json(202, payload, headers)

    def _status(self, request: web.Request, instance_id: str) -> web.Response:
        record = self._runtime.get_instance(instance_id)
        if record is None:
            return _empty(404)
        show_input = _bool_query(request, "showInput", default=True)
        body = _status_body(record, show_input=show_input)
        if _bool_query(request, "showHistory", default=False):
            events = self._runtime.load_history(instance_id)
            show_output = _bool_query(request, "showHistoryOutput", default=False)
            body["historyEvents"] = history_for_status(events, show_output=show_output)
        if record.runtime_status in TERMINAL_STATUSES:
            failed = record.runtime_status == RuntimeStatus.FAILED
            use_500 = _bool_query(request, "returnInternalServerErrorOnFailure", default=False)
            return _json(500 if failed and use_500 else 200, body)
        headers = {
            "Location": self._urls.own_url(request),
            "Retry-After": str(RUNNING_RETRY_AFTER_SECONDS),
        }
        return _json(202, body, headers)

    def _list(self, request: web.Request) -> web.Response:
        try:
            query = _instance_query(request)
        except ValueError as exc:
            return _error(400, str(exc))
        show_input = _bool_query(request, "showInput", default=True)
        records = self._runtime.query_instances(query)
        page_size = int(_float_query(request, "top") or DEFAULT_PAGE_SIZE)
        offset = _decode_token(request.headers.get("x-ms-continuation-token"))
        page = records[offset : offset + page_size]
        headers = {}
        if offset + page_size < len(records):
            headers["x-ms-continuation-token"] = _encode_token(offset + page_size)
        return _json(200, [_status_body(r, show_input=show_input) for r in page], headers)

    def _purge_matching(self, request: web.Request) -> web.Response:
        if "createdTimeFrom" not in request.query:
            return _error(400, "Please provide value for 'createdTimeFrom' parameter.")
        try:
            query = _instance_query(request)
        except ValueError as exc:
            return _error(400, str(exc))
        deleted = self._runtime.purge_matching(query)
        if deleted == 0:
            return _empty(404)
        return _json(200, {"instancesDeleted": deleted})

    async def _raise_event(
        self, request: web.Request, instance_id: str, event_name: str
    ) -> web.Response:
        record = self._runtime.get_instance(instance_id)
        if record is None:
            return _empty(404)
        if record.runtime_status in TERMINAL_STATUSES:
            return _empty(410)
        if request.content_type.lower() != "application/json":
            return _error(400, "Only application/json request content is supported")
        try:
            input_raw = payloads.client_body_to_event_input(await request.text())
        except ValueError as exc:
            return _error(400, "Invalid JSON content", exc)
        try:
            self._runtime.raise_event(instance_id, event_name, input_raw)
        except DurableApiError as exc:
            return _refusal(exc)
        return _empty(202)


def _status_body(record: InstanceRecord, *, show_input: bool) -> dict[str, Any]:
    return {
        "name": record.name,
        "instanceId": record.instance_id,
        "runtimeStatus": str(record.runtime_status),
        "input": parse_jtoken(record.input_raw) if show_input else None,
        "customStatus": parse_jtoken(record.custom_status_raw),
        "output": parse_jtoken(record.output_raw),
        "createdTime": format_status_time(record.created_time),
        "lastUpdatedTime": format_status_time(record.last_updated_time),
    }


def history_for_status(events: list[Event], *, show_output: bool) -> list[dict[str, Any]]:
    """The `historyEvents` of a status query: completions carry the scheduled function's name."""
    scheduled = {
        event["EventId"]: event
        for event in events
        if event["EventType"]
        in (
            int(HistoryEventType.TASK_SCHEDULED),
            int(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED),
        )
    }
    items: list[dict[str, Any]] = []
    for event in events:
        kind = _STATUS_EVENT_NAMES.get(event["EventType"])
        if kind is None or kind in _HIDDEN_HISTORY_EVENTS:
            continue
        item: dict[str, Any] = {
            "EventType": _PASCAL_EVENT_NAMES.get(kind, kind.name),
            "Timestamp": event["Timestamp"],
        }
        source = scheduled.get(event.get("TaskScheduledId"))
        if kind == HistoryEventType.EXECUTION_STARTED:
            item["FunctionName"] = event.get("Name")
            if show_output:
                item["Input"] = parse_jtoken(event.get("Input"))
        elif source is not None:
            item["FunctionName"] = source.get("Name")
            item["ScheduledTime"] = source.get("Timestamp")
        if kind in (
            HistoryEventType.TASK_FAILED,
            HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        ):
            item["Reason"] = event.get("Reason")
            item["Details"] = event.get("Details")
        if kind in (HistoryEventType.TIMER_CREATED, HistoryEventType.TIMER_FIRED):
            item["FireAt"] = event.get("FireAt")
        if kind == HistoryEventType.EVENT_RAISED:
            item["Name"] = event.get("Name")
            if show_output:
                item["Input"] = parse_jtoken(event.get("Input"))
        if kind == HistoryEventType.EXECUTION_COMPLETED:
            item["OrchestrationStatus"] = _STATUS_NAMES.get(event.get("OrchestrationStatus", -1))
        if show_output and "Result" in event:
            item["Result"] = parse_jtoken(event.get("Result"))
        items.append(item)
    return items


def _instance_query(request: web.Request) -> InstanceQuery:
    statuses: frozenset[RuntimeStatus] | None = None
    raw_statuses = [
        s for value in request.query.getall("runtimeStatus", []) for s in value.split(",") if s
    ]
    if raw_statuses:
        known = {str(status): status for status in RuntimeStatus}
        statuses = frozenset(known[s] for s in raw_statuses if s in known)
    return InstanceQuery(
        created_from=_date_query(request, "createdTimeFrom"),
        created_to=_date_query(request, "createdTimeTo"),
        statuses=statuses,
        instance_id_prefix=request.query.get("instanceIdPrefix") or None,
    )


def _date_query(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise ValueError(f"'{name}' is not a valid date") from exc


def _bool_query(request: web.Request, name: str, *, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return default


def _float_query(request: web.Request, name: str) -> float | None:
    try:
        return float(request.query[name])
    except (KeyError, ValueError):
        return None


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(token.encode()).decode()))
    except ValueError:
        return 0


def split_segments(raw_path: str) -> list[str]:
    """URL-decode each path segment separately (an instance id may contain an encoded '/')."""
    return [unquote(segment) for segment in raw_path.split("/")]
