"""A local HTTP server speaking the Azure OpenAI (and OpenAI-compatible) chat-completions shape.

Routes:
    POST /openai/deployments/{deployment}/chat/completions?api-version=...  Azure shape
    POST /openai/v1/chat/completions                              Azure v1 / OpenAI shape
    POST /v1/chat/completions                                     OpenAI shape
Anything else gets Azure's JSON 404.

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
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # --- HTTP ---

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
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

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        open_server = self.api_key is None and self.bearer_tokens is None
        if not self._authorized(recorded, credential_required=not open_server):
            return self._error(unauthorized())
        return await self._chat(request, recorded, model_required=True, azure=False)

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
    ) -> web.StreamResponse:
        if recorded.body is None:
            return self._error(bad_request("We could not parse the JSON body of your request."))
        problem = validate_chat_request(recorded.body, model_required=model_required)
        if problem is not None:
            return self._error(problem)
        try:
            reply = self.brain(recorded.body)
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
        if recorded.body.get("stream") is True:
            return await self._stream(request, pace, recorded.body, model=model, azure=azure)
        return self._completion(pace.then, recorded.body, model=model, azure=azure)

    async def _wait(self, seconds: float) -> None:
        if self._stopping:
            return
        # An event wait, not a sleep: stop() and release_delays() end it at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), seconds)

    async def _stream(
        self, request: web.Request, pace: Paced, body: dict[str, Any], *, model: str, azure: bool
    ) -> web.StreamResponse:
        """Server-sent events, one `data:` line per chunk, then `data: [DONE]` (as the service
        streams). A client that goes away mid-stream just ends it."""
        chunks = completion_chunks(
            pace.then, body, model=model, created=int(self._clock()), azure=azure
        )
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
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                if pace.on_chunk is not None:
                    pace.on_chunk(index, chunk)
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
