"""One task: run it in its own RLM, score the answer, and make its result.

`execute_task` never raises for a failing task (only KeyboardInterrupt passes): a
task that cannot run or finish becomes a result with stop_reason "error", scored as
wrong, the same whether it ran on a thread here or on a Ray worker.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..lm import lookup_price
from ..prompts import describe_context
from ..sandbox import Sandbox
from ..scripted import SCRIPTED_MODEL
from .config import Meter, RunConfig, price_table
from .results import TaskResult
from .scorers import Score, default_scorer, score_answer
from .tasks import Task

__all__ = ["error_result", "execute_task"]


class _Tally:
    """A trajectory listener counting sub-calls and sandbox restarts of one completion."""

    def __init__(self) -> None:
        self.sub_calls = 0
        self.restarts = 0

    def __call__(self, event: dict[str, Any]) -> None:
        # Trajectory calls listeners under its lock: no lock needed here.
        if event["type"] == "sub_call":
            self.sub_calls += 1
        elif event["type"] == "exec" and event.get("restarted"):
            self.restarts += 1


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _base_fields(task: Task, config: RunConfig, task_fingerprint: str = "") -> dict[str, Any]:
    scorer = task.scorer or default_scorer(task.expected)
    return {
        "id": task.id,
        "fingerprint": config.fingerprint(),
        "task_fingerprint": task_fingerprint,
        "config": config.identity(),
        "suite": task.suite,
        "kind": task.meta.get("kind"),
        "size_tokens": task.size_tokens,
        "query": task.query[:1000],
        "expected": task.expected,
        "scorer": scorer.name,
        "worker": _worker_name(),
    }


def error_result(task: Task, config: RunConfig, error: str, *, elapsed_s: float = 0.0) -> TaskResult:
    """The result of a task that could not run or finish: scored as wrong."""
    return TaskResult(
        **_base_fields(task, config),
        answer=None,
        score=0.0,
        correct=False,
        score_detail="the task failed",
        stop_reason="error",
        error=error,
        elapsed_s=round(elapsed_s, 3),
        finished_at=_now(),
    )


def execute_task(
    task: Task,
    config: RunConfig,
    *,
    cancel: threading.Event | None = None,
    meter: Meter | None = None,
    on_sandbox: Callable[[Sandbox], None] | None = None,
) -> TaskResult:
    """Run and score one task. Raises only KeyboardInterrupt; any other failure is a result."""
    started = time.monotonic()
    tally = _Tally()
    context_chars = 0
    task_fingerprint = ""
    try:
        context = task.load_context()
        task_fingerprint = task.fingerprint(context)
        context_chars = describe_context(context).total_chars
        rlm = config.build_rlm(cancel=cancel, meter=meter, on_sandbox=on_sandbox, listeners=[tally])
        result = rlm.completion(context, task.query)
        del context
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        failed = error_result(task, config, f"{type(exc).__name__}: {exc}", elapsed_s=time.monotonic() - started)
        return failed.model_copy(
            update={
                "context_chars": context_chars,
                "context_tokens": -(-context_chars // 4),
                "task_fingerprint": task_fingerprint,
            }
        )
    try:
        scored = score_answer(result.answer, task.expected, task.scorer)
    except Exception as exc:  # an odd `expected` must not take the suite down
        scored = Score(score=0.0, correct=False, detail=f"scoring failed: {type(exc).__name__}: {exc}")
    total = result.usage.total
    unpriced = sorted(
        name
        for name, usage in result.usage.models.items()
        if usage.calls and name != SCRIPTED_MODEL and lookup_price(name, price_table(config.prices)) is None
    )
    return TaskResult(
        **_base_fields(task, config, task_fingerprint),
        answer=result.answer,
        score=round(scored.score, 6),
        correct=scored.correct,
        score_detail=scored.detail,
        stop_reason=result.stop_reason,
        error=result.error,
        usage=result.usage.model_dump(mode="json") | {"unpriced_models": unpriced},
        cost_usd=total.cost_usd,
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        model_calls=total.calls,
        sub_calls=tally.sub_calls,
        iterations=result.iterations,
        sandboxes_started=result.sandboxes_started,
        sandbox_restarts=tally.restarts,
        elapsed_s=round(time.monotonic() - started, 3),
        context_chars=context_chars,
        context_tokens=-(-context_chars // 4),
        trajectory_path=result.trajectory_path,
        finished_at=_now(),
    )
