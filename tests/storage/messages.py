"""Building stored messages for tests."""

from __future__ import annotations

from typing import Any

from storage.models import StoredMessage


def message(
    turn: int = 1, step: int = 0, seq: int = 0, run_id: str = "run-1", **fields: Any
) -> StoredMessage:
    values: dict[str, Any] = {
        "id": f"{run_id}.{step}.{seq}",
        "run_id": run_id,
        "turn": turn,
        "step": step,
        "seq": seq,
        "role": "assistant",
        "content": f"message {turn}/{step}/{seq}",
        "tool_calls": None,
        "tool_call_id": None,
        "name": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "usage": None,
        "output_ref": None,
        "truncated": False,
        "is_error": False,
        "finish_reason": None,
    }
    values.update(fields)
    return StoredMessage(**values)
