"""Blob names. Everything of a conversation lives under its owner's prefix:

    owners/{owner_key}/conversations/{conversation_id}/meta.json
    owners/{owner_key}/conversations/{conversation_id}/transcript.jsonl          (segment 0)
    owners/{owner_key}/conversations/{conversation_id}/transcript-0001.jsonl     (segment 1, …)
    owners/{owner_key}/conversations/{conversation_id}/runs/{run}/tool-calls/{call}.json
    owners/{owner_key}/conversations/{conversation_id}/runs/{run}/tool-outputs/{call}
    owners/{owner_key}/conversations/{conversation_id}/runs/{run}/events.jsonl   (its event log)
    owners/{owner_key}/conversations/{conversation_id}/runs/{run}/input/{question}.question.json
    owners/{owner_key}/conversations/{conversation_id}/runs/{run}/input/{question}.answer.json
    owners/{owner_key}/conversations/{conversation_id}/summary.json              (the newest)
    owners/{owner_key}/conversations/{conversation_id}/summaries/{range}.json    (one per range)
    owners/{owner_key}/activity/{inverted time}-{conversation_id}    (empty: see storage.activity)
    index/conversations/{conversation_id}.json        (its owner: ids are unique across owners)
    batches/{batch_id}.json                            (scheduled batches: items and their owners)

Owner ids can contain anything (an Entra object id, an email, a "/"), so the owner key is a hash.
Run and call ids are used verbatim when they are plain (A-Z a-z 0-9 _ -), else hashed behind a "~"
(a character plain names never contain, so the two forms cannot collide). No name part can be
"." or "..", so a name never escapes its prefix.
"""

from __future__ import annotations

import hashlib
import re

from storage.errors import InvalidKey
from storage.models import ConversationRef

OWNERS_PREFIX = "owners/"
META_SUFFIX = "/meta.json"
OWNER_KEY_HEX_CHARS = 32  # 128 bits of sha256: collisions are not a practical concern
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
_NAME_PART = r"[A-Za-z0-9_~-]{1,100}"
_SEGMENT_NAME = re.compile(r"transcript(?:-(\d{4,}))?\.jsonl")


def owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:OWNER_KEY_HEX_CHARS]


def owner_prefix(owner: str) -> str:
    return f"{OWNERS_PREFIX}{owner_key(owner)}/conversations/"


def activity_prefix(owner: str) -> str:
    return f"owners/{owner_key(owner)}/activity/"


def conversation_prefix(ref: ConversationRef) -> str:
    return f"{owner_prefix(ref.owner)}{ref.conversation_id}/"


def safe_name(value: str) -> str:
    if _PLAIN_NAME.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]


def conversation_index_name(conversation_id: str) -> str:
    """Which owner a conversation id belongs to (ids are validated plain names)."""
    return f"index/conversations/{safe_name(conversation_id)}.json"


def meta_name(ref: ConversationRef) -> str:
    return conversation_prefix(ref) + META_SUFFIX[1:]


def transcript_prefix(ref: ConversationRef) -> str:
    return conversation_prefix(ref) + "transcript"


def segment_name(ref: ConversationRef, index: int) -> str:
    suffix = ".jsonl" if index == 0 else f"-{index:04d}.jsonl"
    return transcript_prefix(ref) + suffix


def segment_index(ref: ConversationRef, blob_name: str) -> int | None:
    """The segment number of a transcript blob name, or None for anything else."""
    prefix = conversation_prefix(ref)
    if not blob_name.startswith(prefix):
        return None
    match = _SEGMENT_NAME.fullmatch(blob_name[len(prefix) :])
    if match is None:
        return None
    return int(match.group(1) or 0)


def tool_call_name(ref: ConversationRef, run_id: str, call_id: str) -> str:
    return f"{_run_prefix(ref, run_id)}tool-calls/{safe_name(call_id)}.json"


def tool_task_prefix(ref: ConversationRef, run_id: str) -> str:
    return f"{_run_prefix(ref, run_id)}tool-tasks/"


def tool_task_name(ref: ConversationRef, run_id: str, call_id: str) -> str:
    return f"{tool_task_prefix(ref, run_id)}{safe_name(call_id)}.json"


def tool_output_name(ref: ConversationRef, run_id: str, call_id: str) -> str:
    return f"{_run_prefix(ref, run_id)}tool-outputs/{safe_name(call_id)}"


def checked_tool_output_name(ref: ConversationRef, output_ref: str) -> str:
    """`output_ref` if it names a tool output of this very conversation, else InvalidKey."""
    pattern = re.escape(conversation_prefix(ref)) + rf"runs/{_NAME_PART}/tool-outputs/{_NAME_PART}"
    if not isinstance(output_ref, str) or not re.fullmatch(pattern, output_ref):
        raise InvalidKey("output_ref does not name a tool output of this conversation")
    return output_ref


def run_events_name(ref: ConversationRef, run_id: str) -> str:
    return f"{_run_prefix(ref, run_id)}events.jsonl"


def input_prefix(ref: ConversationRef, run_id: str) -> str:
    """A run's questions to a person (MCP elicitations) and their answers, side by side."""
    return f"{_run_prefix(ref, run_id)}input/"


def question_name(ref: ConversationRef, run_id: str, question_id: str) -> str:
    return f"{input_prefix(ref, run_id)}{safe_name(question_id)}.question.json"


def answer_name(ref: ConversationRef, run_id: str, question_id: str) -> str:
    return f"{input_prefix(ref, run_id)}{safe_name(question_id)}.answer.json"


def summary_name(ref: ConversationRef) -> str:
    """The conversation's newest summary (a copy of its record under `summaries/`)."""
    return conversation_prefix(ref) + "summary.json"


def summary_record_name(ref: ConversationRef, first_id: str, last_id: str) -> str:
    """The summary of messages `first_id`..`last_id`: one per range, written once."""
    return f"{conversation_prefix(ref)}summaries/{safe_name(f'{first_id}..{last_id}')}.json"


def _run_prefix(ref: ConversationRef, run_id: str) -> str:
    return f"{conversation_prefix(ref)}runs/{safe_name(run_id)}/"
