"""The Scheduler's parts on their own: backoff, settings, input checks, the SQLite store."""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devkit.scheduler import WEBHOOK_SECRET, scheduler_config
from samples.scheduler_mcp import RetryPolicy, SchedulerConfig, ScheduleStore
from samples.scheduler_mcp.errors import InvalidRequest, SettingsError
from samples.scheduler_mcp.validation import new_schedule, parse_endpoint, redact_endpoint

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "step"), [(1, 1), (2, 2), (3, 4), (8, 128), (9, 256), (10, 300), (30, 300)]
)
def test_the_backoff_doubles_per_attempt_up_to_the_cap_with_jitter_in_the_upper_half(
    attempts: int, step: float
):
    policy = RetryPolicy(max_attempts=8, base_seconds=1, cap_seconds=300)
    assert policy.delay(attempts, draw=0.0) == step / 2
    assert policy.delay(attempts, draw=0.999999) == pytest.approx(step, rel=1e-5)


def test_a_retry_after_lengthens_the_wait_but_never_past_the_cap():
    policy = RetryPolicy(base_seconds=1, cap_seconds=300)
    assert policy.delay(1, draw=0.0, retry_after=30) == 30
    assert policy.delay(1, draw=0.0, retry_after=10_000) == 300
    assert policy.delay(9, draw=1.0, retry_after=1) == 256  # shorter than the backoff: ignored


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"client_id": ""}, "SCHEDULER_CLIENT_ID"),
        ({"api_key": ""}, "SCHEDULER_API_KEY"),
        ({"webhook_secret": ""}, "SCHEDULER_WEBHOOK_SECRET"),
        ({"webhook_secret": "not-a-secret"}, "SCHEDULER_WEBHOOK_SECRET"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1001}, "batch_size"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"tick_seconds": 0}, "tick_seconds"),
        ({"backoff_cap_seconds": float("nan")}, "backoff_cap_seconds"),
    ],
)
def test_a_bad_setting_fails_at_startup_naming_it(
    tmp_path: Path, overrides: dict[str, object], named: str
):
    with pytest.raises(SettingsError, match=named):
        scheduler_config(tmp_path / "s.sqlite3", **overrides)


def test_secrets_come_from_the_environment_and_never_show_in_the_config_repr(tmp_path: Path):
    environ = {
        "SCHEDULER_CLIENT_ID": "client-from-env",
        "SCHEDULER_API_KEY": "key-from-env",
        "SCHEDULER_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    config = SchedulerConfig.from_env(
        environ, tmp_path / "s.sqlite3", api_key="key-from-flag", batch_size=7
    )
    assert (config.client_id, config.api_key, config.batch_size) == (
        "client-from-env",
        "key-from-flag",
        7,
    )
    shown = repr(config)
    assert "key-from-flag" not in shown and "client-from-env" not in shown
    assert base64.b64encode(b"scheduler-test-secret-32-bytes!!").decode() not in shown


# --- input checks ---------------------------------------------------------------------------


def test_an_offset_time_is_stored_in_utc():
    new = new_schedule("hi", "2026-03-02T09:30:00-05:00", "https://example.com/cb", "c1", NOW)
    assert new.scheduled_time == "2026-03-02T14:30:00+00:00"


def test_a_z_suffix_means_utc():
    new = new_schedule("hi", "2026-03-02T09:30:00Z", "https://example.com/cb", None, NOW)
    assert new.scheduled_time == "2026-03-02T09:30:00+00:00"


def test_the_fingerprint_is_the_same_for_the_same_request_even_without_a_conversation_id():
    first = new_schedule("hi", "2026-03-02T09:30:00Z", "https://example.com/cb", None, NOW)
    again = new_schedule("hi", "2026-03-02T10:30:00+01:00", "https://example.com/cb", None, NOW)
    other = new_schedule("hi!", "2026-03-02T09:30:00Z", "https://example.com/cb", None, NOW)
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert first.conversation_id != again.conversation_id  # generated each time


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://example.com/api/scheduler/callback?code=k",
        "http://127.0.0.1:7071/cb",
        "http://[::1]:80/",
    ],
)
def test_http_and_https_endpoints_are_accepted(endpoint: str):
    assert parse_endpoint(f"  {endpoint} ") == endpoint


@pytest.mark.parametrize(
    "endpoint", ["javascript:alert(1)", "https:///no-host", "http://a b/", "//x.com/cb"]
)
def test_other_endpoints_are_refused(endpoint: str):
    with pytest.raises(InvalidRequest):
        parse_endpoint(endpoint)


def test_a_redacted_endpoint_keeps_host_and_path_but_drops_the_query():
    assert redact_endpoint("https://app.azurewebsites.net/api/cb?code=abc#x") == (
        "https://app.azurewebsites.net/api/cb"
    )


# --- the store ------------------------------------------------------------------------------


def test_the_state_file_is_in_wal_mode(tmp_path: Path):
    store = ScheduleStore(tmp_path / "s.sqlite3")
    store.close()
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_due_schedules_are_claimed_once_in_batches_per_endpoint(tmp_path: Path):
    store = ScheduleStore(tmp_path / "s.sqlite3")
    now = NOW.timestamp()
    for index in range(5):
        endpoint = "https://a.example/cb" if index < 4 else "https://b.example/cb"
        new = new_schedule(f"t{index}", "2026-03-01T12:00:10Z", endpoint, f"c{index}", NOW)
        store.create(new, f"s{index}", None, now)
    ids = iter(f"d{n}" for n in range(10))
    assert store.claim_due(now, 3, lambda: next(ids)) == 0  # not due yet
    assert store.claim_due(now + 10, 3, lambda: next(ids)) == 5
    assert store.claim_due(now + 10, 3, lambda: next(ids)) == 0  # already claimed
    deliveries = store.ready_deliveries(now + 10)
    assert sorted((d.endpoint, len(d.items)) for d in deliveries) == [
        ("https://a.example/cb", 1),
        ("https://a.example/cb", 3),
        ("https://b.example/cb", 1),
    ]
    store.close()


def test_the_scheduler_and_the_app_agree_on_the_callback_event_type() -> None:
    # Two deployables, one wire contract: the Scheduler keeps its own copy of the type.
    from agent.webhooks import CALLBACK_TYPE as APP_TYPE
    from samples.scheduler_mcp.dispatcher import CALLBACK_TYPE

    assert CALLBACK_TYPE == APP_TYPE


def test_a_mistyped_webhook_secret_is_refused_though_the_signing_library_would_take_it() -> None:
    from samples.scheduler_mcp.signing import Signer

    with pytest.raises(SettingsError, match="not valid base64"):
        Signer(WEBHOOK_SECRET + "!")
