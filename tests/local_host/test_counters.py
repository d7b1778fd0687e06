"""The host counts the durable work it runs: episodes, activities, history events and bytes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import azure.durable_functions as df

from local_host.host import LocalHost

from .conftest import DURABLE_APP, TERMINAL


async def _run_counted(
    host: LocalHost, client: df.DurableOrchestrationClient, instance_id: str, cities: list[str]
) -> Counter[str]:
    before = host.runtime.counters.snapshot()
    await client.start_new("sequence", instance_id, cities)
    await host.runtime.wait_for_status(instance_id, TERMINAL, within=10)
    return host.runtime.counters.snapshot() - before


async def test_a_sequence_of_three_activities_counts_four_episodes_and_three_activities(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    cost = await _run_counted(durable_host, client, "counted-seq-3", ["a", "b", "c"])
    # One episode to start, one per completed activity (the last one completes the instance).
    assert cost["episodes"] == cost["episodes:sequence"] == 4
    assert cost["activities"] == cost["activities:say_hello"] == 3


async def test_the_history_counts_match_the_history_the_host_stored(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    cost = await _run_counted(durable_host, client, "counted-seq-2", ["a", "b"])
    history = durable_host.runtime.load_history("counted-seq-2")
    assert cost["history_events"] == len(history)
    assert cost["history_bytes"] == sum(len(json.dumps(event)) for event in history)


async def test_each_episode_counts_the_history_it_replays(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    one = await _run_counted(durable_host, client, "counted-seq-1", ["a"])
    three = await _run_counted(durable_host, client, "counted-seq-3b", ["a", "b", "c"])
    # Episode k replays what episodes 1..k-1 appended: more steps, more than linear growth.
    assert 0 < one["replayed_events"] < one["history_events"]
    assert three["replayed_events"] > 3 * one["replayed_events"]
    assert three["replayed_bytes"] > 3 * one["replayed_bytes"] > 0


async def test_each_host_has_its_own_counters(
    durable_host: LocalHost, client: df.DurableOrchestrationClient, tmp_path: Path
) -> None:
    await _run_counted(durable_host, client, "counted-seq-own", ["a"])
    assert durable_host.runtime.counters.snapshot()["episodes"] > 0
    async with LocalHost(DURABLE_APP, port=0, state_path=tmp_path / "other.sqlite3") as other:
        assert other.runtime.counters.snapshot() == Counter()
