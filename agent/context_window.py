"""What one model step sends: the context window. Pure (no I/O, no clock).

A conversation can live for months; the model sees only a bounded part of it:

    system prompt + the conversation's summary (if any) + the newest messages that fit

within `AGENT_CONTEXT_TOKENS`, less the room kept for the tools' schemas and for the answer
(`prompt_budget`). Messages go in whole units, newest first: a user message, or an assistant
message together with every result of its tool calls, so a tool call is never split from its
results. Messages the summary covers are left out (it stands in for them). Every message of the
current turn must fit: if it does not, the window says `exceeded` and the run ends
`context_exceeded` instead of sending a request the model would refuse (a 400).

Token counts are an estimate (nothing is downloaded at run time, so no tokenizer): about four
bytes of UTF-8 per token of the JSON the model receives, plus a few tokens of framing per
message (storage.tail's constants). Where the model reported usage we correct it: a model reply
stores the estimate of the prompt it answered (`prompt_estimate`) beside the exact
`prompt_tokens` the model counted, and the newest such pair scales every estimate of the next
step up when the estimate ran short (`calibration`). It never scales down: an estimate that runs
long only sends a little less than the budget allows.

What lies outside the window and outside the summary (`outside_tokens`) is what compaction
would summarise; `compaction_due` says when it is worth it (agent.activities.compact).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.model_reply import REASONING_KEY
from agent.transcript import fence, model_messages
from storage.models import StoredMessage
from storage.tail import BYTES_PER_TOKEN, TOKENS_PER_MESSAGE

MessageKey = tuple[int, int, int]  # (turn, step, seq): the transcript's order
MAX_CALIBRATION = 4.0  # a reported count this far off the estimate is not trusted further
SUMMARY_WHAT = "summary of the earlier conversation"
SUMMARY_INTRO = (
    "The conversation began before the messages below. This summary of its earlier part was "
    "written by the assistant; it may quote tool output and other untrusted text."
)


@dataclass(frozen=True)
class Summary:
    """A stored summary as the window uses it: its text, and the last message it covers."""

    text: str
    last_key: MessageKey


@dataclass(frozen=True)
class Window:
    """The messages one model step sends, and what the choice found."""

    messages: tuple[StoredMessage, ...]  # oldest first, whole units only
    summary: Summary | None  # sent after the system prompt, when there is one
    prompt_tokens: int  # estimated (calibrated) size of the system prompt, summary and messages
    outside_tokens: int  # estimated size of what was read but left out and not summarised
    exceeded: bool = False  # the current turn does not fit: nothing may be sent
    # The units left out (oldest first), not covered by the summary: compaction's material.
    outside: tuple[tuple[StoredMessage, ...], ...] = ()

    @property
    def first_key(self) -> MessageKey | None:
        return self.messages[0].sort_key if self.messages else None


def estimate(value: Any) -> int:
    """Tokens of a JSON value as the model receives it (about four bytes per token)."""
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return math.ceil(size / BYTES_PER_TOKEN)


def messages_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Estimated tokens of request messages (chat-completions shape).

    A reasoning model's reasoning items (Responses API, kept on assistant messages) count only
    after the newest user message: within a turn's tool loop they are sent back and the model
    reads them (its reported prompt tokens include them); those of earlier turns are sent too
    but the model drops them (OpenAI: reasoning is discarded after each turn), and their
    encrypted blobs are large, so counting them would push whole turns out of the window and
    bring compaction on early."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return sum(
        TOKENS_PER_MESSAGE + estimate(m if i > last_user else _without_reasoning(m))
        for i, m in enumerate(messages)
    )


def _without_reasoning(message: Mapping[str, Any]) -> Mapping[str, Any]:
    if REASONING_KEY not in message:
        return message
    return {key: value for key, value in message.items() if key != REASONING_KEY}


def prompt_budget(context_tokens: int, tools: Sequence[Mapping[str, Any]], answer: int) -> int:
    """What the messages (system prompt and summary included) may use: the context budget
    less the tools' schemas, sent with every request, and the room kept for the answer."""
    return context_tokens - (estimate(list(tools)) if tools else 0) - answer


def calibration(stored: Sequence[StoredMessage]) -> float:
    """How much the estimate ran short last time: the model's exact prompt count over our
    estimate of that same prompt, from the newest reply that has both; 1.0 without one."""
    for message in reversed(stored):
        exact = (message.usage or {}).get("prompt_tokens") or 0
        estimated = message.prompt_estimate or 0
        if exact > 0 and estimated > 0:
            return min(max(1.0, exact / estimated), MAX_CALIBRATION)
    return 1.0


