"""The chat page, used as a person would, in headless Chromium at a phone's width (375 px).

Every wait is one of Playwright's, with a bound (`expect(...)` polls until its timeout). Each test
gets a fresh browser context (empty sessionStorage and localStorage) and fails on any uncaught
script error or Content Security Policy violation in the page.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from local_host.testing import wait_until
from tests.ui.conftest import FUNCTION_KEY, PHONE, Served, screenshot_path

RUN_SECONDS = 45  # bound for a whole run on a loaded two-core machine
RUN_MS = RUN_SECONDS * 1000
GREET = '/tool demo__greet {"name": "Ada"}'
SAVE = '/tool demo__save_text_file {"filename": "from-the-page.txt", "content": "hello"}'
ASK = '/tool asking__greet_asking {"greeting": "Hello"}'
MAX_TABS = 40  # bound on Tab presses to reach a control


class ChatPage:
    """The page, with the steps a person takes in it."""

    def __init__(self, page: Page, served: Served) -> None:
        self.page = page
        self.served = served
        self.problems: list[str] = []  # uncaught errors and CSP violations
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(f"CSP: {message.text}")

    async def open(self) -> None:
        await self.page.goto(self.served.page_url)
        await expect(self.page.locator("body[data-ready=true]")).to_be_attached()

    async def open_with_key(self) -> None:
        await self.open()
        await self.page.get_by_label("Function key").fill(FUNCTION_KEY)
        await self.page.get_by_role("button", name="Use key").click()

    async def send(self, text: str) -> None:
        await self.page.get_by_label("Message", exact=True).fill(text)
        await self.page.get_by_role("button", name="Send").click()

    def tool_call(self, name: str) -> Any:
        return self.page.locator("#transcript .tool-call").filter(has_text=f"Tool call: {name}")

    def last_answer(self) -> Any:
        return self.page.locator("#transcript li.message.assistant").last

    async def wait_done(self, status: str = "Done") -> None:
        await expect(self.page.locator("#run-status")).to_have_text(status, timeout=RUN_MS)

    async def screenshot(self, name: str) -> None:
        path = screenshot_path(name)
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")

    async def tab_to(self, condition: str, *, backwards: bool = False) -> None:
        """Press Tab (Shift+Tab) until `condition` (JS, of `el` = the focused element) holds."""
        for _ in range(MAX_TABS):
            if await self.page.evaluate(f"(el => Boolean({condition}))(document.activeElement)"):
                return
            await self.page.keyboard.press("Shift+Tab" if backwards else "Tab")
        pytest.fail(f"{MAX_TABS} Tab presses never reached {condition}")


@pytest_asyncio.fixture
async def chat(browser: Any, served: Served) -> AsyncIterator[ChatPage]:
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    page.set_default_timeout(RUN_MS)
    chat_page = ChatPage(page, served)
    yield chat_page
    await context.close()
    assert not chat_page.problems, chat_page.problems


@pytest.mark.parametrize("mode", ["streamed", "buffered"])
async def test_a_tool_call_with_its_arguments_and_result_and_the_answer_appear(
    chat: ChatPage, served: Served, mode: str, monkeypatch: pytest.MonkeyPatch
):
    # buffered SSE: what Azure serves unless AGENT_HTTP_STREAMING is on
    monkeypatch.setenv("AGENT_HTTP_STREAMING", "true" if mode == "streamed" else "false")
    await chat.open_with_key()
    await chat.send(GREET)
    card = chat.tool_call("demo__greet")
    await expect(card).to_contain_text('"name": "Ada"', timeout=RUN_MS)
    await expect(card).to_contain_text("Hello, Ada!", timeout=RUN_MS)
    await chat.wait_done()
    await expect(chat.last_answer()).to_contain_text("[offline model]")
    await expect(chat.last_answer()).to_contain_text("Hello, Ada!")
    # the event stream when the app serves it (streamed or buffered), polling otherwise
    expected = "events" if served.serves_events else "polling"
    await expect(chat.page.locator("#run-status")).to_have_attribute("data-transport", expected)
    # the listing (GET /api/conversations) holds this key's other tests' conversations too
    current = chat.page.locator("#conversation-list button[aria-current=true]")
    await expect(current).to_have_count(1)
    await chat.screenshot(f"tool-call-and-answer-{mode}")
    await chat.page.set_viewport_size({"width": 1280, "height": 900})
    await chat.screenshot(f"tool-call-and-answer-{mode}-wide")


async def test_a_tool_that_needs_approval_runs_once_approved_in_the_page(chat: ChatPage):
    await chat.open_with_key()
    await chat.send(SAVE)
    prompt = chat.page.locator("#approvals")
    await expect(prompt).to_be_visible(timeout=RUN_MS)
    await expect(prompt).to_contain_text("from-the-page.txt")  # what it will do, before it runs
    await expect(chat.page.locator("#run-status")).to_have_text("Waiting for your approval")
    await chat.screenshot("approval-prompt")
    assert await chat.page.evaluate(CONTRAST_FAILURES) == []  # the prompt's colours too
    await chat.page.get_by_role("button", name="Approve demo__save_text_file").click()
    await expect(chat.tool_call("demo__save_text_file")).to_contain_text(
        "Successfully saved 5 bytes", timeout=RUN_MS
    )
    await chat.wait_done()
    await expect(prompt).to_be_hidden()


async def test_a_rejected_tool_never_runs_and_the_answer_says_so(chat: ChatPage):
    await chat.open_with_key()
    await chat.send(SAVE)
    await chat.page.get_by_role("button", name="Reject demo__save_text_file").click()
    await chat.wait_done()
    card = chat.tool_call("demo__save_text_file")
    await expect(card).to_contain_text("rejected")
    await expect(card).to_have_class(re.compile(r"\bfailed\b"))  # shown as an error
    await expect(chat.last_answer()).to_contain_text("rejected")


async def test_a_tools_question_is_a_form_whose_answer_reaches_the_tool(chat: ChatPage):
    page = chat.page
    await chat.open_with_key()
    await chat.send(ASK)
    form = page.locator("#input-request")
    await expect(form).to_be_visible(timeout=RUN_MS)
    await expect(form).to_contain_text("Hello! What is your name?")
    await expect(chat.page.locator("#run-status")).to_have_text("Waiting for your answer")
    await chat.screenshot("input-form")
    await page.get_by_label("Age", exact=True).fill(
        "200"
    )  # over the schema's maximum: refused, named
    await page.get_by_label("Name (required)", exact=True).fill("Ada")
    await page.get_by_role("button", name="Answer").click()
    await expect(page.locator("#error")).to_contain_text("content.age")
    await expect(form).to_be_visible()  # still asking: another try
    await page.get_by_label("Age", exact=True).fill("36")
    await page.get_by_label("Colour", exact=True).select_option("blue")
    await page.get_by_role("button", name="Answer").click()
    await expect(form).to_be_hidden()
    await expect(chat.tool_call("asking__greet_asking")).to_contain_text(
        "Hello, Ada (36)! Your colour is blue.", timeout=RUN_MS
    )
    await chat.wait_done()


async def test_a_tools_question_can_be_declined(chat: ChatPage):
    await chat.open_with_key()
    await chat.send(ASK)
    await expect(chat.page.locator("#input-request")).to_be_visible(timeout=RUN_MS)
    await chat.page.get_by_role("button", name="Decline").click()
    await expect(chat.tool_call("asking__greet_asking")).to_contain_text(
        "the person chose decline", timeout=RUN_MS
    )
    await chat.wait_done()


async def test_a_run_waiting_for_approval_can_be_cancelled(chat: ChatPage):
    await chat.open_with_key()
    await chat.send(SAVE)
    await expect(chat.page.locator("#approvals")).to_be_visible(timeout=RUN_MS)
    await chat.page.get_by_role("button", name="Cancel run").click()
    await chat.wait_done("Cancelled")
    await expect(chat.page.locator("#approvals")).to_be_hidden()
    await expect(chat.page.get_by_role("button", name="Cancel run")).to_be_hidden()


async def test_a_reloaded_page_lists_its_conversation_and_picks_up_the_waiting_run(
    chat: ChatPage,
):
    page = chat.page
    await chat.open_with_key()
    await chat.send(SAVE)
    await expect(page.locator("#approvals")).to_be_visible(timeout=RUN_MS)
    title = await page.locator("#chat-title").text_content()
    current = page.locator("#conversation-list button[aria-current=true]")
    conversation_id = await current.get_attribute("data-conversation-id")
    await page.reload()  # the key stays with the tab; the conversation with this browser
    await expect(page.locator("body[data-ready=true]")).to_be_attached()
    await expect(page.locator("#approvals")).to_be_hidden()
    await page.locator(
        f'#conversation-list button[data-conversation-id="{conversation_id}"]'
    ).click()
    await expect(page.locator("#chat-title")).to_have_text(title or "")
    await page.get_by_role("button", name="Approve demo__save_text_file").click()
    await expect(chat.tool_call("demo__save_text_file")).to_contain_text(
        "Successfully saved", timeout=RUN_MS
    )
    await chat.wait_done()


async def test_keyboard_alone_pastes_the_key_sends_and_approves(chat: ChatPage):
    page = chat.page
    await chat.open()
    await chat.tab_to("el.id === 'key'")
    await page.keyboard.type(FUNCTION_KEY)
    await page.keyboard.press("Enter")  # submits the key form
    await chat.tab_to("el.id === 'message'")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused message box shows no focus ring"
    await page.keyboard.type(SAVE)
    await page.keyboard.press("Control+Enter")
    approve = page.get_by_role("button", name="Approve demo__save_text_file")
    await expect(approve).to_be_visible(timeout=RUN_MS)
    await chat.tab_to("el.textContent.startsWith('Approve')", backwards=True)
    await page.keyboard.press("Enter")
    await expect(chat.tool_call("demo__save_text_file")).to_contain_text(
        "Successfully saved", timeout=RUN_MS
    )
    await chat.wait_done()
    await expect(page.locator("#message")).to_be_focused()  # back where the next message goes


async def test_without_a_key_the_page_asks_for_one(chat: ChatPage):
    await chat.open()
    await chat.page.get_by_role("button", name="New conversation").click()
    await expect(chat.page.get_by_role("alert")).to_contain_text("paste a valid function key")
    await expect(chat.page.get_by_label("Function key")).to_be_focused()
    assert await chat.page.evaluate(CONTRAST_FAILURES) == []  # the error's colours too


async def test_a_message_scheduled_for_later_runs_and_its_batch_shows_the_answer(chat: ChatPage):
    page = chat.page
    await chat.open_with_key()
    await page.get_by_role("button", name="New conversation").click()
    await expect(page.locator("#chat-title")).to_contain_text("Conversation ")
    # The new conversation is open once the page has put focus in its message box; typing
    # before that can land there instead (the focus moves under the typing).
    await expect(page.locator("#message")).to_be_focused()
    await page.locator("summary").click()
    await page.get_by_label("Message to send later").fill('/tool demo__greet {"name": "Later"}')
    soon = await page.evaluate(
        """() => {
            const d = new Date(Date.now() + 3000), p = (n) => String(n).padStart(2, "0");
            return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
                   `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
        }"""
    )
    await page.get_by_label("When (your local time)").fill(soon)
    await page.get_by_role("button", name="Schedule").click()
    batch = page.locator("#batch-list .batch")
    await expect(batch).to_contain_text("Batch s")
    await expect(batch).to_contain_text("1 completed", timeout=RUN_MS)
    await expect(batch).to_contain_text("Hello, Later!")
    # delivered into the open conversation, marked as scheduled
    await expect(page.locator("#transcript")).to_contain_text("You (scheduled)", timeout=RUN_MS)
    await chat.screenshot("scheduled-batch")
    assert await page.evaluate(CONTRAST_FAILURES) == []  # the batch's colours too


async def test_the_page_fits_a_phone_and_its_text_meets_aa_contrast(chat: ChatPage):
    await chat.open_with_key()
    await chat.send(GREET)
    await chat.wait_done()
    width = await chat.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at 375 px ({width} px wide)"
    failing = await chat.page.evaluate(CONTRAST_FAILURES)
    assert failing == [], failing


async def test_the_event_stream_parser_takes_events_cut_anywhere(chat: ChatPage):
    await chat.open()
    events = await chat.page.evaluate(
        """async () => {
            const { createEventParser } = await import("./ui/app.js");
            const stream = 'id: 1\\nevent: text_delta\\ndata: {"type": "text_delta", "delta": "Hel"}\\n\\n' +
                ': keep-alive\\n\\nretry: 250\\n\\n' +
                'id: 2\\r\\nevent: run_finished\\r\\ndata: {"type": "run_finished",\\r\\n' +
                'data: "status": "completed"}\\r\\n\\r\\n';
            const results = [];
            for (const size of [1, 2, 3, 7, stream.length]) {
                const push = createEventParser(), seen = [];
                for (let i = 0; i < stream.length; i += size) seen.push(...push(stream.slice(i, i + size)));
                results.push(seen);
            }
            return results;
        }"""
    )
    expected = [
        {"id": "1", "type": "text_delta", "data": {"type": "text_delta", "delta": "Hel"}},
        {"id": None, "type": "message", "data": None, "retry": 250},  # the reconnection time
        {
            "id": "2",
            "type": "run_finished",
            "data": {"type": "run_finished", "status": "completed"},
        },
    ]
    for event in expected:
        event.setdefault("retry", None)
    assert events == [expected] * 5


# --- the event stream, in the wire format of GET /api/runs/{id}/events -------------------------
# Until that route is served, Playwright stands in for it with a recorded stream (the page's run
# itself is real; only its events are replayed), cut after a few events so the page must resume
# with Last-Event-ID. Once the route is served, the tests above follow real streams too.

CUT_STREAM = [
    {"type": "run_started"},
    {"type": "step_started", "step": 1},
    {"type": "tool_call_started", "step": 1, "tool_call_id": "call_1", "name": "demo__greet",
     "arguments": '{"name": "Ada"}'},
    {"type": "tool_call_completed", "step": 1, "tool_call_id": "call_1", "name": "demo__greet",
     "arguments": '{"name": "Ada"}', "result": "Hello, Ada!", "truncated": False},
    {"type": "step_started", "step": 2},
    {"type": "text_delta", "step": 2, "delta": "[offline model] The tools"},
]  # fmt: skip
REST_OF_STREAM = [
    {"type": "text_delta", "step": 2, "delta": " returned"},
    {"type": "run_finished", "status": "completed", "answer": "[offline model] The tools returned"},
]


def event_stream(events: list[dict[str, Any]], first_seq: int) -> str:
    return "".join(
        f"id: {seq}\nevent: {event['type']}\ndata: {json.dumps({**event, 'seq': seq})}\n\n"
        for seq, event in enumerate(events, start=first_seq)
    )


async def test_the_page_streams_a_run_and_resumes_a_cut_stream_after_the_last_event(
    chat: ChatPage, served: Served
):
    page, asked, release = chat.page, [], asyncio.Event()

    async def events_route(route: Any) -> None:
        asked.append({"url": route.request.url, **route.request.headers})
        if len(asked) == 1:
            body = event_stream(CUT_STREAM, 1)
        else:
            await asyncio.wait_for(release.wait(), RUN_SECONDS)
            body = event_stream(REST_OF_STREAM, len(CUT_STREAM) + 1)
        await route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)

    await page.route("**/api/runs/*/events", events_route)
    await chat.open_with_key()
    await chat.send(GREET)
    live = page.locator("#live")
    await expect(live.locator(".tool-call")).to_contain_text("Hello, Ada!", timeout=RUN_MS)
    await expect(live.locator(".answer")).to_have_text("Assistant[offline model] The tools")
    await expect(page.locator("#run-status")).to_have_attribute("data-transport", "events")
    await expect(page.locator("#transcript .tool-call")).to_have_count(0)  # shown once, live
    await wait_until(lambda: len(asked) == 2, within=RUN_SECONDS, message="reconnected")
    assert asked[1].get("last-event-id") == str(len(CUT_STREAM))  # ...after the last event seen
    assert asked[0].get("last-event-id") is None
    assert {a["x-functions-key"] for a in asked} == {FUNCTION_KEY}  # fetch() sends the key
    run_id = asked[0]["url"].split("/runs/")[1].split("/")[0]
    await real_run_done(served, run_id)  # so the transcript the page reloads at the end is whole
    release.set()
    await chat.wait_done()
    await expect(live).to_be_empty()
    await expect(chat.tool_call("demo__greet")).to_contain_text("Hello, Ada!")
    await expect(chat.last_answer()).to_contain_text("[offline model] The tools returned")


async def real_run_done(served: Served, run_id: str) -> None:
    async with aiohttp.ClientSession(headers={"x-functions-key": FUNCTION_KEY}) as http:

        async def finished() -> bool:
            async with http.get(f"{served.base_url}/api/runs/{run_id}") as response:
                return (await response.json())["status"] == "completed"

        await wait_until(finished, within=RUN_SECONDS, message=f"run {run_id} completed")


# Every element that shows text directly: its colour against the first opaque background behind
# it must reach 4.5:1 (3:1 for large text), WCAG 2.x AA. Returns the ones that do not.
CONTRAST_FAILURES = """() => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] === 1) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failing = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || el.closest(".visually-hidden, [hidden]")) continue;
    const [a, b] = [lum(rgb(style.color)), lum(background(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) failing.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return failing;
}"""
