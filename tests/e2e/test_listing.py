"""End to end on the local host: `GET /api/conversations` lists the caller's own conversations,
most recently active first, paged with a continuation token."""

from __future__ import annotations

import uuid
from typing import Any

from storage.models import PREVIEW_CHARS
from tests.e2e.conftest import App


def caller() -> dict[str, str]:
    return {"x-ms-client-principal-id": f"lister-{uuid.uuid4().hex[:8]}"}


async def every_page(app: App, headers: dict[str, str], limit: int) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        status, body, _ = await app.call("GET", "/conversations", params=params, headers=headers)
        assert status == 200, body
        pages.append(body["conversations"])
        if body["continuation"] is None:
            return pages
        params = {"limit": limit, "continuation": body["continuation"]}


async def test_my_conversations_are_listed_newest_activity_first_with_a_bounded_preview(
    app: App,
):
    me = caller()
    quiet, chatty, fresh = [await app.new_conversation(**me) for _ in range(3)]
    long_message = "Tell me about the tides\n" + "and the moon " * 40
    status, run, _ = await app.send(chatty, long_message, wait=30, **me)
    assert status == 200 and run["status"] == "completed", run

    [page] = await every_page(app, me, limit=10)
    assert [c["id"] for c in page] == [chatty, fresh, quiet]
    first = page[0]
    assert first["preview"].startswith("Tell me about the tides and the moon")
    assert len(first["preview"]) <= PREVIEW_CHARS and first["preview"].endswith("…")
    assert first["turns"] == 1 and first["active_run_id"] is None
    assert first["last_activity"] > first["created_at"]
    assert page[1]["preview"] is None and page[1]["last_activity"] == page[1]["created_at"]


async def test_paging_with_the_token_covers_every_conversation_exactly_once(app: App):
    me = caller()
    created = [await app.new_conversation(**me) for _ in range(5)]
    pages = await every_page(app, me, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c["id"] for p in pages for c in p] == created[::-1]


async def test_another_caller_sees_none_of_my_conversations(app: App):
    me, someone = caller(), caller()
    await app.new_conversation(**me)
    status, body, _ = await app.call("GET", "/conversations", headers=someone)
    assert status == 200 and body == {"conversations": [], "continuation": None}


async def test_another_callers_or_an_edited_token_is_a_400_that_says_so(app: App):
    me, someone = caller(), caller()
    for _ in range(2):
        await app.new_conversation(**me)
    _, body, _ = await app.call("GET", "/conversations", params={"limit": 1}, headers=me)
    token = body["continuation"]
    assert token is not None
    for bad, headers in ((token, someone), (token[:-2], me), ("not-a-token", me)):
        status, problem, response_headers = await app.call(
            "GET", "/conversations", params={"continuation": bad}, headers=headers
        )
        assert status == 400, problem
        assert response_headers["Content-Type"].startswith("application/problem+json")
        assert "continuation" in problem["detail"] and "without it" in problem["detail"]


async def test_a_limit_out_of_bounds_or_not_a_number_is_a_400_naming_it(app: App):
    for limit in ("0", "101", "-1", "2.5", "ten", ""):
        status, problem, _ = await app.call("GET", "/conversations", params={"limit": limit})
        assert status == 400, (limit, problem)
        assert problem["detail"] == "'limit' must be a whole number from 1 to 100"


async def test_the_openapi_document_describes_the_listing(app: App):
    status, document, _ = await app.call("GET", "/openapi.json", keyed=False)
    assert status == 200
    operation = document["paths"]["/api/conversations"]["get"]
    assert operation["operationId"] == "list_conversations"
    query = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    assert query["limit"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert "continuation" in query
    assert {"200", "400"} <= set(operation["responses"])
