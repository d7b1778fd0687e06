"""The worker's HTTP streaming mode (HTTP v2), as agent.http_streaming meets it: with
AGENT_HTTP_STREAMING on, every HTTP function is handed a starlette request and must give a
starlette response; our handlers keep taking `func.HttpRequest` and giving `func.HttpResponse`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent import http_streaming
from tests.support.app import MINIMAL_SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def starlette_request(body: bytes = b'{"content": "hi"}') -> Request:
    """A request as the worker's web server builds it (route params synced into the path)."""
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "server": ("app.example", 443),
        "path": "/api/conversations/c1/messages",
        "query_string": b"wait=3&x=1",
        "headers": [(b"x-functions-key", b"k"), (b"content-type", b"application/json")],
        "path_params": {"id": "c1"},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def test_a_starlette_request_reaches_the_handler_as_the_functions_request_it_reads():
    seen: dict[str, Any] = {}

    async def handler(req: func.HttpRequest, client: str) -> func.HttpResponse:
        seen.update(
            method=req.method,
            url=req.url,
            key=req.headers.get("x-functions-key"),
            params=dict(req.params),
            route=dict(req.route_params),
            body=req.get_json(),
            client=client,
        )
        return func.HttpResponse(
            json.dumps({"ok": True}),
            status_code=202,
            mimetype="application/json",
            headers={"Location": "/api/runs/r1"},
        )

    response = await http_streaming.converting(handler)(req=starlette_request(), client="c")
    assert seen == {
        "method": "POST",
        "url": "https://app.example/api/conversations/c1/messages?wait=3&x=1",
        "key": "k",
        "params": {"wait": "3", "x": "1"},
        "route": {"id": "c1"},
        "body": {"content": "hi"},
        "client": "c",
    }
    assert isinstance(response, Response)
    assert response.status_code == 202 and json.loads(response.body) == {"ok": True}
    assert response.headers["location"] == "/api/runs/r1"
    assert response.headers["content-type"].startswith("application/json")


async def test_a_streaming_response_passes_through_and_a_functions_request_is_left_alone():
    async def body():
        yield b"data: 1\n\n"

    stream = StreamingResponse(body(), media_type="text/event-stream")
    received: list[Any] = []

    async def handler(req: Any) -> Any:
        received.append(req)
        return stream

    plain = func.HttpRequest(method="GET", url="http://h/api/x", body=b"")
    assert await http_streaming.converting(handler)(req=plain) is stream
    assert await http_streaming.converting(handler)(req=starlette_request()) is stream
    assert received[0] is plain and isinstance(received[1], func.HttpRequest)


def test_streaming_is_on_only_when_the_setting_says_so():
    assert http_streaming.enabled({"AGENT_HTTP_STREAMING": "true"})
    assert http_streaming.enabled({"AGENT_HTTP_STREAMING": "1"})
    assert not http_streaming.enabled({"AGENT_HTTP_STREAMING": "false"})
    assert not http_streaming.enabled({})


INDEX_WITH_STREAMING = """
import json, sys
sys.path.insert(0, sys.argv[1])
import function_app
from azurefunctions.extensions.base import HttpV2FeatureChecker
functions = function_app.app.get_functions()  # once, as the worker does
adapted = sorted(
    f.get_function_name() for f in functions
    if getattr(f.get_user_function(), "http_v2_adapter", False)
)
http = sorted(f.get_function_name() for f in functions if f.is_http_function())
print(json.dumps({"v2": HttpV2FeatureChecker.http_v2_enabled(), "adapted": adapted, "http": http,
                  "fastapi": "fastapi" in sys.modules}))
"""


def index(settings: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", INDEX_WITH_STREAMING, str(ROOT)],
        capture_output=True, text=True, check=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", **settings}, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_with_streaming_on_the_worker_mode_is_on_and_every_http_function_is_adapted():
    report = index({**MINIMAL_SETTINGS, "AGENT_HTTP_STREAMING": "true"})
    assert report["v2"] is True
    assert report["adapted"] == report["http"] and "run_events" in report["http"]


def test_with_streaming_off_nothing_of_fastapi_is_imported():
    report = index(MINIMAL_SETTINGS)
    assert report["v2"] is False and report["adapted"] == [] and report["fastapi"] is False
