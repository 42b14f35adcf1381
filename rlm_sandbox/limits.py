"""Limits of one completion, and the shared budget that enforces them.

One `Budget` belongs to one completion tree: the root RLM and every child started
by `rlm_query`, at any depth, draw from the same object, so a child only ever gets
what its ancestors left. Many threads use it at once (`llm_query_batched` fans out
on the host), hence every check-and-update happens under one lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rlm_sandbox.errors import BudgetExceededError, CompletionTimeoutError

__all__ = ["Budget", "ExhaustedReason", "Limits", "ModelUsage", "Reservation", "Usage"]

ExhaustedReason = Literal["budget", "timeout"]


class Limits(BaseModel):
    """What one completion may spend. `None` means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_depth: int = Field(default=1, gt=0)
    """1: `rlm_query` is a plain model call; N: child RLMs nest down to depth N."""
    max_iterations: int = Field(default=20, gt=0)
    """Root-model turns per RLM node (each child has its own count)."""
    max_llm_calls: int | None = Field(default=None, gt=0)
    """Model calls across the whole tree, root turns included."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Input + output tokens across the whole tree."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    """Wall-clock deadline of the whole completion."""
    exec_timeout_s: float = Field(default=60, gt=0)
    """One execution of model-written code."""
    llm_timeout_s: float = Field(default=300, gt=0)
    """One model call, retries included."""
    max_concurrency: int = Field(default=8, gt=0)
    """Host calls in flight at once across the whole tree: sub-model calls (each prompt of
    a batch), child RLMs' model turns and tool calls, from any number of sandbox threads."""
    max_sandboxes: int | None = Field(default=None, gt=0)
    """Live sandboxes at once across the tree. None: sized to the host, 4 per CPU within
    half its RAM, between 4 and 64 (concurrency.default_max_sandboxes). Past it child
    RLMs wait for one, or fail at once with an error in the asking code when none
    could ever be freed."""
    max_tool_calls: int | None = Field(default=None, gt=0)
    """Host tool calls across the whole tree."""
    max_output_tokens: int | None = Field(default=8192, gt=0)
    """Cap on the reply of every model call, root turns and sub-calls alike, sent to the
    server with the request. None leaves it to the server's default (often unlimited
    up to the window, which lets one rambling reply eat the budget and the window)."""
    context_window: int | None = Field(default=None, gt=0)
    """The root model's window in tokens (input + output). None: learned from the
    server's /v1/models where it says, else from its first context-length error."""


class ModelUsage(BaseModel):
    """Spend of one model (or the total over all models)."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    input_tokens: int = 0
    """All input tokens, the cached ones included."""
    output_tokens: int = 0
    """All output tokens, the reasoning ones included."""
    cost_usd: float = 0.0
    cached_input_tokens: int = 0
    """Input tokens the server read from its prompt cache (priced lower)."""
    reasoning_tokens: int = 0
    """Output tokens spent on hidden reasoning (already part of output_tokens)."""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Usage(BaseModel):
    """A snapshot of a budget's spend: per model, and the total."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelUsage] = Field(default_factory=dict)
    total: ModelUsage = Field(default_factory=ModelUsage)


@dataclass(frozen=True)
class Reservation:
    """What one call in flight holds against the budget until it is recorded or released."""

    tokens: int = 0
    cost_usd: float = 0.0


