"""The objects the host hands to user functions look like the Python worker's."""

from __future__ import annotations

import pytest

from local_host.invocation import InvocationContext
from local_host.payloads import converter


def test_a_first_attempt_sees_an_empty_retry_exception_like_the_workers() -> None:
    exception = InvocationContext("id-1", "hello", "/app").retry_context.exception
    assert (exception.source, exception.message, exception.stack_trace) == ("", "", "")


def test_the_activity_trigger_converter_round_trips_a_value() -> None:
    activity = converter("activityTrigger")
    datum = activity.encode({"n": 1}, expected_type=None)
    assert activity.decode(datum, trigger_metadata=None) == {"n": 1}


def test_an_unknown_binding_type_names_itself_instead_of_failing_on_none() -> None:
    with pytest.raises(RuntimeError, match="'queueTrigger-nope'"):
        converter("queueTrigger-nope")
