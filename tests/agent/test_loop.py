"""The tool loop's decision, as a pure function."""

from agent.loop import (
    DECLINED_RETRY,
    MAX_CIRCUIT_WAIT_SECONDS,
    MAX_THROTTLE_SECONDS,
    MAX_THROTTLE_WAITS,
    MIN_CIRCUIT_WAIT_SECONDS,
    NO_RETRY_ANSWER,
    OUTCOME_UNKNOWN,
    REJECTED,
    TIMED_OUT,
    Compact,
    Finish,
    LoopLimits,
    LoopState,
    RunTools,
    StepSummary,
    Usage,
    WaitAndRetry,
    after_step,
    after_throttle,
    before_step,
    circuit_wait,
    decide,
    interrupted_rejections,
    next_step,
    record_decision,
    rejections,
    tokens_left,
)

LIMITS = LoopLimits(max_steps=3, max_tokens_per_run=1_000)


def test_a_final_answer_completes_the_run_with_its_message():
    move = decide(LoopState(), StepSummary("final", message_id="r.1.0"), LIMITS)
    assert move == Finish("completed", answer_message_id="r.1.0")


def test_tool_calls_run_all_the_requested_calls():
    summary = StepSummary("tool_calls", message_id="r.1.0", tool_call_ids=("a", "b"))
    assert decide(LoopState(), summary, LIMITS) == RunTools(("a", "b"))


def test_the_step_limit_ends_the_run_instead_of_running_more_tools():
    summary = StepSummary("tool_calls", tool_call_ids=("a",))
    move = decide(LoopState(step=3), summary, LIMITS)
    assert isinstance(move, Finish) and move.status == "budget_exceeded"
    assert "AGENT_MAX_STEPS" in (move.error or "")
    assert decide(LoopState(step=2), summary, LIMITS) == RunTools(("a",))


def test_a_final_answer_on_the_last_step_still_completes():
    move = decide(LoopState(step=3), StepSummary("final", message_id="m"), LIMITS)
    assert move == Finish("completed", answer_message_id="m")


def test_the_token_budget_counts_usage_across_steps():
    state = after_step(
        LoopState(usage=Usage(400, 200, 600)),
        StepSummary("tool_calls", tool_call_ids=("a",), usage=Usage(300, 200, 500)),
    )
    assert state.usage == Usage(700, 400, 1_100)
    move = decide(state, StepSummary("tool_calls", tool_call_ids=("a",)), LIMITS)
    assert isinstance(move, Finish) and move.status == "budget_exceeded"
    assert "1100 tokens" in (move.error or "")


def test_content_filter_ends_the_run_as_content_filtered():
    move = decide(LoopState(), StepSummary("content_filtered", message_id="m"), LIMITS)
    assert isinstance(move, Finish) and move.status == "content_filtered"
    assert move.answer_message_id == "m"


def test_a_permanent_model_failure_fails_the_run_with_its_reason():
    move = decide(LoopState(), StepSummary("failed", error="deployment not found (404)"), LIMITS)
    assert move == Finish("failed", error="deployment not found (404)")


def test_throttling_waits_the_retry_after_then_gives_up_after_the_maximum():
    assert decide(LoopState(), StepSummary("throttled", retry_after=7.5), LIMITS) == WaitAndRetry(
        7.5
    )
    huge = decide(LoopState(), StepSummary("throttled", retry_after=10_000), LIMITS)
    assert huge == WaitAndRetry(MAX_THROTTLE_SECONDS)
    state = LoopState()
    for _ in range(MAX_THROTTLE_WAITS):
        state = after_throttle(state)
    move = decide(state, StepSummary("throttled", retry_after=1), LIMITS)
    assert isinstance(move, Finish) and move.status == "failed"


def test_next_step_advances_only_the_step():
    state = LoopState(step=2, usage=Usage(1, 2, 3), throttle_waits=1)
    assert next_step(state) == LoopState(step=3, usage=Usage(1, 2, 3), throttle_waits=1)


def test_a_summary_survives_its_dict_round_trip():
    summary = StepSummary("tool_calls", "m", ("a", "b"), Usage(1, 2, 3), None, None)
    assert StepSummary.from_dict(summary.to_dict()) == summary


def test_an_answer_to_another_question_is_ignored_and_one_naming_none_is_taken():
    pending = ("a",)
    stale = {"tool_call_id": "a", "approved": True, "question_id": "step1-approval"}
    assert record_decision(pending, {}, stale, "step1-resend") == {}
    assert record_decision(pending, {}, stale, "step1-approval") == {"a": True}
    legacy = {"tool_call_id": "a", "approved": False}
    assert record_decision(pending, {}, legacy, "step1-resend") == {"a": False}


