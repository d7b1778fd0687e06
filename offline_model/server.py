"""A local HTTP server speaking the Azure OpenAI (and OpenAI-compatible) chat-completions and
Responses shapes.

Routes:
    POST /openai/deployments/{deployment}/chat/completions?api-version=...  Azure shape
    POST /openai/responses?api-version=...                        Azure shape (Responses)
    POST /openai/v1/chat/completions, /openai/v1/responses        Azure v1 shape (no api-version)
    POST /v1/chat/completions, /v1/responses                      OpenAI shape
Anything else gets Azure's JSON 404.

Bodies are checked against the `openai` package's own request types (offline_model.official)
and then against the rules the service adds (offline_model.validation): a request the real
service would refuse is refused here with a 400.

Credentials: Azure routes need an `api-key` header or `Authorization: Bearer <token>`; the
OpenAI-shaped routes need one only when a key or tokens are configured. `api_key` (when set) is
the only key accepted; `bearer_tokens` (when set) are the only Entra ID tokens accepted.

Every request is recorded (also the rejected ones) in `requests`, for tests to assert on. The
server never logs headers or bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from offline_model.brains import OFFLINE_MODEL_NAME, Brain
from offline_model.official import chat_body_problem, responses_body_problem
from offline_model.replies import (
    Completion,
    Delayed,
    HttpError,
    Paced,
    azure_error,
    bad_request,
    deployment_not_found,
    resource_not_found,
    unauthorized,
)
from offline_model.responses_wire import chat_request_of, response_body, response_events
from offline_model.validation import validate_chat_request
from offline_model.wire import completion_body, completion_chunks


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when the body was not JSON

    @property
    def api_key(self) -> str | None:
        return self.headers.get("api-key")

    @property
    def bearer_token(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None


class ModelServer:
    """Serve a brain over loopback. Use `async with ModelServer(brain) as server:`."""

    def __init__(
        self,
        brain: Brain,
        *,
        api_key: str | None = None,
        bearer_tokens: Iterable[str] | None = None,
        deployments: Iterable[str] | None = None,
        model_name: str = OFFLINE_MODEL_NAME,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.brain = brain
        self.api_key = api_key
        self.bearer_tokens = frozenset(bearer_tokens) if bearer_tokens is not None else None
        self.deployments = frozenset(deployments) if deployments is not None else None
        self.model_name = model_name
        self.requests: list[RecordedRequest] = []
        self.brain_errors: list[BaseException] = []
        self._host, self._port = host, port
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self._stopping = False
        self._arrivals = asyncio.Condition()

    # --- lifecycle ---

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping = True
        self.release_delays()  # let delayed handlers finish so shutdown does not wait on them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ModelServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """The Azure endpoint (`AZURE_OPENAI_ENDPOINT`)."""
        return f"http://{self._host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """An OpenAI-compatible base URL (`OPENAI_BASE_URL`)."""
        return f"{self.base_url}/v1"

    # --- test helpers ---

    def release_delays(self) -> None:
        """Answer every delayed request now; later delays wait again (unless stopping)."""
        self._release.set()
        self._release = asyncio.Event()

    async def wait_for_requests(self, count: int, within_seconds: float = 5.0) -> None:
        """Wait until `count` requests have arrived (e.g. one is being delayed right now)."""
        async with asyncio.timeout(within_seconds), self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.requests) >= count)

    def chat_requests(self) -> list[RecordedRequest]:
        """The model calls received: chat completions and Responses requests alike."""
        return [r for r in self.requests if r.path.endswith(("/chat/completions", "/responses"))]

    # --- HTTP ---

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/responses", self._azure_responses)
        app.router.add_post("/openai/v1/chat/completions", self._azure_v1_chat)
        app.router.add_post("/openai/v1/responses", self._azure_v1_responses)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/responses", self._openai_responses)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
        )
        async with self._arrivals:
            self.requests.append(recorded)
            self._arrivals.notify_all()
        return recorded

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._error(resource_not_found())

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if "api-version" not in recorded.query:
            return self._error(resource_not_found())  # what Azure answers without api-version
        if not self._authorized(recorded, credential_required=True):
            return self._error(unauthorized())
        deployment = request.match_info["deployment"]
        if self.deployments is not None and deployment not in self.deployments:
            return self._error(deployment_not_found())
        return await self._chat(request, recorded, model_required=False, azure=True)

    async def _azure_v1_chat(self, request: web.Request) -> web.StreamResponse:
        """Azure's v1 API: no api-version, the deployment in the body's `model`."""
        return await self._azure_v1(request, responses=False)

    async def _azure_v1_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._azure_v1(request, responses=True)

    async def _azure_v1(self, request: web.Request, *, responses: bool) -> web.StreamResponse:
        recorded = await self._record(request)
        if "api-version" in recorded.query:
            # The v1 API takes none; Azure refuses one it does not know there.
            return self._error(bad_request("api-version is not allowed on the v1 API."))
        if not self._authorized(recorded, credential_required=True):
            return self._error(unauthorized())
        if not self._deployed(recorded):
            return self._error(deployment_not_found())
        return await self._chat(
            request, recorded, model_required=True, azure=True, responses=responses
        )

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        open_server = self.api_key is None and self.bearer_tokens is None
        if not self._authorized(recorded, credential_required=not open_server):
            return self._error(unauthorized())
        return await self._chat(request, recorded, model_required=True, azure=False)

    async def _azure_responses(self, request: web.Request) -> web.StreamResponse:
        """Azure's Responses route before v1: no deployment in the path (the body's `model`
        names it), an `api-version` (a preview one) in the query."""
        recorded = await self._record(request)
        if "api-version" not in recorded.query:
            return self._error(resource_not_found())
        if not self._authorized(recorded, credential_required=True):
            return self._error(unauthorized())
        if not self._deployed(recorded):
            return self._error(deployment_not_found())
        return await self._chat(request, recorded, model_required=True, azure=True, responses=True)

    async def _openai_responses(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        open_server = self.api_key is None and self.bearer_tokens is None
        if not self._authorized(recorded, credential_required=not open_server):
            return self._error(unauthorized())
        return await self._chat(request, recorded, model_required=True, azure=False, responses=True)

    def _deployed(self, recorded: RecordedRequest) -> bool:
        """A body's `model` names a known deployment (a missing one is the body's 400)."""
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = body.get("model")
        return self.deployments is None or not model or model in self.deployments

    def _authorized(self, recorded: RecordedRequest, *, credential_required: bool) -> bool:
        if recorded.api_key is not None:
            return self.api_key is None or hmac.compare_digest(recorded.api_key, self.api_key)
        token = recorded.bearer_token
        if token is None:
            return not credential_required
        if self.bearer_tokens is not None and token in self.bearer_tokens:
            return True
        if self.api_key is not None:
            return hmac.compare_digest(token, self.api_key)  # OpenAI-style `Bearer <key>`
        return self.bearer_tokens is None

    async def _chat(
        self,
        request: web.Request,
        recorded: RecordedRequest,
        *,
        model_required: bool,
        azure: bool,
        responses: bool = False,
    ) -> web.StreamResponse:
        body = recorded.body
        if not isinstance(body, dict):
            return self._error(bad_request("We could not parse the JSON body of your request."))
        problem = self._request_problem(body, model_required=model_required, responses=responses)
        if problem is not None:
            return self._error(problem)
        chat = chat_request_of(body) if responses else body
        try:
            reply = self.brain(chat)
        except Exception as error:  # kept for the test fixture to re-raise; the client sees 500
            self.brain_errors.append(error)
            return self._error(azure_error(500, "BrainFailed", type(error).__name__))
        if isinstance(reply, Delayed):
            await self._wait(reply.seconds)
            reply = reply.then
        if isinstance(reply, HttpError):
            return self._error(reply)
        model = self.model_name if azure else str(recorded.body.get("model"))
        pace = reply if isinstance(reply, Paced) else Paced(reply)
        created = int(self._clock())
        stream = recorded.body.get("stream") is True
        if responses:
            if stream:
                events = response_events(pace.then, recorded.body, chat, model=model,
                                         created=created)  # fmt: skip
                return await self._stream(request, pace, events, named_events=True)
            payload = response_body(pace.then, recorded.body, chat, model=model, created=created)
            return web.json_response(payload, headers=self._request_id_headers())
        if stream:
            chunks = completion_chunks(
                pace.then, recorded.body, model=model, created=created, azure=azure
            )
            return await self._stream(request, pace, chunks)
        return self._completion(pace.then, recorded.body, model=model, azure=azure)

    @staticmethod
    def _request_problem(
        body: dict[str, Any], *, model_required: bool, responses: bool
    ) -> HttpError | None:
        """The service's own checks (its wording) where we have them, and the official request
        types' for everything else. A Responses body is read as a chat request only once
        its types hold (the reading assumes them)."""
        if not responses:
            # The deployment route names the model in its path: the body may leave it out.
            typed = body if model_required else {"model": "deployment", **body}
            return validate_chat_request(body, model_required=model_required) or _official(
                chat_body_problem(typed)
            )
        if not body.get("model"):
            return bad_request("you must provide a model parameter", param="model")
        official = _official(responses_body_problem(body))
        if official is not None:
            return official
        if body.get("previous_response_id") or body.get("conversation"):
            # Not served: our client keeps its own history (store=false), never the service's.
            return bad_request("Stored responses are not served here.")
        chat = chat_request_of(body)
        chat.pop("reasoning_items", None)
        return validate_chat_request(chat, model_required=model_required)

    async def _wait(self, seconds: float) -> None:
        if self._stopping:
            return
        # An event wait, not a sleep: stop() and release_delays() end it at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), seconds)

    async def _stream(
        self,
        request: web.Request,
        pace: Paced,
        chunks: list[dict[str, Any]],
        *,
        named_events: bool = False,
    ) -> web.StreamResponse:
        """Server-sent events, one `data:` line per chunk, then `data: [DONE]` (as chat
        completions stream); Responses events are named (`event: <type>`) and end with the
        last event. A client that goes away mid-stream just ends it."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **self._request_id_headers()}
        )
        await response.prepare(request)
        try:
            for index, chunk in enumerate(chunks):
                if index == pace.drop_after_chunks and request.transport is not None:
                    request.transport.abort()
                    return response
                if index == pace.hold_after_chunks:
                    await self._wait(pace.hold_seconds)
                if pace.seconds_per_chunk:
                    await self._wait(pace.seconds_per_chunk)
                named = f"event: {chunk['type']}\n".encode() if named_events else b""
                await response.write(named + b"data: " + json.dumps(chunk).encode() + b"\n\n")
                if pace.on_chunk is not None:
                    pace.on_chunk(index, chunk)
            if not named_events:
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client left (e.g. its process was killed): nothing more to send
        return response

    def _completion(
        self, reply: Completion, body: dict[str, Any], *, model: str, azure: bool
    ) -> web.Response:
        payload = completion_body(reply, body, model=model, created=int(self._clock()), azure=azure)
        return web.json_response(payload, headers=self._request_id_headers())

    def _error(self, error: HttpError) -> web.Response:
        headers = {**self._request_id_headers(), **error.headers}
        return web.json_response(dict(error.body), status=error.status, headers=headers)

    @staticmethod
    def _request_id_headers() -> dict[str, str]:
        request_id = str(uuid.uuid4())
        return {"apim-request-id": request_id, "x-request-id": request_id}


def _official(problem: str | None) -> HttpError | None:
    return None if problem is None else bad_request(f"Invalid request: {problem}")
