"""API-key auth in front of the MCP endpoint: `X-Client-ID` + `X-API-Key`, or 401."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_ID_HEADER = b"x-client-id"
API_KEY_HEADER = b"x-api-key"


class ApiKeyAuth:
    """Pure ASGI middleware (streams pass through untouched); lifespan events are not checked."""

    def __init__(self, app: AsgiApp, client_id: str, api_key: str) -> None:
        self.app = app
        self._client_id = client_id.encode()
        self._api_key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = self._problem(scope)
            if problem is not None and scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # before accept: a 403
                return
            if problem is not None:
                await _unauthorized(send, problem)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> str | None:
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        client_id = headers.get(CLIENT_ID_HEADER)
        api_key = headers.get(API_KEY_HEADER)
        if client_id is None or api_key is None:
            return "missing X-Client-ID or X-API-Key header"
        # Both compared in constant time, and both always, so timing tells nothing about which.
        id_ok = hmac.compare_digest(client_id, self._client_id)
        key_ok = hmac.compare_digest(api_key, self._api_key)
        return None if id_ok & key_ok else "invalid client id or API key"


async def _unauthorized(send: Send, detail: str) -> None:
    body = json.dumps({"error": "unauthorized", "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
