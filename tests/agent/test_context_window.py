"""The context window's choice (pure): budget edges, tool-call pairs, the current turn, the
summary, calibration from the model's reported usage, and what compaction would take."""

from __future__ import annotations

from dataclasses import replace

from agent.context_window import (
    Summary,
    calibration,
    choose,
    compaction_due,
    estimate,
    messages_tokens,
    prompt_budget,
    request_messages,
    to_summarise,
    unit_tokens,
    units,
)
from storage.models import StoredMessage
from tests.storage.messages import message

SYSTEM = "You are a helpful assistant."


def turn_of(turn: int, words: int = 40) -> list[StoredMessage]:
    """One turn: the user's message, a tool call and its result, the answer."""
    run = f"run-{turn}"
    text = " ".join(["word"] * words)
    call = {"id": f"call-{turn}", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    return [
        message(turn, 0, 0, run, role="user", content=f"question {turn} {text}"),
        message(turn, 1, 0, run, content=None, tool_calls=[call]),
        message(turn, 1, 1, run, role="tool", content=text, tool_call_id=f"call-{turn}", name="t"),
        message(turn, 2, 0, run, content=f"answer {turn} {text}"),
    ]


def conversation(turns: int, words: int = 40) -> list[StoredMessage]:
    return [m for turn in range(1, turns + 1) for m in turn_of(turn, words)]


def fixed_tokens() -> int:
    return messages_tokens([{"role": "system", "content": SYSTEM}])


def test_everything_is_sent_when_it_fits():
    stored = conversation(3)
    window = choose(SYSTEM, stored, 3, budget=100_000)
    assert window.messages == tuple(stored)
    assert window.outside_tokens == 0 and not window.exceeded
    assert window.prompt_tokens == messages_tokens(request_messages(SYSTEM, window))


def test_the_newest_units_that_fit_are_sent_and_the_prompt_stays_within_the_budget():
    stored = conversation(30)
    budget = 1_500
    window = choose(SYSTEM, stored, 30, budget)
    assert 0 < len(window.messages) < len(stored)
    assert window.messages == tuple(stored[-len(window.messages) :])
    assert messages_tokens(request_messages(SYSTEM, window)) <= budget
    assert window.outside_tokens == sum(unit_tokens(u) for u in window.outside) > 0


def test_a_budget_exactly_the_size_of_the_prompt_sends_it_and_one_token_less_drops_a_unit():
    stored = conversation(2)
    exact = messages_tokens(request_messages(SYSTEM, choose(SYSTEM, stored, 2, 100_000)))
    assert choose(SYSTEM, stored, 2, exact).messages == tuple(stored)
    fewer = choose(SYSTEM, stored, 2, exact - 1)
    assert fewer.messages == tuple(stored[1:]) or len(fewer.messages) < len(stored)
    assert stored[0] not in fewer.messages


def test_a_tool_call_is_never_sent_without_its_results_nor_a_result_without_its_call():
    stored = conversation(20)
    for budget in range(300, 3_000, 37):
        sent = choose(SYSTEM, stored, 20, budget).messages
        for kept in sent:
            if kept.role == "tool":
                assert any(
                    m.tool_calls and m.step == kept.step and m.run_id == kept.run_id for m in sent
                )
            for call in kept.tool_calls or ():
                assert any(m.tool_call_id == call["id"] for m in sent)


def test_an_assistant_message_and_its_results_are_one_unit():
    assert [len(u) for u in units(turn_of(1))] == [1, 2, 1]


def test_a_current_turn_that_does_not_fit_is_exceeded_and_never_compacted():
    stored = conversation(3, words=400)
    window = choose(SYSTEM, stored, 3, budget=300)
    assert window.exceeded
    assert not compaction_due(window, threshold=1, enabled=True)


def test_earlier_turns_may_be_left_out_while_the_current_one_fits():
    stored = conversation(3)
    current = [m for m in stored if m.turn == 3]
    budget = fixed_tokens() + sum(unit_tokens(u) for u in units(current))
    window = choose(SYSTEM, stored, 3, budget)
    assert window.messages == tuple(current) and not window.exceeded


def test_the_summary_is_sent_after_the_system_prompt_and_what_it_covers_is_not():
    stored = conversation(4)
    summary = Summary("the user asked about words", stored[7].sort_key)  # turns 1-2
    window = choose(SYSTEM, stored, 4, 100_000, summary)
    assert window.messages == tuple(stored[8:])
    sent = request_messages(SYSTEM, window)
    assert sent[0] == {"role": "system", "content": SYSTEM}
    assert sent[1]["role"] == "system" and "the user asked about words" in sent[1]["content"]
    assert "untrusted summary of the earlier conversation" in sent[1]["content"]
    assert window.prompt_tokens == messages_tokens(sent)


def test_the_summary_counts_inside_the_budget():
    stored = conversation(10)
    long_summary = Summary("detail " * 300, stored[3].sort_key)
    with_summary = choose(SYSTEM, stored, 10, 2_000, long_summary)
    without = choose(SYSTEM, stored[4:], 10, 2_000)
    assert len(with_summary.messages) < len(without.messages)
    assert messages_tokens(request_messages(SYSTEM, with_summary)) <= 2_000


def test_compaction_is_due_once_enough_lies_outside_unless_it_is_off():
    window = choose(SYSTEM, conversation(30), 30, 1_500)
    assert compaction_due(window, window.outside_tokens, enabled=True)
    assert not compaction_due(window, window.outside_tokens + 1, enabled=True)
    assert not compaction_due(window, 1, enabled=False)


def test_compaction_takes_the_newest_units_outside_the_window_up_to_its_limit():
    window = choose(SYSTEM, conversation(30), 30, 1_500)
    limit = sum(unit_tokens(u) for u in window.outside[-3:])
    chunk = to_summarise(window, limit)
    assert chunk == tuple(m for u in window.outside[-3:] for m in u)
    assert to_summarise(window, 1) == window.outside[-1]  # at least one unit


def test_the_models_reported_prompt_tokens_scale_the_estimate_up_never_down():
    last = conversation(1)[-1]
    assert calibration([replace(last, usage={"prompt_tokens": 300}, prompt_estimate=200)]) == 1.5
    assert calibration([replace(last, usage={"prompt_tokens": 100}, prompt_estimate=200)]) == 1.0
    assert calibration([replace(last, usage={"prompt_tokens": 300})]) == 1.0  # nothing to compare
    scaled = choose(SYSTEM, conversation(30), 30, 1_500, scale=1.5)
    assert len(scaled.messages) < len(choose(SYSTEM, conversation(30), 30, 1_500).messages)


def reasoned(stored: list[StoredMessage], blob_chars: int = 4_000) -> list[StoredMessage]:
    """`stored` with each tool-calling step carrying a reasoning item and its encrypted blob."""
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x" * blob_chars}
    return [replace(m, reasoning=[item]) if m.tool_calls else m for m in stored]


def test_earlier_turns_reasoning_items_do_not_count_and_the_current_turns_do():
    plain, with_reasoning = conversation(30), reasoned(conversation(30))
    current = units(with_reasoning)[-2]  # turn 30's tool call and its result
    extra = unit_tokens(current, reasoning=True) - unit_tokens(current)
    assert extra > 1_000  # the current turn's reasoning is read by the model, and sent: it counts
    same = choose(SYSTEM, plain, 30, 1_500)
    window = choose(SYSTEM, with_reasoning, 30, 1_500 + extra)
    # the model drops an earlier turn's reasoning: the same messages fit, nothing to compact early
    assert [m.id for m in window.messages] == [m.id for m in same.messages]
    assert window.outside_tokens == same.outside_tokens
    assert window.prompt_tokens == same.prompt_tokens + extra
    assert window.prompt_tokens == messages_tokens(request_messages(SYSTEM, window))


def test_the_budget_keeps_room_for_the_tools_and_the_answer():
    tools = [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]
    assert prompt_budget(32_000, tools, 4_096) == 32_000 - 4_096 - estimate(tools)
    assert prompt_budget(32_000, [], 4_096) == 32_000 - 4_096
