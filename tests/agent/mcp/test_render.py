"""What the model reads of a tool result, and the capped form of long output."""

from __future__ import annotations

import base64
import json

import mcp_types as types

from agent.mcp.render import NO_ERROR_DETAILS, NO_OUTPUT, cap, render_full, render_text


def result(
    *content: types.ContentBlock, structured: object = None, is_error: bool = False
) -> types.CallToolResult:
    return types.CallToolResult(
        content=list(content), structured_content=structured, is_error=is_error
    )


def test_text_blocks_are_joined() -> None:
    rendered = render_text(result(types.TextContent(text="one"), types.TextContent(text="two")))
    assert rendered == "one\ntwo"


def test_binary_content_becomes_a_short_placeholder_with_its_size() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\x00" * 1230).decode()
    wav = base64.b64encode(b"R" * 10).decode()
    rendered = render_text(
        result(
            types.ImageContent(data=png, mime_type="image/png"),
            types.AudioContent(data=wav, mime_type="audio/wav"),
        )
    )
    assert rendered == "[image: image/png, 1234 bytes]\n[audio: audio/wav, 10 bytes]"


def test_embedded_text_resources_are_included_and_blobs_summarised() -> None:
    text_resource = types.EmbeddedResource(
        resource=types.TextResourceContents(
            uri="kb://topics", mime_type="text/plain", text="vacation"
        )
    )
    blob_resource = types.EmbeddedResource(
        resource=types.BlobResourceContents(
            uri="file:///a.zip",
            mime_type="application/zip",
            blob=base64.b64encode(b"z" * 7).decode(),
        )
    )
    link = types.ResourceLink(name="Report", uri="file:///r.pdf", description="the report")
    rendered = render_text(result(text_resource, blob_resource, link))
    assert rendered.splitlines() == [
        "[resource: kb://topics]",
        "vacation",
        "[resource: file:///a.zip, application/zip, 7 bytes]",
        "[resource link: Report <file:///r.pdf> - the report]",
    ]


def test_structured_content_is_shown_once() -> None:
    data = {"temperature": 21, "condition": "sunny"}
    only_structured = render_text(result(structured=data))
    assert json.loads(only_structured) == data
    echoed = render_text(
        result(types.TextContent(text=json.dumps(data, indent=2)), structured=data)
    )
    assert echoed == json.dumps(data, indent=2)
    wrapped = render_text(result(types.TextContent(text="Hello"), structured={"result": "Hello"}))
    assert wrapped == "Hello"
    summary_and_data = render_text(result(types.TextContent(text="Weather:"), structured=data))
    assert summary_and_data.splitlines()[0] == "Weather:"
    assert json.loads(summary_and_data.splitlines()[1]) == data


def test_empty_results_say_so() -> None:
    assert render_text(result()) == NO_OUTPUT
    assert render_text(result(is_error=True)) == NO_ERROR_DETAILS


def test_the_full_rendering_keeps_everything_in_wire_names() -> None:
    png = base64.b64encode(b"x" * 50).decode()
    full = json.loads(
        render_full(result(types.ImageContent(data=png, mime_type="image/png"), is_error=True))
    )
    assert full["isError"] is True
    assert full["content"][0]["data"] == png


def test_capping_keeps_the_limit_and_says_how_much_was_cut() -> None:
    text, truncated = cap("x" * 10_000, 1_000)
    assert truncated
    assert len(text) <= 1_000
    assert text.endswith("of 10000 characters]")
    shown = int(text.rsplit("showing ", 1)[1].split(" ", 1)[0])
    assert text.startswith("x" * shown) and shown > 900
    assert cap("short", 1_000) == ("short", False)