class Budget:
    """The thread-safe spend counter and deadline of one completion tree.

    Protocol for every model call::

        held = budget.reserve(tokens=worst_tokens, cost_usd=worst_cost)  # raises if it cannot fit
        try:
            response = client.complete(...)
        except LMError:
            budget.record(model, 0, 0, 0.0, reservation=held)   # it was a real request: it counts
            raise
        budget.record(model, response.input_tokens, response.output_tokens, response.cost_usd, reservation=held)

    `release(held)` returns a reservation that was never used for a request.

    `max_llm_calls`, `max_tokens` and `max_cost_usd` are hard caps. A call reserves its
    worst case up front (estimated input tokens + its output cap, priced), against what
    is left after the spend recorded so far *and* every call still in flight; a call
    that does not fit is refused with BudgetExceededError before anything is sent. On
    completion the reservation is replaced by what the server reported. So, at any
    concurrency, the final spend exceeds a cap only by what the servers counted beyond
    the reservations: the input-token estimate errs high (see `lm.estimate_tokens`) and
    the output is capped by the server, so in practice that is zero; the bound is
    `cap + sum over calls of max(0, reported - reserved)`. Calls whose worst case is 0
    (no price known for the model) count only their reported tokens against the cost cap;
    with `max_output_tokens=None` and no known window, only the input side is reserved.
    """

    def __init__(self, limits: Limits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._deadline = None if self.limits.timeout_s is None else self._started + self.limits.timeout_s
        self._reserved = 0  # reserved calls, whether finished, failed or in flight
        self._pending = 0  # reserved but not yet recorded or released
        self._held_tokens = 0  # worst cases of the calls in flight
        self._held_cost = 0.0
        self._models: dict[str, ModelUsage] = {}
        self._total = ModelUsage()

    # -- deadline -------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """The deadline on this budget's clock (`time.monotonic` by default)."""
        return self._deadline

    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (never negative); None without a deadline."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def timed_out(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def check_deadline(self) -> None:
        if self.timed_out():
            raise CompletionTimeoutError(
                f"the completion's deadline passed (timeout_s={self.limits.timeout_s:g}, "
                f"elapsed {self.elapsed_s():.1f}s)"
            )

    def clamp_timeout(self, timeout_s: float | None) -> float | None:
        """The smaller of `timeout_s` and what is left of the deadline (None = unbounded)."""
        remaining = self.remaining_s()
        if remaining is None:
            return timeout_s
        if timeout_s is None:
            return remaining
        return min(timeout_s, remaining)

    # -- calls ----------------------------------------------------------------

    def reserve(self, tokens: int = 0, cost_usd: float = 0.0) -> Reservation:
        """Claim one model call whose worst case is `tokens` and `cost_usd`, or raise
        without claiming anything.

        Raises CompletionTimeoutError once the deadline has passed, and
        BudgetExceededError naming the limit when calls are used up or the worst
        case does not fit in what is left after spend and calls in flight.
        """
        if tokens < 0 or cost_usd < 0 or not math.isfinite(cost_usd):
            raise ValueError(f"a reservation must be non-negative and finite, got {tokens}, {cost_usd}")
        with self._lock:
            self.check_deadline()
            refusal = self._refusal_locked(tokens, cost_usd)
            if refusal is not None:
                raise BudgetExceededError(refusal)
            self._reserved += 1
            self._pending += 1
            self._held_tokens += tokens
            self._held_cost += cost_usd
            return Reservation(tokens=tokens, cost_usd=cost_usd)

    def headroom(self) -> tuple[int | None, float | None]:
        """(tokens, dollars) a new call could still reserve; None where unlimited."""
        limits = self.limits
        with self._lock:
            tokens = None
            cost = None
            if limits.max_tokens is not None:
                tokens = max(0, limits.max_tokens - self._total.tokens - self._held_tokens)
            if limits.max_cost_usd is not None:
                cost = max(0.0, limits.max_cost_usd - self._total.cost_usd - self._held_cost)
            return tokens, cost

    def release(self, reservation: Reservation | None = None) -> None:
        """Give back a reserved call that was never sent."""
        with self._lock:
            if self._pending <= 0:
                raise RuntimeError("Budget.release() without a matching reserve()")
            self._pending -= 1
            self._reserved -= 1
            self._unhold_locked(reservation)

    def record(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        *,
        reservation: Reservation | None = None,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        """Account one finished call (successful or failed) in place of its reservation."""
        counts = (input_tokens, output_tokens, cached_input_tokens, reasoning_tokens)
        if min(counts) < 0 or cost_usd < 0 or not math.isfinite(cost_usd):
            raise ValueError(f"usage must be non-negative and finite, got {counts}, {cost_usd}")
        with self._lock:
            if self._pending <= 0:
                raise RuntimeError("Budget.record() without a matching reserve()")
            self._pending -= 1
            self._unhold_locked(reservation)
            per_model = self._models.setdefault(model, ModelUsage())
            for usage in (per_model, self._total):
                usage.calls += 1
                usage.input_tokens += input_tokens
                usage.output_tokens += output_tokens
                usage.cost_usd += cost_usd
                usage.cached_input_tokens += cached_input_tokens
                usage.reasoning_tokens += reasoning_tokens

    def _unhold_locked(self, reservation: Reservation | None) -> None:
        if reservation is None:
            return
        self._held_tokens = max(0, self._held_tokens - reservation.tokens)
        self._held_cost = max(0.0, self._held_cost - reservation.cost_usd)

    @property
    def calls_reserved(self) -> int:
        with self._lock:
            return self._reserved

    @property
    def calls_remaining(self) -> int | None:
        if self.limits.max_llm_calls is None:
            return None
        with self._lock:
            return max(0, self.limits.max_llm_calls - self._reserved)

    # -- reporting ------------------------------------------------------------

    def usage(self) -> Usage:
        with self._lock:
            return Usage(
                models={name: u.model_copy() for name, u in sorted(self._models.items())},
                total=self._total.model_copy(),
            )

    def exhausted_reason(self) -> ExhaustedReason | None:
        """Why no new call may start, in the words of `stop_reason`; None if one may."""
        if self.timed_out():
            return "timeout"
        with self._lock:
            return "budget" if self._refusal_locked() is not None else None

    def _refusal_locked(self, tokens: int = 0, cost_usd: float = 0.0) -> str | None:
        limits = self.limits
        if limits.max_llm_calls is not None and self._reserved >= limits.max_llm_calls:
            return f"max_llm_calls={limits.max_llm_calls} reached: all {self._reserved} model calls are used"
        if limits.max_tokens is not None:
            committed = self._total.tokens + self._held_tokens
            if committed >= limits.max_tokens or committed + tokens > limits.max_tokens:
                return (
                    f"max_tokens={limits.max_tokens} reached: {self._total.tokens} tokens used, "
                    f"{self._held_tokens} held by calls in flight, this call may need {tokens}"
                )
        if limits.max_cost_usd is not None:
            committed_cost = self._total.cost_usd + self._held_cost
            if committed_cost >= limits.max_cost_usd or committed_cost + cost_usd > limits.max_cost_usd:
                return (
                    f"max_cost_usd={limits.max_cost_usd:g} reached: ${self._total.cost_usd:.4f} spent, "
                    f"${self._held_cost:.4f} held by calls in flight, this call may cost ${cost_usd:.4f}"
                )
        return None
