"""The retry schedule (agent.backoff) and the settings that shape it."""

from __future__ import annotations

import json
from pathlib import Path

import azure.core.exceptions
import pytest

from agent import backoff, errors
from agent.backoff import JITTER, NOT_RETRIED, Backoff, retryable
from agent.contracts import ChatTurnInput, RunRef
from agent.settings import Settings
from local_host.activities import activity_failure

ROOT = Path(__file__).resolve().parents[2]
KEY = "instance-1/model_step/1/0"


def nominal(policy: Backoff, attempt: int) -> float:
    return min(policy.max_delay_seconds, policy.base_seconds * policy.factor ** (attempt - 1))


def test_the_delays_double_from_the_base_until_the_cap_and_never_exceed_it():
    policy = Backoff(attempts=8, base_seconds=1, max_delay_seconds=10)
    delays = policy.schedule(KEY)
    assert len(delays) == 7  # one wait between each two attempts
    for attempt, delay in enumerate(delays, start=1):
        assert nominal(policy, attempt) * (1 - JITTER) <= delay <= nominal(policy, attempt)
    assert [nominal(policy, n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]
    assert delays[:4] == sorted(delays[:4]) and len(set(delays[:4])) == 4  # grows to the cap
    assert max(delays) <= 10


def test_the_same_instance_task_and_attempt_always_get_the_same_delay():
    policy = Backoff(attempts=5)
    assert policy.schedule(KEY) == policy.schedule(KEY)
    assert Backoff(attempts=5).delay(3, KEY) == policy.delay(3, KEY)


def test_instances_that_failed_together_spread_their_retries():
    policy = Backoff(attempts=2, base_seconds=10)
    delays = {policy.delay(1, f"instance-{n}/tool_call/a") for n in range(50)}
    assert len(delays) > 40
    assert min(delays) < 9 < max(delays)  # spread over the jitter band (8–10 s)


def test_a_huge_attempt_number_is_still_a_capped_delay():
    assert Backoff(attempts=1000, max_delay_seconds=5).delay(999, KEY) <= 5


def test_the_jitter_hash_is_fixed_not_pythons_salted_hash():
    # Another worker process must compute the same timers when it replays the instance:
    # SHA-256("a") starts ca978112ca1bbdca, and 0xca978112ca1bbdca / 2**64 = 0.79137...
    assert backoff.unit_hash("a") == int("ca978112ca1bbdca", 16) / 2**64


def failure_text(exc: Exception) -> str:
    """The text the orchestrator sees for an activity that raised `exc` (Reason + Details)."""
    failed = activity_failure("model_step", exc)
    return f"{failed.failure_reason} \n {failed.failure_details}"


@pytest.mark.parametrize(
    "exc",
    [
        errors.PermanentModelError("Azure OpenAI refused the request (400 invalid_request)"),
        errors.ContentFiltered("the prompt was filtered"),
        errors.InvalidSettings((errors.SettingsError("MCP_SERVERS", "is not JSON"),)),
        errors.SettingsError("MCP_SERVERS", "server demo: unknown secret"),
        azure.core.exceptions.ClientAuthenticationError("Server failed to authenticate"),
    ],
    ids=type,
)
def test_content_filter_bad_request_auth_and_settings_failures_are_not_retried(exc):
    assert not retryable(failure_text(exc))


@pytest.mark.parametrize(
    "exc",
    [
        errors.TransientModelError("Azure OpenAI failed (503)"),
        errors.ToolTransportError("server demo: connection refused"),
        errors.ToolTimeout("server demo did not answer within 30 s"),
        errors.Conflict("conversation c1 is busy with another turn"),
        RuntimeError("the blob service did not answer"),
    ],
    ids=type,
)
def test_transient_failures_are_retried(exc):
    assert retryable(failure_text(exc))


def test_the_azure_hosts_failure_shape_is_recognised_too():
    # The Functions host wraps the worker's "Type: message" in its RpcException text.
    azure_text = (
        "Activity function 'model_step' failed: Result: Failure\n"
        "Exception: PermanentModelError: Azure OpenAI refused the request (400)\n"
        'Stack:   File "/home/site/wwwroot/agent/activities.py", line 120'
    )
    assert not retryable(azure_text)
    assert retryable(azure_text.replace("PermanentModelError", "TransientModelError"))


def test_a_traceback_line_naming_an_error_class_does_not_count_as_that_failure():
    text = "RuntimeError: boom\n  File x.py, line 3\n    except ContentFiltered:\n"
    assert retryable(text)


def test_every_failure_not_retried_names_a_real_exception_class():
    known = {cls.__name__ for cls in vars(errors).values() if isinstance(cls, type)}
    known |= {cls.__name__ for cls in vars(azure.core.exceptions).values() if isinstance(cls, type)}
    assert set(NOT_RETRIED) <= known


# --- the operator's settings ------------------------------------------------------------------


def example_values() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.example.json").read_text())["Values"]


def test_the_retry_settings_reach_the_model_and_tool_policies():
    values = {
        **example_values(),
        "AGENT_RETRY_BASE_SECONDS": "0.5",
        "AGENT_RETRY_MAX_DELAY_SECONDS": "8",
        "AGENT_MODEL_MAX_ATTEMPTS": "6",
        "AGENT_TOOL_MAX_ATTEMPTS": "2",
    }
    limits = Settings.from_env(values).limits
    assert limits.model_retry == Backoff(6, base_seconds=0.5, max_delay_seconds=8)
    assert limits.tool_retry == Backoff(2, base_seconds=0.5, max_delay_seconds=8)


def test_without_retry_settings_the_documented_defaults_apply():
    values = {k: v for k, v in example_values().items() if "RETRY" not in k and "ATTEMPTS" not in k}
    limits = Settings.from_env(values).limits
    assert limits.model_retry.schedule("k") == Backoff(4, 1.0, 30.0).schedule("k")
    assert (limits.model_retry.attempts, limits.tool_retry.attempts) == (4, 3)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("AGENT_RETRY_BASE_SECONDS", "soon", "must be a number"),
        ("AGENT_RETRY_BASE_SECONDS", "0", "must be at least 0.1"),
        ("AGENT_RETRY_MAX_DELAY_SECONDS", "86400", "must be at most 3600"),
        ("AGENT_MODEL_MAX_ATTEMPTS", "0", "must be between 1 and 20"),
        ("AGENT_TOOL_MAX_ATTEMPTS", "many", "must be an integer"),
    ],
)
def test_a_bad_retry_setting_is_refused_naming_it(name, value, problem):
    with pytest.raises(errors.InvalidSettings) as caught:
        Settings.from_env({**example_values(), name: value})
    assert f"setting {name}: {problem}" in str(caught.value)


def test_a_new_turn_carries_the_operators_retry_settings_to_its_orchestrator():
    values = {
        **example_values(),
        "AGENT_RETRY_MAX_DELAY_SECONDS": "8",
        "AGENT_TOOL_MAX_ATTEMPTS": "5",
    }
    limits = Settings.from_env(values).limits
    turn = ChatTurnInput.starting(RunRef("user:a", "c1", "r1", 1), limits, 0)
    again = ChatTurnInput.from_dict(turn.to_dict())  # as it travels through Durable history
    assert again.tool_retry == Backoff(5, max_delay_seconds=8)
    assert again.model_retry == limits.model_retry


def test_a_turn_input_from_before_the_retry_settings_reads_with_the_defaults():
    old = {"owner": "user:a", "conversation_id": "c1", "run_id": "r1", "turn": 1}
    turn = ChatTurnInput.from_dict({**old, "max_steps": 4, "max_tokens_per_run": 10})
    assert (turn.model_retry, turn.tool_retry) == (backoff.MODEL_BACKOFF, backoff.TOOL_BACKOFF)
