"""The tool loop's decision, as a pure function."""

from agent.loop import (
    MAX_THROTTLE_SECONDS,
    MAX_THROTTLE_WAITS,
    Finish,
    LoopLimits,
    LoopState,
    RunTools,
    StepSummary,
    Usage,
    WaitAndRetry,
    after_step,
    after_throttle,
    decide,
    next_step,
    record_decision,
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