# --- what a run does at the edges of its limits ---------------------------------------------


def test_a_429_without_retry_after_waits_ten_seconds():
    assert decide(LoopState(), StepSummary("throttled"), LIMITS) == WaitAndRetry(10.0)


def test_a_retry_after_below_one_second_still_waits_one_second():
    assert decide(LoopState(), StepSummary("throttled", retry_after=0), LIMITS) == WaitAndRetry(1.0)
    assert decide(LoopState(), StepSummary("throttled", retry_after=0.2), LIMITS) == WaitAndRetry(
        1.0
    )


def test_giving_up_on_throttling_says_why():
    state = LoopState(throttle_waits=MAX_THROTTLE_WAITS)
    move = decide(state, StepSummary("throttled", retry_after=1), LIMITS)
    assert isinstance(move, Finish) and "throttling (429)" in (move.error or "")


def test_a_content_filtered_run_says_it_was_blocked():
    move = decide(LoopState(), StepSummary("content_filtered"), LIMITS)
    assert isinstance(move, Finish) and "content filter" in (move.error or "")


def test_a_model_failure_without_a_reason_still_fails_with_one():
    move = decide(LoopState(), StepSummary("failed"), LIMITS)
    assert isinstance(move, Finish) and move.status == "failed"
    assert move.error == "the model call failed"


def test_a_step_that_uses_exactly_the_budget_still_runs_its_tools():
    # The budget is spent, not exceeded: the calls the model asked for run, and the next model
    # step is the one refused (before_step).
    state = LoopState(usage=Usage(total_tokens=LIMITS.max_tokens_per_run))
    summary = StepSummary("tool_calls", tool_call_ids=("a",))
    assert decide(state, summary, LIMITS) == RunTools(("a",))
    assert isinstance(before_step(next_step(state), LIMITS), Finish)


def test_an_answer_over_budget_is_kept_but_a_tool_step_over_budget_has_no_answer():
    over = LoopState(usage=Usage(total_tokens=LIMITS.max_tokens_per_run + 1))
    final = decide(over, StepSummary("final", message_id="answer"), LIMITS)
    assert isinstance(final, Finish)
    assert (final.status, final.answer_message_id) == ("budget_exceeded", "answer")
    tools = decide(
        over, StepSummary("tool_calls", message_id="calls", tool_call_ids=("a",)), LIMITS
    )
    assert isinstance(tools, Finish) and tools.status == "budget_exceeded"
    assert tools.answer_message_id is None


def test_a_tool_step_naming_no_calls_completes_instead_of_running_nothing():
    move = decide(LoopState(), StepSummary("tool_calls", message_id="m"), LIMITS)
    assert move == Finish("completed", answer_message_id="m")


def test_the_calls_that_need_approval_are_handed_to_the_tool_step():
    summary = StepSummary("tool_calls", tool_call_ids=("a", "b"), approvals_needed=("b",))
    assert decide(LoopState(), summary, LIMITS) == RunTools(("a", "b"), ("b",))


def test_accounting_for_a_step_or_a_429_keeps_the_rest_of_the_state():
    state = LoopState(step=2, usage=Usage(1, 2, 3), throttle_waits=1)
    summary = StepSummary("tool_calls", tool_call_ids=("a",), usage=Usage(10, 20, 30))
    assert after_step(state, summary) == LoopState(2, Usage(11, 22, 33), 1)
    assert after_throttle(state) == LoopState(2, Usage(1, 2, 3), 2)


# --- the budget before a step -----------------------------------------------------------------


def test_a_model_step_runs_while_tokens_are_left():
    state = LoopState(step=2, usage=Usage(total_tokens=LIMITS.max_tokens_per_run - 1))
    assert before_step(state, LIMITS) is None
    assert tokens_left(state, LIMITS) == 1


def test_no_model_step_runs_once_the_budget_is_spent_and_the_reason_names_the_setting():
    state = LoopState(step=2, usage=Usage(total_tokens=LIMITS.max_tokens_per_run))
    move = before_step(state, LIMITS)
    assert isinstance(move, Finish) and move.status == "budget_exceeded"
    assert move.answer_message_id is None
    assert "before model step 2" in (move.error or "")
    assert "1000 tokens used" in (move.error or "")
    assert "AGENT_MAX_TOKENS_PER_RUN" in (move.error or "")


