"""Where a tail begins: the pure rules behind tail reads (no storage)."""

from __future__ import annotations

import pytest

from storage.models import StoredMessage
from storage.tail import TailBound, estimated_tokens, tail_start
from tests.storage.messages import message


def _turn(turn: int, calls: int = 0) -> list[StoredMessage]:
    """A user message, an assistant message with `calls` tool calls and their results."""
    run = f"run-{turn}"
    return [
        message(turn, 0, 0, run_id=run, role="user"),
        message(turn, 1, 0, run_id=run, tool_calls=[{"id": f"c{i}"} for i in range(calls)]),
        *(message(turn, 1, i, run_id=run, role="tool", tool_call_id=f"c{i}") for i in range(1, calls + 1)),
    ]  # fmt: skip


def test_the_tail_begins_at_the_newest_n_messages_when_an_older_one_was_read() -> None:
    messages = _turn(1) + _turn(2)
    assert tail_start(messages, TailBound(messages=3)) == 1


def test_without_anything_older_than_the_tail_the_start_is_unknown() -> None:
    messages = _turn(1) + _turn(2)
    assert tail_start(messages, TailBound(messages=4)) is None
    assert tail_start(messages, TailBound(messages=9)) is None
    assert tail_start([], TailBound(messages=1)) is None


def test_a_tail_never_begins_on_a_tool_result() -> None:
    messages = _turn(1) + _turn(2, calls=3)  # ..., user, assistant, tool x3
    assert tail_start(messages, TailBound(messages=2)) == 3  # the assistant of turn 2
    assert tail_start(_turn(2, calls=3)[1:], TailBound(messages=2)) is None  # none older read


def test_a_bound_from_a_turn_keeps_that_whole_turn() -> None:
    messages = _turn(1) + _turn(2, calls=2) + _turn(3)
    assert tail_start(messages, TailBound(messages=1, from_turn=2)) == 2
    assert tail_start(messages, TailBound(from_turn=3)) == 6
    assert tail_start(messages, TailBound(from_turn=1)) is None


def test_a_bound_in_tokens_counts_the_estimate_from_the_newest_back() -> None:
    messages = [message(1, step, 0, content="x" * 40) for step in range(5)]
    assert estimated_tokens(messages[0]) == 4 + 10
    assert tail_start(messages, TailBound(tokens=28)) == 3
    assert tail_start(messages, TailBound(tokens=29)) == 2


def test_covering_a_turn_keeps_the_earlier_of_two_turns() -> None:
    assert TailBound(messages=5).covering_turn(7) == TailBound(5, 0, 7)
    assert TailBound(from_turn=3).covering_turn(7) == TailBound(0, 0, 3)


def test_a_bound_below_zero_is_refused() -> None:
    with pytest.raises(ValueError):
        TailBound(messages=-1)
