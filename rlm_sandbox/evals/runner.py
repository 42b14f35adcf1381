"""Running a suite of tasks: each in its own RLM, sandboxes and limits, N at a time.

`run_eval` is the entry point for the CLI and for code. It reads what the results
file already holds (resume), runs the rest on a pool of threads (`threads`) or on Ray
(`ray_runner`), writes each result the moment its task finishes, and returns every
result of the selected tasks for the summary.

A task that fails for any reason becomes a result with stop_reason "error"
(`execute`); it never stops the suite. Ctrl-C stops taking new tasks and interrupts
the running ones; nothing is written for an interrupted task, so running the same
command again resumes exactly where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field

from ..errors import EvalError
from ..sandbox import SandboxConfig
from .config import Meter, RunConfig
from .execute import execute_task
from .progress import NoProgress, ProgressSink
from .results import ResultsWriter, latest_results, read_results
from .tasks import Task
from .threads import Batch, run_threads

__all__ = ["EvalOutcome", "Meter", "ProgressSink", "RunConfig", "config_diff", "execute_task", "run_eval"]

# How long Ctrl-C waits for running tasks to unwind (and close their sandboxes).
DEFAULT_INTERRUPT_GRACE_S = 20.0


class EvalOutcome(BaseModel):
    results: list[dict[str, Any]]
    """A result for every selected task that has one (resumed or run now), in task order."""
    total: int
    resumed: int
    """Tasks skipped because the results file already had them."""
    ran: int
    """Tasks finished in this run."""
    interrupted: bool = False
    unfinished: list[str] = Field(default_factory=list)
    """Ids of the selected tasks without a result (after an interrupt)."""
    stragglers: int = 0
    """Tasks still running when the interrupt grace ran out (their sandboxes end with the process)."""
    interrupted_cost_usd: float = 0.0
    interrupted_calls: int = 0
    """What the interrupted tasks had spent: no result line records it (unknown on Ray)."""
    fingerprint: str
    out: str | None = None
    retried_errors: int = 0
    """Tasks whose last result in `out` was an error, run again."""
    changed_tasks: list[str] = Field(default_factory=list)
    """Ids of tasks with a result for this set-up whose query, expected, scorer or context changed since: run again."""
    other_configs: list[list[str]] = Field(default_factory=list)
    """For each other set-up that has results of these tasks in `out`: how it differs from this one."""

    @property
    def correct(self) -> int:
        return sum(1 for result in self.results if result.get("correct"))

    @property
    def accuracy(self) -> float:
        """Correct answers over all selected tasks (unfinished ones count as wrong)."""
        return self.correct / self.total if self.total else 0.0


def run_eval(
    tasks: Sequence[Task],
    config: RunConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    concurrency: int = 4,
    retry_errors: bool = True,
    progress: ProgressSink | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    interrupt_grace_s: float = DEFAULT_INTERRUPT_GRACE_S,
) -> EvalOutcome:
    """Run every task not yet finished in `out` with this config; return all their results."""
    if concurrency < 1:
        raise EvalError("concurrency must be at least 1")
    ids = [task.id for task in tasks]
    if len(set(ids)) != len(ids):
        raise EvalError("task ids must be unique")
    fingerprint = config.fingerprint()
    done: dict[str, dict[str, Any]] = {}
    others: dict[str, dict[str, Any]] = {}
    wanted = set(ids)
    retried = 0
    if out is not None:
        for (seen_fingerprint, task_id), record in latest_results(read_results(out)).items():
            if task_id not in wanted:
                continue
            if seen_fingerprint != fingerprint:
                others.setdefault(seen_fingerprint, record)
            elif retry_errors and record.get("stop_reason") == "error":
                retried += 1
            else:
                done[task_id] = record
    # A finished task is reused only if it is still the same question, scorer and context.
    resumed: dict[str, dict[str, Any]] = {}
    changed: list[str] = []
    for task in tasks:
        finished = done.get(task.id)
        if finished is None:
            continue
        if _same_task(finished, task):
            resumed[task.id] = finished
        else:
            changed.append(task.id)
    pending = [task for task in tasks if task.id not in resumed]
    sink = progress or NoProgress()
    other_configs = [config_diff(record.get("config") or {}, config.identity()) for record in others.values()]
    sink.notes(_resume_notes(out, retried, changed, other_configs))
    writer = ResultsWriter(out) if out is not None else None
    sink.start(len(pending), len(resumed))
    try:
        if not pending:
            batch = Batch()
        elif ray:
            from .ray_runner import run_on_ray

            batch = run_on_ray(pending, config, writer, sink, concurrency, ray_address, interrupt_grace_s)
        else:
            with warm_pool(config, min(concurrency, len(pending))) as pooled:
                batch = run_threads(pending, pooled, writer, sink, concurrency, interrupt_grace_s)
    finally:
        sink.stop()
        if writer is not None:
            writer.close()
    if batch.interrupted:
        sink.interrupted()
    fresh = {result.id: result.model_dump(mode="json") for result in batch.results}
    merged = resumed | fresh
    return EvalOutcome(
        results=[merged[task_id] for task_id in ids if task_id in merged],
        total=len(ids),
        resumed=len(resumed),
        ran=len(fresh),
        interrupted=batch.interrupted,
        unfinished=[task_id for task_id in ids if task_id not in merged],
        stragglers=batch.stragglers,
        interrupted_cost_usd=batch.interrupted_cost_usd,
        interrupted_calls=batch.interrupted_calls,
        fingerprint=fingerprint,
        out=str(out) if out is not None else None,
        retried_errors=retried,
        changed_tasks=changed,
        other_configs=other_configs,
    )


@contextmanager
def warm_pool(config: RunConfig, size: int) -> Iterator[RunConfig]:
    """`config` with a warm pool of `size` Docker sandboxes for the run, closed at its end.

    Every task's nodes (children included) take a started sandbox from it, so no
    container start sits on a task's critical path. Local sandboxes need none.
    """
    if config.sandbox != "docker" or size < 1:
        yield config
        return
    from ..sandbox.pool import SandboxPool

    sandbox_config = SandboxConfig(exec_timeout_s=config.limits.exec_timeout_s, runtime=config.runtime)
    with SandboxPool(sandbox_config, size=size) as pool:
        pooled = config.model_copy()
        pooled._pool = pool
        yield pooled


def _resume_notes(out: Any, retried: int, changed: list[str], other_configs: list[list[str]]) -> list[str]:
    """What resuming from `out` does besides skipping finished tasks, said before anything runs."""
    notes = []
    if retried:
        notes.append(
            f"{retried} task(s) whose last result was an error run again (--no-retry-errors keeps those results)"
        )
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        notes.append(
            f"{len(changed)} task(s) changed since their result in {out} (query, expected answer, scorer or "
            f"context) and run again: {shown}"
        )
    for diff in other_configs:
        what = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        notes.append(
            f"{out} holds results of these tasks from another set-up ({what or 'an older results format'}); "
            f"they are kept, this run's results are added beside them, and `rlm-sandbox report {out}` shows both"
        )
    return notes


def _same_task(record: dict[str, Any], task: Task) -> bool:
    recorded = record.get("task_fingerprint")
    if not recorded:
        return False  # an older file, or a task that failed before its context loaded
    try:
        return bool(recorded == task.fingerprint())
    except Exception:
        return False  # its context cannot be read now: run it, and let that fail properly


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def config_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """How set-up `after` differs from `before`, one "key: old -> new" per difference."""
    old, new = _flatten(before), _flatten(after)
    if "limits.max_depth" in old or "limits.max_depth" in new:
        old.pop("max_depth", None)
        new.pop("max_depth", None)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
