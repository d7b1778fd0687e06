"""How often a task is polled (`agent.mcp.tasks.poll_delay`): each poll is a durable timer and
an activity in the run's history, so a long task must cost tens of rounds, not thousands."""

from __future__ import annotations

from agent.mcp.tasks import DEFAULT_POLL_MAX_SECONDS, DEFAULT_TASK_TIMEOUT_SECONDS, poll_delay


def rounds_until(timeout_seconds: float, poll_interval_ms: int | None) -> int:
    waited, polls = 0.0, 0
    while waited < timeout_seconds:
        waited += poll_delay(poll_interval_ms, polls, DEFAULT_POLL_MAX_SECONDS)
        polls += 1
    return polls


def test_an_hour_long_task_with_a_one_second_server_interval_takes_tens_of_rounds():
    assert rounds_until(DEFAULT_TASK_TIMEOUT_SECONDS, 1_000) == 65


def test_an_hour_long_task_on_a_silent_server_takes_as_many_rounds():
    assert rounds_until(DEFAULT_TASK_TIMEOUT_SECONDS, None) == 65


def test_the_server_interval_is_the_shortest_wait_and_the_backoff_passes_it():
    waits = [poll_delay(5_000, polls, DEFAULT_POLL_MAX_SECONDS) for polls in range(8)]
    assert waits == [5.0, 5.0, 5.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_a_server_interval_beyond_the_maximum_is_capped():
    assert poll_delay(600_000, 0, DEFAULT_POLL_MAX_SECONDS) == DEFAULT_POLL_MAX_SECONDS
