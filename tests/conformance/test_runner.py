"""The conformance runner: how it judges the suite's checks against expected-failures.txt, and
one real scenario of the official suite against our client (the wiring `scripts/test.sh` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import runner
from conformance.expected import Expected, ExpectedFailuresError, load_expected, parse_expected
from conformance.runner import Check, Outcome, Run, judge, planned_runs, results_of

RUN = Run("demo", "2026-07-28", "server-stateless")
PASSED = Check("tools-list", "SUCCESS", "")
FAILED = Check("sep-2575-missing-capability-http-400", "FAILURE", "not testable")


def test_a_failing_check_that_is_not_listed_fails_the_run():
    verdict = judge([Outcome(RUN, (PASSED, FAILED))], [])

    assert verdict.unexpected == [(RUN, f"{FAILED.id}: not testable")]
    assert verdict.passed == []


def test_a_listed_failing_check_is_an_expected_failure_with_its_reason():
    entry = Expected(RUN.name, FAILED.id, "needs the suite's fixture tool")

    verdict = judge([Outcome(RUN, (PASSED, FAILED))], [entry])

    assert verdict.unexpected == []
    assert verdict.expected == [(RUN, FAILED, "needs the suite's fixture tool")]


def test_a_listed_check_excuses_only_itself_not_another_failure_in_the_same_run():
    other = Check("sep-2575-http-server-error-jsonrpc-id", "FAILURE", "no id")
    entry = Expected(RUN.name, FAILED.id, "needs the suite's fixture tool")

    verdict = judge([Outcome(RUN, (FAILED, other))], [entry])

    assert verdict.unexpected == [(RUN, f"{other.id}: no id")]


def test_a_listed_failure_that_now_passes_is_reported():
    entry = Expected(RUN.name, FAILED.id, "needs the suite's fixture tool")

    verdict = judge([Outcome(RUN, (PASSED,))], [entry])

    assert verdict.now_passing == [entry]
    assert verdict.passed == [RUN]
    assert any("now passing" in line for line in runner.report(verdict, 1))


def test_a_run_that_gave_no_results_fails_unless_listed_as_a_whole():
    broken = Outcome(RUN, (), problem="no results: crashed")

    assert judge([broken], []).unexpected == [(RUN, "no results: crashed")]
    whole = Expected(RUN.name, None, "the suite crashes on it")
    assert judge([broken], [whole]).expected == [(RUN, None, "the suite crashes on it")]


def test_the_summary_lines_count_passed_runs_and_expected_failures():
    entry = Expected(RUN.name, FAILED.id, "needs the suite's fixture tool")
    clean = Run("client", "2026-07-28", "tools_call")

    verdict = judge([Outcome(RUN, (FAILED,)), Outcome(clean, (PASSED,))], [entry])

    assert runner.report(verdict, 2)[-2:] == [
        "conformance: 1/2 scenario runs passed",
        "conformance: 1 expected failure(s) in 1 run(s), 0 unexpected, 0 listed but passing",
    ]


def test_an_expected_failure_without_a_reason_is_refused():
    with pytest.raises(ExpectedFailuresError, match=r"expected-failures\.txt:2:"):
        parse_expected("# comment\ndemo@2026-07-28/server-stateless some-check\n")


def test_every_listed_expected_failure_names_a_run_the_runner_makes():
    names = {run.name for run in planned_runs()}

    entries = load_expected(runner.EXPECTED_FAILURES)

    assert entries, "the list is empty: then delete this test's reason to exist, or the file"
    assert [entry.key for entry in entries if entry.run not in names] == []


def test_a_scenarios_results_are_not_taken_from_a_scenario_whose_name_extends_it(tmp_path: Path):
    for folder in ("server-tools-list-extra-2026-12-02T01-00-00-000Z",
                   "server-tools-list-2026-12-02T01-00-01-000Z"):  # fmt: skip
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "checks.json").write_text(json.dumps([]))

    found = results_of(Run("demo", "2026-07-28", "tools-list"), tmp_path)

    assert found is not None and found.parent.name.startswith("server-tools-list-2026")


def test_our_client_passes_the_official_tools_call_scenario(capsys: pytest.CaptureFixture[str]):
    # One real run of the suite (Node.js 22 from node_modules) against McpPool.
    code = runner.main(["--only", "client@2026-07-28/tools_call"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok    client@2026-07-28/tools_call" in out
    assert "conformance: 1/1 scenario runs passed" in out
