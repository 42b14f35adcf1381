"""Limits validation and the shared, thread-safe Budget of one completion tree."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from rlm_sandbox.errors import BudgetExceededError, CompletionTimeoutError
from rlm_sandbox.limits import Budget, Limits, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limits_defaults_match_the_design() -> None:
    limits = Limits()
    assert limits.model_dump() == {
        "max_depth": 1,
        "max_iterations": 20,
        "max_llm_calls": None,
        "max_tokens": None,
        "max_cost_usd": None,
        "timeout_s": None,
        "exec_timeout_s": 60,
        "llm_timeout_s": 300,
        "max_concurrency": 8,
        "max_output_tokens": 8192,
        "context_window": None,
        "max_sandboxes": None,
        "max_tool_calls": None,
    }


@pytest.mark.parametrize(
    "field",
    [
        "max_depth",
        "max_iterations",
        "max_llm_calls",
        "max_tokens",
        "max_cost_usd",
        "timeout_s",
        "exec_timeout_s",
        "llm_timeout_s",
        "max_concurrency",
        "max_output_tokens",
        "context_window",
    ],
)
@pytest.mark.parametrize("value", [0, -1])
def test_limits_must_be_positive(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        Limits(**{field: value})


def test_limits_are_frozen_and_strict_about_names() -> None:
    limits = Limits(max_llm_calls=3)
    with pytest.raises(ValidationError):
        limits.max_llm_calls = 4
    with pytest.raises(ValidationError):
        Limits(max_call=3)  # type: ignore[call-arg]


def test_unlimited_budget_counts_per_model_and_total() -> None:
    budget = Budget()
    for model, tokens_in, tokens_out, cost in [("a", 10, 5, 0.5), ("b", 1, 2, 0.0), ("a", 3, 4, 0.25)]:
        budget.reserve()
        budget.record(model, tokens_in, tokens_out, cost)
    usage = budget.usage()
    assert isinstance(usage, Usage)
    assert usage.models["a"].model_dump() == {
        "calls": 2,
        "input_tokens": 13,
        "output_tokens": 9,
        "cost_usd": 0.75,
        "cached_input_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert usage.models["b"].calls == 1
    assert (usage.total.calls, usage.total.input_tokens, usage.total.output_tokens) == (3, 14, 11)
    assert usage.total.cost_usd == pytest.approx(0.75)
    assert budget.exhausted_reason() is None
    assert budget.remaining_s() is None


def test_usage_is_a_snapshot() -> None:
    budget = Budget()
    budget.reserve()
    budget.record("a", 1, 1, 0.0)
    snapshot = budget.usage()
    budget.reserve()
    budget.record("a", 1, 1, 0.0)
    assert snapshot.total.calls == 1
    assert budget.usage().total.calls == 2


def test_max_llm_calls_refuses_with_a_clear_message() -> None:
    budget = Budget(Limits(max_llm_calls=2))
    budget.reserve()
    budget.reserve()
    with pytest.raises(BudgetExceededError, match="max_llm_calls=2"):
        budget.reserve()
    assert budget.exhausted_reason() == "budget"
    assert budget.calls_remaining == 0


def test_release_gives_a_slot_back() -> None:
    budget = Budget(Limits(max_llm_calls=1))
    budget.reserve()
    budget.release()
    budget.reserve()  # the slot is usable again
    budget.record("m", 1, 1, 0.0)
    with pytest.raises(RuntimeError):
        budget.release()
    with pytest.raises(RuntimeError):
        budget.record("m", 1, 1, 0.0)


def test_record_rejects_negative_usage() -> None:
    budget = Budget()
    budget.reserve()
    with pytest.raises(ValueError):
        budget.record("m", -1, 0, 0.0)


def test_fifty_threads_cannot_overshoot_max_llm_calls() -> None:
    limit = 17
    budget = Budget(Limits(max_llm_calls=limit))
    barrier = threading.Barrier(50)
    granted: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def hammer(worker: int) -> None:
        barrier.wait()  # release every thread at once to maximise contention
        for _ in range(20):
            try:
                budget.reserve()
            except BudgetExceededError:
                with lock:
                    refused.append(worker)
                continue
            with lock:
                granted.append(worker)
            budget.record(f"model-{worker % 3}", 10, 10, 0.001)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(granted) == limit
    assert len(refused) == 50 * 20 - limit
    assert budget.usage().total.calls == limit
    assert sum(u.calls for u in budget.usage().models.values()) == limit


def test_max_tokens_refuses_new_calls_once_reached_but_lets_the_last_cross() -> None:
    budget = Budget(Limits(max_tokens=100))
    budget.reserve()
    budget.record("m", 60, 30, 0.0)  # 90 < 100: more calls allowed
    budget.reserve()
    budget.record("m", 50, 50, 0.0)  # crosses the line; known only afterwards
    assert budget.usage().total.tokens == 190
    with pytest.raises(BudgetExceededError, match="max_tokens=100"):
        budget.reserve()
    assert budget.exhausted_reason() == "budget"


def test_max_cost_refuses_new_calls_once_reached() -> None:
    budget = Budget(Limits(max_cost_usd=0.01))
    budget.reserve()
    budget.record("m", 1, 1, 0.004)
    budget.reserve()
    budget.record("m", 1, 1, 0.007)
    with pytest.raises(BudgetExceededError, match=r"max_cost_usd=0\.01"):
        budget.reserve()


def test_deadline_counts_down_and_refuses_calls() -> None:
    clock = FakeClock()
    budget = Budget(Limits(timeout_s=10), clock=clock)
    assert budget.remaining_s() == 10
    clock.now += 4
    assert budget.remaining_s() == pytest.approx(6)
    assert budget.clamp_timeout(300) == pytest.approx(6)
    assert budget.clamp_timeout(2) == 2
    assert budget.clamp_timeout(None) == pytest.approx(6)
    budget.check_deadline()
    budget.reserve()
    budget.record("m", 1, 1, 0.0)
    clock.now += 6
    assert budget.remaining_s() == 0
    assert budget.exhausted_reason() == "timeout"
    with pytest.raises(CompletionTimeoutError, match="timeout_s=10"):
        budget.check_deadline()
    with pytest.raises(CompletionTimeoutError):
        budget.reserve()
    assert budget.usage().total.calls == 1


def test_timeout_wins_over_budget_as_exhausted_reason() -> None:
    clock = FakeClock()
    budget = Budget(Limits(timeout_s=1, max_llm_calls=1), clock=clock)
    budget.reserve()
    assert budget.exhausted_reason() == "budget"
    clock.now += 2
    assert budget.exhausted_reason() == "timeout"


def test_real_clock_deadline() -> None:
    budget = Budget(Limits(timeout_s=0.05))
    remaining = budget.remaining_s()
    assert remaining is not None and 0 < remaining <= 0.05
    threading.Event().wait(0.08)
    with pytest.raises(CompletionTimeoutError):
        budget.check_deadline()


def test_reservations_hold_their_worst_case_until_recorded() -> None:
    budget = Budget(Limits(max_tokens=1000, max_cost_usd=1.0))
    first = budget.reserve(tokens=600, cost_usd=0.1)
    assert budget.headroom() == (400, pytest.approx(0.9))
    with pytest.raises(BudgetExceededError, match="held by calls in flight"):
        budget.reserve(tokens=600)
    budget.record("m", 100, 50, 0.05, reservation=first, cached_input_tokens=40, reasoning_tokens=10)
    assert budget.headroom() == (850, pytest.approx(0.95))
    second = budget.reserve(tokens=600)
    budget.release(second)
    assert budget.headroom()[0] == 850 and budget.calls_reserved == 1
    total = budget.usage().total
    assert (total.cached_input_tokens, total.reasoning_tokens) == (40, 10)


def test_cost_reservations_refuse_what_would_cross_the_cap() -> None:
    budget = Budget(Limits(max_cost_usd=0.02))
    budget.reserve(cost_usd=0.015)
    with pytest.raises(BudgetExceededError, match=r"max_cost_usd=0\.02"):
        budget.reserve(cost_usd=0.006)
    budget.reserve(cost_usd=0.005)
    with pytest.raises(ValueError):
        budget.reserve(tokens=-1)
