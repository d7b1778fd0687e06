"""The cost ledger: what a turn, a step or a scheduled item costs in counts, not milliseconds.

Two sources, both deterministic for a given run:

- the local host's `DurableCounters` (episodes, activities, history events; see
  `local_host.counters`);
- `BlobRequestCounter`, an azure-core pipeline policy on the app's Blob client: requests by
  kind (`blob:get`, `blob:put`, `blob:append`, `blob:list`, `blob:delete`, `blob:head`, other
  operations as `blob:<method>:<comp>`), `blob:failed:<kind>:<status>` for answers of 400 and
  above (lost conditional writes show up here), `blob_bytes_written` (request bodies) and
  `blob_bytes_read` (response bodies).

    counter = BlobRequestCounter()
    await install_counting_runtime(counter)      # the app's runtime, with the policy on Blob
    ledger = Ledger(host.runtime.counters, counter)
    before = ledger.snapshot()
    ...                                          # one turn
    cost = ledger.snapshot() - before            # a Counter: cost["activities"], cost["blob:get"]
    print(format_table({"turn": cost}, per={"step": 20}))
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from agent import runtime as app_runtime
from agent.runtime import Runtime
from local_host.counters import DurableCounters

# The Blob operations a GET/PUT with this `comp` is (the rest keep `<method>:<comp>`).
_NAMED_COMPS = {("GET", "list"): "list", ("PUT", "appendblock"): "append"}
_BODILESS_ANSWERS = {"HEAD"}  # Content-Length of a HEAD answer is the blob's size, not read


# Kept: the lean path tells a request's method and URL twice (sent, answered), and a blob's
# requests repeat them; the parse is most of what counting a request costs the benchmarks.
@functools.lru_cache(maxsize=4096)
def request_kind(method: str, url: str) -> str:
    """`get`, `put`, `append`, `list`, `delete`, `head`, or `<method>:<comp|restype>`."""
    method = method.upper()
    query = parse_qs(urlsplit(url).query)
    comp = query.get("comp", [""])[0].lower()
    if comp:
        return _NAMED_COMPS.get((method, comp), f"{method.lower()}:{comp}")
    restype = query.get("restype", [""])[0].lower()
    return f"{method.lower()}:{restype}" if restype else method.lower()


class BlobRequestCounter(SansIOHTTPPolicy[Any, Any]):
    """Counts every request the Blob client sends (retries included) and the bytes each way.

    A policy on the SDK's pipeline, and a `storage.blob_rest.RequestObserver` of the lean
    path (`on_lean_*`): the same request counts the same whichever path sent it."""

    def __init__(self, trace: bool = False) -> None:
        self._counts: Counter[str] = Counter()
        # With `trace`, each request as (kind, blob path): to find which requests a cut removes.
        self.trace: list[tuple[str, str]] | None = [] if trace else None

    def on_request(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        request.context["ledger_kind"] = self._sent(http.method, http.url, _body_size(http))

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        http = response.http_response
        method = request.http_request.method.upper()
        read = 0 if method in _BODILESS_ANSWERS else _answer_size(http)
        self._answered(request.context.get("ledger_kind", "?"), http.status_code, read)

    def on_lean_request(self, method: str, url: str, body_size: int) -> None:
        self._sent(method, url, body_size)

    def on_lean_response(self, method: str, url: str, status: int, answer_size: int) -> None:
        self._answered(request_kind(method, url), status, answer_size)

    def _sent(self, method: str, url: str, body_size: int) -> str:
        kind = request_kind(method, url)
        if self.trace is not None:
            self.trace.append((kind, urlsplit(url).path))
        self._counts.update(
            {"blob_requests": 1, f"blob:{kind}": 1, "blob_bytes_written": body_size}
        )
        return kind

    def _answered(self, kind: str, status: int, read: int) -> None:
        if status >= 400:
            self._counts[f"blob:failed:{kind}:{status}"] += 1
        self._counts["blob_bytes_read"] += read

    def snapshot(self) -> Counter[str]:
        return Counter(self._counts)


def _body_size(http: Any) -> int:
    length = http.headers.get("Content-Length")
    if length is not None:
        return int(length)
    body = http.body
    return len(body) if isinstance(body, bytes | bytearray | str) else 0


def _answer_size(http: Any) -> int:
    """The header first: a download is still an unread stream here. Chunked answers (a listing)
    have no header but are read already, unless streamed: those stay uncounted (none we use)."""
    length = http.headers.get("Content-Length")
    if length is not None:
        return int(length)
    try:
        return len(http.body())
    except ValueError:  # azure-core's "body is not available": a stream, not read yet
        return 0


class Ledger:
    """The host's durable counts and the Blob counts, read together."""

    def __init__(self, durable: DurableCounters, blob: BlobRequestCounter) -> None:
        self._durable = durable
        self._blob = blob

    def snapshot(self) -> Counter[str]:
        return self._durable.snapshot() + self._blob.snapshot()


async def install_counting_runtime(counter: BlobRequestCounter) -> Runtime:
    """Build the app's runtime (from the current settings) with `counter` on its Blob client and
    make it the process's runtime; the caller closes it (`runtime.current().aclose()`)."""
    app_runtime.use_runtime(None)
    built = await app_runtime.build_runtime(app_runtime.settings(), blob_policies=(counter,))
    app_runtime.use_runtime(built)
    return built


# Rows of the printed table, in this order; `<prefix>*` rows expand to every key found.
TABLE_ROWS = (
    "activities",
    "activities:*",
    "episodes",
    "episodes:*",
    "history_events",
    "history_bytes",
    "replayed_events",
    "replayed_bytes",
    "blob_requests",
    "blob:*",
    "blob_bytes_read",
    "blob_bytes_written",
)


def table_keys(columns: Mapping[str, Counter[str]]) -> list[str]:
    found = set().union(*columns.values()) if columns else set()
    keys: list[str] = []
    for row in TABLE_ROWS:
        if row.endswith("*"):
            keys += sorted(k for k in found if k.startswith(row[:-1]))
        else:
            keys.append(row)
    return keys


def format_table(columns: Mapping[str, Counter[str]], per: Mapping[str, int] | None = None) -> str:
    """One column per measured total; `per` adds, for the first total, a column divided by each
    count (e.g. `{"step": 20}` or `{"item": 200}`)."""
    per = dict(per or {})
    first = next(iter(columns.values()), Counter())
    headers = [*columns, *(f"per {name}" for name in per)]
    lines = [f"{'count':<36}" + "".join(f"{h:>14}" for h in headers)]
    for key in table_keys(columns):
        cells = [f"{columns[name][key]:>14}" for name in columns]
        cells += [f"{first[key] / divisor:>14.2f}" for divisor in per.values()]
        lines.append(f"{key:<36}" + "".join(cells))
    return "\n".join(lines)
