"""How much of a transcript's end a reader needs: the pure part of tail reads.

A model step needs the newest messages, not the whole conversation: `TailBound` says how many
(at least N messages, at least K estimated tokens, every message of the current turn), and
`tail_start` finds where that tail begins in a sorted run of messages, or says that the run may
not reach back far enough yet (the reader then reads further back from the end of the blob).

The boundary never splits a tool call from its results: results sort right after the assistant
message that asked for them (same turn and step, seq 1..n), so a tail that would begin on a
tool result begins on that assistant message instead.

Why "an older message was read" proves the tail complete: lines are appended in the order the
turns and steps happen (a turn begins only after the previous one ended, a step only after the
previous step's results are stored), so every line before an older message is older still. The
only exception is a write from a run that was cancelled mid-step and finishes late; reads drop
nothing for it, at worst such a late line is missing from a tail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.models import StoredMessage

# An estimate, not a tokenizer (nothing is downloaded at run time): about four bytes of UTF-8
# per token for English text and JSON, plus the few tokens each message's framing costs.
BYTES_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class TailBound:
    """The newest messages back to at least `messages` messages and `tokens` estimated tokens,
    and every message of turn `from_turn` onwards (None: no turn needs to be whole)."""

    messages: int = 0
    tokens: int = 0
    from_turn: int | None = None

    def __post_init__(self) -> None:
        if self.messages < 0 or self.tokens < 0:
            raise ValueError("a tail bound counts messages and tokens from zero up")

    def covering_turn(self, turn: int) -> TailBound:
        """This bound, also keeping every message of `turn` onwards."""
        keep = turn if self.from_turn is None else min(turn, self.from_turn)
        return TailBound(self.messages, self.tokens, keep)


def estimated_tokens(message: StoredMessage) -> int:
    """What the message costs in a prompt, estimated from the bytes of what the model sees."""
    size = len((message.content or "").encode("utf-8"))
    if message.tool_calls:
        size += len(json.dumps(message.tool_calls, ensure_ascii=False).encode("utf-8"))
    return TOKENS_PER_MESSAGE + -(-size // BYTES_PER_TOKEN)


def tail_start(messages: Sequence[StoredMessage], bound: TailBound) -> int | None:
    """Where the tail `bound` asks for begins in `messages` (sorted oldest first), or None when
    nothing older than that tail is among them, so older lines not read yet might belong to it.
    Callers that read the transcript from its very start use `0` for None."""
    start = len(messages)
    count = tokens = 0
    while start > 0 and _wants_more(messages[start - 1], count, tokens, bound):
        start -= 1
        count += 1
        tokens += estimated_tokens(messages[start])
    while 0 < start < len(messages) and messages[start].role == "tool":
        start -= 1  # back to the assistant message that asked for this result
    return start if start > 0 else None


def _wants_more(older: StoredMessage, count: int, tokens: int, bound: TailBound) -> bool:
    if count < bound.messages or tokens < bound.tokens:
        return True
    return bound.from_turn is not None and older.turn >= bound.from_turn