def units(stored: Sequence[StoredMessage]) -> list[tuple[StoredMessage, ...]]:
    """The messages in indivisible units: an assistant message with its tool results (same run
    and step, which sort right after it), or any other message alone."""
    grouped: list[list[StoredMessage]] = []
    for message in stored:
        owner = grouped[-1][0] if grouped else None
        if (
            message.role == "tool"
            and owner is not None
            and owner.role == "assistant"
            and (owner.run_id, owner.step) == (message.run_id, message.step)
        ):
            grouped[-1].append(message)
        else:
            grouped.append([message])
    return [tuple(unit) for unit in grouped]


def choose(
    system_prompt: str,
    stored: Sequence[StoredMessage],
    turn: int,
    budget: int,
    summary: Summary | None = None,
    closed_world: Collection[str] = (),
    scale: float = 1.0,
) -> Window:
    """The window for a step of `turn` over `stored` (sorted oldest first, every message of
    `turn` among them): the newest whole units that fit `budget` after the fixed part."""
    after = [m for m in stored if summary is None or m.sort_key > summary.last_key]
    candidates = units(after)
    fixed = _scaled(messages_tokens(_fixed_messages(system_prompt, summary)), scale)
    used, start = fixed, len(candidates)
    while start > 0:
        unit = candidates[start - 1]
        cost = unit_tokens(unit, closed_world, scale, reasoning=unit[0].turn >= turn)
        if used + cost > budget:
            break
        used += cost
        start -= 1
    kept, left_out = candidates[start:], candidates[:start]
    outside = sum(unit_tokens(unit, closed_world, scale) for unit in left_out)
    exceeded = any(unit[0].turn >= turn for unit in left_out)
    return Window(
        messages=tuple(m for unit in kept for m in unit),
        summary=summary,
        prompt_tokens=used,
        outside_tokens=outside,
        exceeded=exceeded,
        outside=tuple(left_out),
    )


def unit_tokens(
    unit: Sequence[StoredMessage],
    closed_world: Collection[str] = (),
    scale: float = 1.0,
    *,
    reasoning: bool = False,
) -> int:
    """A unit's estimated cost as the model receives it (fences and framing included); its
    reasoning items only with `reasoning` (a unit of the current turn: see `messages_tokens`;
    a summary never carries them either)."""
    rendered = model_messages("", unit, closed_world)
    if not reasoning:
        rendered = [dict(_without_reasoning(m)) for m in rendered]
    return _scaled(messages_tokens(rendered), scale)


def request_messages(
    system_prompt: str, window: Window, closed_world: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The request's messages: the system prompt, the summary, then the window's messages."""
    rendered = model_messages("", window.messages, closed_world)
    return [*_fixed_messages(system_prompt, window.summary), *rendered]


def compaction_due(window: Window, threshold: int, enabled: bool) -> bool:
    """Summarise now? When enough lies outside the window, not summarised yet."""
    return enabled and not window.exceeded and window.outside_tokens >= max(1, threshold)


def to_summarise(window: Window, limit: int) -> tuple[StoredMessage, ...]:
    """What a compaction summarises: the newest units outside the window, up to `limit`
    tokens (one summarising request must fit the model too). Older unsummarised units beyond
    that are passed over: the summary then covers them without their detail (only a
    conversation that grew long before compaction was on, or with it off, has any)."""
    chosen: list[tuple[StoredMessage, ...]] = []
    used = 0
    for unit in reversed(window.outside):
        cost = unit_tokens(unit)
        if chosen and used + cost > limit:
            break
        chosen.insert(0, unit)
        used += cost
    return tuple(m for unit in chosen for m in unit)


def summary_message(summary: Summary) -> dict[str, Any]:
    return {
        "role": "system",
        "content": f"{SUMMARY_INTRO}\n{fence(summary.text, SUMMARY_WHAT)}",
    }


def _fixed_messages(system_prompt: str, summary: Summary | None) -> list[dict[str, Any]]:
    fixed: list[dict[str, Any]] = []
    if system_prompt:
        fixed.append({"role": "system", "content": system_prompt})
    if summary is not None:
        fixed.append(summary_message(summary))
    return fixed


def _scaled(tokens: int, scale: float) -> int:
    return math.ceil(tokens * scale)
