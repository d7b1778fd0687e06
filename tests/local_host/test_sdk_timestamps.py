"""The Durable SDK's history timestamps, parsed on the host's fast path as dateutil would."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone

from dateutil.parser import parse as dateutil_parse

from local_host import sdk_timestamps
from local_host.history import format_timestamp


def test_the_hosts_timestamps_parse_to_what_dateutil_gives_tzinfo_included() -> None:
    start = datetime(2026, 12, 2, 3, 24, 10, 0, tzinfo=UTC)
    for moment in (start, start + timedelta(microseconds=1), start + timedelta(days=400.123)):
        text = format_timestamp(moment)
        fast, slow = sdk_timestamps.parse_history_timestamp(text), dateutil_parse(text)
        assert fast == slow == moment
        assert type(fast.tzinfo) is type(slow.tzinfo)
        assert fast.utcoffset() == slow.utcoffset()


def test_other_shapes_go_to_dateutil_unchanged() -> None:
    for text in (
        "2026-12-02T03:24:10.1234567Z",
        "2026-12-02T03:24:10Z",
        "2026-12-02 03:24:10+02:00",
    ):
        assert sdk_timestamps.parse_history_timestamp(text) == dateutil_parse(text)


def test_installing_gives_the_sdks_history_events_the_fast_parser() -> None:
    sdk_timestamps.install()  # each episode does (local_host.engine.run_episode)
    module = sys.modules["azure.durable_functions.models.history.HistoryEvent"]
    assert module.dt_parse is sdk_timestamps.parse_history_timestamp
    text = format_timestamp(datetime(2026, 12, 2, tzinfo=UTC))
    event = module.HistoryEvent(EventType=12, EventId=-1, IsPlayed=True, Timestamp=text)
    assert event.timestamp == dateutil_parse(text)


def test_the_hosts_timestamps_are_the_text_strftime_wrote_for_any_zone_and_year() -> None:
    """format_timestamp takes a faster way to the same text (#16: CPU per episode)."""
    start = datetime(2026, 12, 2, 3, 24, 10, 0, tzinfo=UTC)
    moments = [
        start + timedelta(seconds=s, microseconds=m) for s in (0, 59, 86399) for m in (0, 1, 999999)
    ]
    moments += [
        datetime(2026, 12, 2, 1, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 12, 31, 23, 59, 59, 500000, tzinfo=timezone(timedelta(hours=-8))),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # strftime does not pad years before 1000
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime.now(UTC),
    ]
    for moment in moments:
        assert format_timestamp(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
