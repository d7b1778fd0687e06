"""Tool names the model sees: `server__tool`, valid as OpenAI function names.

OpenAI requires `^[a-zA-Z0-9_-]{1,64}$`. A name that needs changing (other characters, or too
long) gets a short hash of the original appended, so two tools never collapse into one name and
the same tool always gets the same name (in every process: the model may see the name in one
worker and call it in another).
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME_CHARS = 64
SEPARATOR = "__"
VALID_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_CHARS = 8


def exposed_tool_name(server: str, tool: str) -> str:
    """The deterministic model-facing name of `tool` on `server`."""
    natural = f"{server}{SEPARATOR}{tool}"
    if VALID_NAME.match(natural):
        return natural
    digest = hashlib.sha256(f"{server}\x00{tool}".encode()).hexdigest()[:_HASH_CHARS]
    cleaned = _INVALID_CHARS.sub("_", natural)
    return f"{cleaned[: MAX_NAME_CHARS - _HASH_CHARS - 1]}_{digest}"


def candidate_servers(exposed_name: str, servers: list[str]) -> list[str]:
    """Servers whose tools could carry this name (its prefix), longest server name first."""
    matching = [s for s in servers if exposed_name.startswith(f"{s}{SEPARATOR}")]
    # A name truncated with a hash may keep only part of the server name: then any server may own it.
    return sorted(matching, key=len, reverse=True) or list(servers)
