"""The pure parts of agent.model: classification rules, retry-after parsing, config, reply shape."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from agent.errors import (
    ContentFiltered,
    PermanentModelError,
    TransientModelError,
)
from agent.model import (
    ModelReply,
    ToolCall,
    build_model_client,
    classify,
    classify_status,
    retry_after_seconds,
)
from agent.settings import ModelSettings
from devkit.fake_openai import model_settings

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


# --- retry-after ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": format_datetime(datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC), True)}, 30.0),
        ({"retry-after": format_datetime(datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC), True)}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "-5"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_from_milliseconds_seconds_or_an_http_date(
    headers: dict[str, str], expected: float | None
) -> None:
    assert retry_after_seconds(headers, now=lambda: NOW) == expected


# --- status classification --------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
def test_timeouts_conflicts_and_server_errors_are_transient(status: int) -> None:
    assert isinstance(classify_status(status, None, {}), TransientModelError)


def test_a_content_filter_is_recognised_by_its_inner_error_code_alone() -> None:
    body = {"code": "BadRequest", "innererror": {"code": "ResponsibleAIPolicyViolation"}}

    assert isinstance(classify_status(400, body, {}), ContentFiltered)


def test_a_403_is_permanent_and_keeps_the_services_reason() -> None:
    error = classify_status(
        403, {"message": "Public access is disabled."}, {}, service="Azure OpenAI"
    )

    assert isinstance(error, PermanentModelError)
    assert str(error) == "Azure OpenAI denied access (403): Public access is disabled."


def test_a_401_never_repeats_the_services_text() -> None:
    body = {"message": "Incorrect API key provided: sk-abc***xyz"}

    error = classify_status(401, body, {}, service="Azure OpenAI")

    assert isinstance(error, PermanentModelError)
    assert "sk-abc" not in str(error)
    assert str(error).startswith("Azure OpenAI rejected the credentials (401)")


def test_a_long_service_message_is_truncated() -> None:
    error = classify_status(422, {"message": "x" * 5000}, {})

    assert isinstance(error, PermanentModelError)
    assert len(str(error)) < 400


def test_classify_passes_model_errors_through_and_names_unknown_failures() -> None:
    already = TransientModelError("busy", 3)

    assert classify(already) is already
    unknown = classify(RuntimeError("secret detail"))
    assert isinstance(unknown, PermanentModelError)
    assert "secret detail" not in str(unknown)
    assert "RuntimeError" in str(unknown)


# --- config ----------------------------------------------------------------------------------


def test_the_api_key_never_appears_in_the_model_settings_repr() -> None:
    config = model_settings(
        kind="azure",
        endpoint="https://x.openai.azure.com",
        model="gpt-4o",
        api_version="2024-10-21",
        api_key="super-secret-key",
    )

    assert "super-secret-key" not in repr(config)
    assert not config.uses_managed_identity


def test_a_model_key_that_names_an_unread_secret_is_not_mistaken_for_managed_identity() -> None:
    config = ModelSettings("azure", "https://x.openai.azure.com", "gpt-4o", "v", None, 5.0)
    named = ModelSettings("azure", "https://x", "gpt-4o", "v", api_key_secret="MODEL-KEY")

    assert config.uses_managed_identity
    assert not named.uses_managed_identity
    with pytest.raises(ValueError, match="not read yet"):
        build_model_client(named)


# --- reply shape -----------------------------------------------------------------------------


def test_a_reply_round_trips_through_a_plain_dict() -> None:
    reply = ModelReply(
        content=None,
        tool_calls=[ToolCall("call_1", "demo__add", '{"a": 1}')],
        finish_reason="tool_calls",
        usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        model="gpt-4o",
    )

    assert ModelReply.from_dict(reply.to_dict()) == reply


# --- cold start ------------------------------------------------------------------------------


def test_importing_the_model_module_does_not_import_openai() -> None:
    probe = (
        "import sys, agent.model; print('openai' in sys.modules, 'azure.identity' in sys.modules)"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]
