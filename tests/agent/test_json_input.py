"""Request bodies are JSON in UTF-8 only: other encodings are refused with a detail, not guessed."""

from __future__ import annotations

import pytest

from agent.errors import BadRequest
from agent.json_input import parse_json_object

TEXT = '{"content": "grüß dich"}'


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"])
def test_a_body_in_another_encoding_is_refused(encoding: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_json_object(TEXT.encode(encoding))
    assert refused.value.status == 400
    assert "UTF-8" in refused.value.detail or "not valid JSON" in refused.value.detail


def test_a_utf16_body_is_refused_for_its_encoding() -> None:
    with pytest.raises(BadRequest, match="not UTF-8"):
        parse_json_object(TEXT.encode("utf-16"))


def test_a_utf8_body_with_non_ascii_text_is_read() -> None:
    assert parse_json_object(TEXT.encode("utf-8")) == {"content": "grüß dich"}


def test_a_utf8_byte_order_mark_is_refused() -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_json_object(b"\xef\xbb\xbf" + TEXT.encode("utf-8"))