def test_tokens_left_is_never_negative():
    state = LoopState(usage=Usage(total_tokens=LIMITS.max_tokens_per_run + 50))
    assert tokens_left(state, LIMITS) == 0
    assert tokens_left(LoopState(usage=Usage(total_tokens=400)), LIMITS) == 600


# --- approvals and interrupted calls --------------------------------------------------------


def test_only_the_first_boolean_answer_for_a_pending_call_counts():
    pending = ("a", "b")
    decided = record_decision(pending, {}, {"tool_call_id": "a", "approved": True})
    assert decided == {"a": True}
    assert record_decision(pending, decided, {"tool_call_id": "a", "approved": False}) == decided
    assert record_decision(pending, decided, {"tool_call_id": "z", "approved": True}) == decided
    assert record_decision(pending, decided, {"tool_call_id": "b", "approved": "yes"}) == decided
    assert record_decision(pending, decided, "approve b") == decided


def test_a_rejected_call_and_an_unanswered_one_say_which_they_were():
    reasons = rejections(("yes", "no", "silent"), {"yes": True, "no": False})
    assert reasons == {"no": REJECTED, "silent": TIMED_OUT}


def test_an_interrupted_call_not_approved_again_says_its_outcome_is_unknown_and_why():
    reasons = interrupted_rejections(("yes", "no", "silent"), {"yes": True, "no": False})
    assert reasons == {
        "no": f"{OUTCOME_UNKNOWN} ({DECLINED_RETRY})",
        "silent": f"{OUTCOME_UNKNOWN} ({NO_RETRY_ANSWER})",
    }


def test_open_circuits_are_waited_out_once_until_the_last_cooldown_within_bounds():
    assert circuit_wait([3.0, 12.5, 7.0]) == 12.5
    assert circuit_wait([]) == MIN_CIRCUIT_WAIT_SECONDS
    assert circuit_wait([0.1]) == MIN_CIRCUIT_WAIT_SECONDS
    assert circuit_wait([10_000.0]) == MAX_CIRCUIT_WAIT_SECONDS
    assert (MIN_CIRCUIT_WAIT_SECONDS, MAX_CIRCUIT_WAIT_SECONDS) == (1.0, 300.0)


# --- the summary as Durable history carries it ----------------------------------------------


def test_a_summary_with_every_field_survives_its_dict_round_trip():
    summary = StepSummary(
        "throttled", "m", ("a", "b"), Usage(1, 2, 3), 4.5, "slow down", approvals_needed=("b",)
    )
    assert StepSummary.from_dict(summary.to_dict()) == summary


def test_a_summary_is_written_to_history_in_its_recorded_shape():
    # Durable history keeps this JSON; old histories replay through from_dict, so the keys and
    # their JSON types are a contract (see tests/golden).
    summary = StepSummary("tool_calls", "m", ("a",), Usage(1, 2, 3), None, None, ("a",))
    assert summary.to_dict() == {
        "outcome": "tool_calls",
        "message_id": "m",
        "tool_call_ids": ["a"],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "retry_after": None,
        "error": None,
        "approvals_needed": ["a"],
    }


def test_a_summary_from_an_older_history_reads_missing_fields_as_empty():
    assert StepSummary.from_dict({"outcome": "final"}) == StepSummary("final")


def test_usage_missing_or_null_counts_as_zero_tokens():
    assert Usage.from_dict(None) == Usage(0, 0, 0)
    assert Usage.from_dict({"total_tokens": 5}) == Usage(0, 0, 5)
    assert Usage.from_dict({"prompt_tokens": None, "completion_tokens": 2}) == Usage(0, 2, 0)


def test_a_step_that_asks_for_compaction_compacts_before_anything_else_is_decided():
    spent = LoopState(usage=Usage(900, 200, 1_100))  # over budget: compaction still comes first
    assert decide(spent, StepSummary("compact"), LIMITS) == Compact()


def test_a_turn_that_does_not_fit_the_context_window_ends_as_context_exceeded_with_its_reason():
    summary = StepSummary("context_exceeded", error="the turn needs 9000 tokens; 8000 fit")
    assert decide(LoopState(), summary, LIMITS) == Finish(
        "context_exceeded", error="the turn needs 9000 tokens; 8000 fit"
    )


def test_context_exceeded_without_a_reason_still_names_the_context_window():
    move = decide(LoopState(), StepSummary("context_exceeded"), LIMITS)
    assert move == Finish(
        "context_exceeded", error="the current turn does not fit the context window"
    )
