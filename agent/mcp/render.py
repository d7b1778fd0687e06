"""Turn an MCP tool result into what the model reads, and into a complete record for storage.

The model gets text: text blocks as they are, structured content as JSON (unless a text block
already carries it), embedded text resources with their URI, and short placeholders for binary
content (`[image: image/png, 1234 bytes]`); a model cannot use base64 and it would eat the context.
The full record keeps everything, as JSON, for Blob storage.
"""

from __future__ import annotations

import binascii
import json
from typing import Any, assert_never

import mcp_types as types

NO_OUTPUT = "(the tool returned no output)"
NO_ERROR_DETAILS = "(the tool reported an error without details)"


def decoded_size(data: str) -> int:
    """Bytes encoded by a base64 string, without decoding it."""
    try:
        return len(binascii.a2b_base64(data.encode("ascii"), strict_mode=False))
    except (binascii.Error, UnicodeEncodeError):
        return (len(data) * 3) // 4


def _block_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent):
        return f"[image: {block.mime_type}, {decoded_size(block.data)} bytes]"
    if isinstance(block, types.AudioContent):
        return f"[audio: {block.mime_type}, {decoded_size(block.data)} bytes]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return f"[resource: {resource.uri}]\n{resource.text}"
        mime = f"{resource.mime_type}, " if resource.mime_type else ""
        return f"[resource: {resource.uri}, {mime}{decoded_size(resource.blob)} bytes]"
    if isinstance(block, types.ResourceLink):
        about = f" - {block.description}" if block.description else ""
        return f"[resource link: {block.name} <{block.uri}>{about}]"
    # The SDK validates content against these five kinds, so no other block reaches here; when
    # it learns a new kind, the type checker points at this line.
    assert_never(block)


def _parses_to(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def _structured_is_repeated(structured: Any, texts: list[str]) -> bool:
    """Servers are asked to repeat structured content as a JSON text block; don't show it twice."""
    if any(_parses_to(text, structured) for text in texts):
        return True
    # Python SDK servers wrap a plain return value as {"result": value} next to its text.
    if isinstance(structured, dict) and set(structured) == {"result"}:
        joined = "\n".join(texts)
        value = structured["result"]
        return joined == value or _parses_to(joined, value)
    return False


def render_text(result: types.CallToolResult) -> str:
    """What the model sees for this result (not yet capped)."""
    parts = [_block_text(block) for block in result.content]
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    structured = result.structured_content
    if structured is not None and not _structured_is_repeated(structured, texts):
        parts.append(json.dumps(structured, ensure_ascii=False, separators=(",", ":")))
    text = "\n".join(part for part in parts if part)
    if text:
        return text
    return NO_ERROR_DETAILS if result.is_error else NO_OUTPUT


def render_full(result: types.CallToolResult) -> str:
    """The complete result as JSON (MCP wire field names), for storage."""
    return result.model_dump_json(by_alias=True, exclude_none=True)


def cap(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to at most `limit` characters with a marker saying so; (text, truncated)."""
    if len(text) <= limit:
        return text, False
    marker = f"\n[output truncated: showing {{shown}} of {len(text)} characters]"
    shown = max(limit - len(marker.format(shown=limit)), 0)
    return text[:shown] + marker.format(shown=shown), True
