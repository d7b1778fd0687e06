"""History timestamps the Durable SDK reads without its general date parser.

The Python SDK builds a `HistoryEvent` for every event of every episode's history and parses
its `Timestamp` with `dateutil.parser.parse`, a general parser (tokenizer, fuzzy matching) that
took about half of an episode's CPU under a batch. The timestamps this host writes all have one
shape (`history.format_timestamp`: `YYYY-MM-DDTHH:MM:SS.ffffffZ`), which the standard library
parses in a fraction of that time. So the host, which runs the worker's SDK in its own process,
gives the SDK's history module a parser that takes that exact shape on the fast path and hands
everything else (histories written elsewhere: goldens from Azure with seven digits, offsets) to
dateutil unchanged. The result equals what dateutil returns, `tzinfo` included (dateutil reads
"Z" as `tzlocal()` where the machine's zone is UTC, else `tzutc()`: the fast path takes its
`tzinfo` from dateutil itself), so orchestrator code sees no difference. Nothing on disk is
patched; on Azure the worker keeps dateutil.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from typing import Any

# python-dateutil (the SDK's dependency) ships no types: this is the one name used from it.
from dateutil.parser import parse as dateutil_parse  # type: ignore[import-untyped]

_HISTORY_MODULE = "azure.durable_functions.models.history.HistoryEvent"
# Exactly what `history.format_timestamp` writes (strftime "%Y-%m-%dT%H:%M:%S.%fZ").
_HOST_SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def parse_history_timestamp(text: Any, *args: Any, **kwargs: Any) -> datetime:
    """`dateutil.parser.parse`, with this host's timestamp shape parsed by the standard library."""
    if not args and not kwargs and isinstance(text, str) and _HOST_SHAPE.fullmatch(text):
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=_utc_as_dateutil_reads_it())
    return dateutil_parse(text, *args, **kwargs)  # type: ignore[no-any-return]


def _utc_as_dateutil_reads_it() -> Any:
    """The `tzinfo` dateutil gives a "Z" timestamp in this process (it depends on the local
    zone's name, read once: `time.tzset` at run time is not followed)."""
    global _UTC_TZINFO
    if _UTC_TZINFO is None:
        _UTC_TZINFO = dateutil_parse("2000-01-01T00:00:00.000000Z").tzinfo
    return _UTC_TZINFO


_UTC_TZINFO: Any = None


def install() -> None:
    """Give the SDK's history events the parser above (idempotent)."""
    if _HISTORY_MODULE not in sys.modules:
        __import__(_HISTORY_MODULE)
    module = sys.modules[_HISTORY_MODULE]
    if getattr(module, "dt_parse", None) is not parse_history_timestamp:
        module.dt_parse = parse_history_timestamp  # type: ignore[attr-defined]
