"""The SDK's DurableOrchestrationClient works unchanged against the host's management API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import (
    OrchestrationRuntimeStatus as Status,
)

from local_host.host import LocalHost

from .conftest import TERMINAL

pytestmark = pytest.mark.asyncio


async def _finished(host: LocalHost, instance_id: str) -> str:
    record = await host.runtime.wait_for_status(instance_id, TERMINAL, within=10)
    return str(record.runtime_status)


async def test_start_new_then_get_status_reports_input_output_and_times(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    instance_id = await client.start_new("sequence", "status-1", ["Oslo"])
    assert instance_id == "status-1"
    assert await _finished(durable_host, instance_id) == "Completed"
    status = await client.get_status(instance_id)
    assert status.runtime_status == Status.Completed
    assert status.output == ["Hello Oslo!"]
    assert status.name == "sequence"
    # As on Azure, the input comes back as the JSON text the client posted.
    assert json.loads(status._input) == ["Oslo"]
    assert status.created_time <= status.last_updated_time


async def test_a_generated_instance_id_is_a_guid_string(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    instance_id = await client.start_new("sequence", None, ["X"])
    assert len(instance_id) == 32 and int(instance_id, 16) >= 0
    assert await _finished(durable_host, instance_id) == "Completed"


async def test_status_with_history_lists_the_completed_activities(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    instance_id = await client.start_new("sequence", "history-1", ["A", "B"])
    await _finished(durable_host, instance_id)
    status = await client.get_status(instance_id, show_history=True, show_history_output=True)
    events = status.historyEvents  # the extension's property name, set as an attribute by the SDK
    completed = [e for e in events if e["EventType"] == "TaskCompleted"]
    assert [(e["FunctionName"], e["Result"]) for e in completed] == [
        ("say_hello", "Hello A!"),
        ("say_hello", "Hello B!"),
    ]
    assert events[0]["EventType"] == "ExecutionStarted"
    assert events[-1] == {
        **events[-1],
        "EventType": "ExecutionCompleted",
        "OrchestrationStatus": "Completed",
    }


async def test_an_unknown_instance_has_a_falsy_status(
    client: df.DurableOrchestrationClient,
) -> None:
    status = await client.get_status("no-such-instance")
    assert not status


async def test_starting_an_instance_id_that_is_running_fails(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    await client.start_new("wait_forever", "running-1")
    with pytest.raises(Exception, match="already exists"):
        await client.start_new("wait_forever", "running-1")
    await client.terminate("running-1", "test cleanup")
    assert await _finished(durable_host, "running-1") == "Terminated"


async def test_a_finished_instance_id_can_be_started_again(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    await client.start_new("sequence", "again-1", ["1"])
    await _finished(durable_host, "again-1")
    await client.start_new("sequence", "again-1", ["2"])
    assert await _finished(durable_host, "again-1") == "Completed"
    assert (await client.get_status("again-1")).output == ["Hello 2!"]


async def test_starting_an_unknown_orchestrator_raises_a_clean_error(
    client: df.DurableOrchestrationClient,
) -> None:
    with pytest.raises(Exception, match="doesn't exist"):
        await client.start_new("no_such_orchestrator")


async def test_raise_event_resumes_a_waiting_orchestration(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    instance_id = await client.start_new("approval", "approval-1")
    await durable_host.runtime.wait_for_status(instance_id, {"Running"}, within=10)
    assert (await client.get_status(instance_id)).custom_status == "waiting for approval"
    await client.raise_event(instance_id, "approval", {"approved": True})
    assert await _finished(durable_host, instance_id) == "Completed"
    status = await client.get_status(instance_id)
    # Azure delivers raise_event data to the orchestrator as its JSON text (a str).
    assert json.loads(status.output["decision"]) == {"approved": True}
    assert status.custom_status == "decided"


async def test_raise_event_on_unknown_or_finished_instances_fails(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    with pytest.raises(Exception, match="No instance"):
        await client.raise_event("nobody", "approval", 1)
    await client.start_new("sequence", "gone-1", ["x"])
    await _finished(durable_host, "gone-1")
    with pytest.raises(Exception, match="is gone"):
        await client.raise_event("gone-1", "approval", 1)


async def test_terminate_stops_a_running_instance_with_the_reason_as_output(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    instance_id = await client.start_new("wait_forever", "terminate-1")
    await durable_host.runtime.wait_for_status(instance_id, {"Running"}, within=10)
    await client.terminate(instance_id, "no longer needed")
    assert await _finished(durable_host, instance_id) == "Terminated"
    status = await client.get_status(instance_id)
    assert status.runtime_status == Status.Terminated
    assert status.output == "no longer needed"
    await client.terminate(instance_id, "again")  # 410 Gone is not an error for the SDK


async def test_purge_deletes_a_finished_instance(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    await client.start_new("sequence", "purge-1", ["p"])
    await _finished(durable_host, "purge-1")
    assert (await client.purge_instance_history("purge-1")).instances_deleted == 1
    assert not await client.get_status("purge-1")
    assert (await client.purge_instance_history("purge-1")).instances_deleted == 0


async def test_purge_refuses_a_running_instance(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    await client.start_new("wait_forever", "purge-running-1")
    with pytest.raises(Exception, match="412"):
        await client.purge_instance_history("purge-running-1")
    await client.terminate("purge-running-1", "cleanup")
    await _finished(durable_host, "purge-running-1")


async def test_status_queries_filter_by_status_and_prefix(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    await client.start_new("sequence", "query-a", ["1"])
    await client.start_new("wait_forever", "query-b")
    await _finished(durable_host, "query-a")
    await durable_host.runtime.wait_for_status("query-b", {"Running"}, within=10)
    running = await client.get_status_by(
        runtime_status=[Status.Running], instance_id_prefix="query-"
    )
    assert [s.instance_id for s in running] == ["query-b"]
    everything = {s.instance_id for s in await client.get_status_all()}
    assert {"query-a", "query-b"} <= everything
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await client.get_status_by(created_time_from=later) == []
    await client.terminate("query-b", "cleanup")
    await _finished(durable_host, "query-b")


async def test_purge_by_filter_deletes_terminal_instances(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    await client.start_new("sequence", "bulk-purge-1", ["1"])
    await _finished(durable_host, "bulk-purge-1")
    result = await client.purge_instance_history_by(
        created_time_from=since, runtime_status=[Status.Completed]
    )
    assert result.instances_deleted >= 1
    assert not await client.get_status("bulk-purge-1")


async def test_check_status_response_points_at_this_host(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    request = func.HttpRequest("POST", f"{durable_host.base_url}/api/x", body=b"")
    response = client.create_check_status_response(request, "links-1")
    payload = json.loads(response.get_body())
    assert response.status_code == 202
    assert payload["id"] == "links-1"
    assert payload["statusQueryGetUri"].startswith(
        f"{durable_host.base_url}/runtime/webhooks/durabletask/instances/links-1?taskHub=LocalHostTests"
    )
    assert response.headers["Location"] == payload["statusQueryGetUri"]


async def test_management_urls_work_over_plain_http(
    durable_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{durable_host.base_url}/api/orchestrators/sequence", json=["Rome"]
    ) as response:
        assert response.status == 202
        payload = await response.json()
    await _finished(durable_host, payload["id"])
    async with http.get(payload["statusQueryGetUri"]) as response:
        assert response.status == 200
        body = await response.json()
    assert (body["runtimeStatus"], body["output"]) == ("Completed", ["Hello Rome!"])


async def test_wait_for_completion_returns_the_output(
    durable_host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{durable_host.base_url}/api/run/fan_out_fan_in", json=4) as response:
        assert response.status == 200
        assert await response.json() == {"sum": 12, "count": 4}


async def test_a_running_instance_status_is_202_with_location(
    durable_host: LocalHost, client: df.DurableOrchestrationClient, http: aiohttp.ClientSession
) -> None:
    await client.start_new("wait_forever", "running-status-1")
    await durable_host.runtime.wait_for_status("running-status-1", {"Running"}, within=10)
    url = f"{durable_host.base_url}/durabletask/instances/running-status-1"
    async with http.get(url, headers={"x-functions-key": durable_host.system_key}) as response:
        assert response.status == 202
        assert response.headers["Location"] == url
        assert (await response.json())["runtimeStatus"] == "Running"
    await client.terminate("running-status-1", "cleanup")
    await _finished(durable_host, "running-status-1")


async def test_an_invalid_instance_id_is_refused(client: df.DurableOrchestrationClient) -> None:
    with pytest.raises(Exception, match="must not start with @"):
        await client.start_new("sequence", "@reserved-for-entities")


async def test_an_activity_with_a_durable_client_binding_gets_a_working_client(
    durable_host: LocalHost, client: df.DurableOrchestrationClient
) -> None:
    await client.start_new("wait_forever", "asked-about")
    await durable_host.runtime.wait_for_status("asked-about", {"Running"}, within=10)
    await client.terminate("asked-about", "done waiting")
    await durable_host.runtime.wait_for_status("asked-about", TERMINAL, within=10)

    instance_id = await client.start_new("ask_status", None, "asked-about")
    assert await _finished(durable_host, instance_id) == "Completed"
    assert (await client.get_status(instance_id)).output == "Terminated"
