"""Running a suite of tasks: each in its own RLM, sandboxes and limits, N at a time.

`run_eval` is the entry point for the CLI and for code. It reads what the results
file already holds (resume), runs the rest on a pool of threads (or on Ray, see
`ray_runner`), writes each result the moment its task finishes, and returns every
result of the selected tasks for the summary.

A task that fails for any reason becomes a result with stop_reason "error"; it never
stops the suite. Ctrl-C stops taking new tasks and interrupts the running ones: their
next model call raises KeyboardInterrupt, code running in their sandboxes gets SIGINT,
and their sandboxes are closed as the interrupt unwinds. Nothing is written for an
interrupted task, so running the same command again resumes exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..limits import Limits
from ..lm import LMClient, LMResponse, Price, lookup_price
from ..prompts import describe_context
from ..rlm import RLM
from ..sandbox import Sandbox, SandboxConfig, sandbox_for
from ..scripted import SCRIPTED_MODEL, ScriptedDemoModel
from .results import ResultsWriter, TaskResult, latest_results, read_results
from .scorers import Score, default_scorer, score_answer
from .tasks import EvalError, Task

__all__ = ["EvalOutcome", "Meter", "ProgressSink", "RunConfig", "config_diff", "execute_task", "run_eval"]

# How long Ctrl-C waits for running tasks to unwind (and close their sandboxes).
DEFAULT_INTERRUPT_GRACE_S = 20.0
_INTERRUPT_EVERY_S = 0.5


class RunConfig(BaseModel):
    """Everything that says how the tasks of a run are answered. Picklable, for Ray."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "gpt-5-mini"
    sub_model: str | None = None
    base_url: str | None = None
    provider: str = "openai"
    """Which client reaches the model: "openai" or "litellm" (see `RLM(provider=...)`)."""
    scripted: bool = False
    """Use the built-in scripted demo model (no API) instead of an OpenAI-compatible one."""
    limits: Limits = Field(default_factory=Limits)
    sandbox: Literal["docker", "local"] = "docker"
    runtime: str = "runc"
    log_dir: str | None = None
    verbose: bool = False
    _pool: Any = PrivateAttr(default=None)
    """The run's warm SandboxPool in this process (see `warm_pool`); not part of the identity."""
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Extra model prices, USD per million input and output tokens (`--price`)."""

    @property
    def model_name(self) -> str:
        return SCRIPTED_MODEL if self.scripted else self.model

    def identity(self) -> dict[str, Any]:
        """What decides the results of a run besides the tasks: the models, their endpoint, every limit."""
        identity = {
            "model": self.model_name,
            "sub_model": self.sub_model or self.model_name,
            "base_url": None if self.scripted else self.base_url,
            "max_depth": self.limits.max_depth,
            "limits": self.limits.model_dump(mode="json"),
        }
        if self.provider != "openai" and not self.scripted:
            identity["provider"] = self.provider  # absent for "openai": earlier results keep their fingerprint
        return identity

    def fingerprint(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def build_rlm(
        self,
        *,
        cancel: threading.Event | None = None,
        meter: Meter | None = None,
        on_sandbox: Callable[[Sandbox], None] | None = None,
        listeners: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> RLM:
        """A fresh RLM for one task: its own budget and sandboxes; the model client is shared.

        With `cancel`, every model call first checks it (and raises KeyboardInterrupt once
        it is set); with `meter`, every answer is counted there as it arrives.
        """
        client: LMClient = _shared_client(self)
        if cancel is not None or meter is not None:
            client = _CancellableClient(client, cancel or threading.Event(), meter)
        kind = "local" if self.sandbox == "local" else self.runtime
        sandbox_config = SandboxConfig(exec_timeout_s=self.limits.exec_timeout_s)

        def make_sandbox(**handlers: Any) -> Sandbox:
            if self._pool is not None:
                sandbox = self._pool.acquire(**handlers)
            else:
                sandbox = sandbox_for(kind, sandbox_config, **handlers)
            if on_sandbox is not None:
                on_sandbox(sandbox)
            return sandbox

        return RLM(
            model=self.model_name,
            sub_model=self.sub_model,
            client=client,
            sandbox=make_sandbox,
            limits=self.limits,
            log_dir=self.log_dir,
            verbose=self.verbose,
            listeners=list(listeners),
        )


_clients: dict[tuple[str, str | None, str, bool, str], LMClient] = {}
_clients_lock = threading.Lock()


def _shared_client(config: RunConfig) -> LMClient:
    """One client per model and endpoint per process: the SDK's pool serves every task."""
    from ..lm import client_for

    key = (config.model, config.base_url, config.provider, config.scripted, json.dumps(config.prices, sort_keys=True))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if config.scripted:
                client = ScriptedDemoModel()
            else:
                client = client_for(
                    config.provider, config.model, base_url=config.base_url, prices=price_table(config.prices)
                )
            _clients[key] = client
        return client


def price_table(prices: dict[str, tuple[float, float]]) -> dict[str, Price]:
    """`--price` values as the LM client takes them."""
    return {name: Price(input_per_mtok=i, output_per_mtok=o) for name, (i, o) in prices.items()}


class Meter:
    """What one task's model calls have cost so far, counted as answers arrive (thread-safe).

    It is how an interrupted task's spend is still known: such a task leaves no result.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0

    def add(self, response: LMResponse) -> None:
        with self._lock:
            self.calls += 1
            self.input_tokens += response.input_tokens
            self.output_tokens += response.output_tokens
            self.cost_usd += response.cost_usd


class _CancellableClient:
    """Raises KeyboardInterrupt at the next model call boundary once the run is cancelled."""

    def __init__(self, inner: LMClient, cancel: threading.Event, meter: Meter | None = None) -> None:
        self._inner = inner
        self._cancel = cancel
        self._meter = meter
        self.model = inner.model

    def __getattr__(self, name: str) -> Any:
        # Prices, context windows and the like come from the wrapped client, so the
        # budget's worst-case reservations and the window fitting work through it.
        return getattr(self._inner, name)

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        timeout_s: float | None = None,
        **options: Any,
    ) -> LMResponse:
        if self._cancel.is_set():
            raise KeyboardInterrupt
        response = self._inner.complete(messages, model=model, timeout_s=timeout_s, **options)
        if self._meter is not None:
            self._meter.add(response)  # paid for, whether or not it is used
        if self._cancel.is_set():
            raise KeyboardInterrupt
        return response


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


# ------------------------------------------------------------------ the run


class ProgressSink(Protocol):
    """What the runner tells a display. Called from the thread that called `run_eval`."""

    def notes(self, lines: list[str]) -> None: ...
    def start(self, total: int, resumed: int) -> None: ...
    def task_started(self, task: Task) -> None: ...
    def task_finished(self, result: TaskResult) -> None: ...
    def interrupted(self) -> None: ...
    def stop(self) -> None: ...


class _NoProgress:
    def notes(self, lines: list[str]) -> None: ...
    def start(self, total: int, resumed: int) -> None: ...
    def task_started(self, task: Task) -> None: ...
    def task_finished(self, result: TaskResult) -> None: ...
    def interrupted(self) -> None: ...
    def stop(self) -> None: ...


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


class _Batch(BaseModel):
    """What a backend reports back to run_eval."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    results: list[TaskResult] = Field(default_factory=list)
    interrupted: bool = False
    stragglers: int = 0
    interrupted_cost_usd: float = 0.0
    interrupted_calls: int = 0


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
        record = done.get(task.id)
        if record is None:
            continue
        if _same_task(record, task):
            resumed[task.id] = record
        else:
            changed.append(task.id)
    pending = [task for task in tasks if task.id not in resumed]
    sink = progress or _NoProgress()
    other_configs = [config_diff(record.get("config") or {}, config.identity()) for record in others.values()]
    sink.notes(_resume_notes(out, retried, changed, other_configs))
    writer = ResultsWriter(out) if out is not None else None
    sink.start(len(pending), len(resumed))
    try:
        if not pending:
            batch = _Batch()
        elif ray:
            from .ray_runner import run_on_ray

            batch = run_on_ray(pending, config, writer, sink, concurrency, ray_address, interrupt_grace_s)
        else:
            with warm_pool(config, min(concurrency, len(pending))) as pooled:
                batch = _run_threads(pending, pooled, writer, sink, concurrency, interrupt_grace_s)
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


class _Running:
    def __init__(self, task: Task) -> None:
        self.task = task
        self.sandboxes: list[Sandbox] = []
        self.meter = Meter()


def _interrupt_sandboxes(running: Iterable[_Running]) -> None:
    for entry in running:
        for sandbox in list(entry.sandboxes):
            if not sandbox.is_running:
                continue
            try:
                sandbox._interrupt()  # SIGINT to the code it runs; the sandbox itself stays up
            except Exception:
                pass


def _run_threads(
    tasks: Sequence[Task],
    config: RunConfig,
    writer: ResultsWriter | None,
    sink: ProgressSink,
    concurrency: int,
    grace_s: float,
) -> _Batch:
    todo = list(reversed(tasks))
    lock = threading.Lock()
    cancel = threading.Event()
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    running: dict[int, _Running] = {}
    finished: list[TaskResult] = []
    abandoned: list[Meter] = []

    def work(slot: int) -> None:
        try:
            while not cancel.is_set():
                with lock:
                    if not todo:
                        return
                    entry = running[slot] = _Running(todo.pop())
                events.put(("started", entry.task))
                try:
                    result = execute_task(
                        entry.task, config, cancel=cancel, meter=entry.meter, on_sandbox=entry.sandboxes.append
                    )
                except KeyboardInterrupt:
                    with lock:
                        abandoned.append(entry.meter)
                    return  # interrupted: nothing is written
                except BaseException as exc:  # execute_task turns failures into results; this is a last guard
                    result = error_result(entry.task, config, f"{type(exc).__name__}: {exc}")
                finally:
                    with lock:
                        running.pop(slot, None)
                try:
                    # Written before this thread takes another task, so whatever has been
                    # started after it was finished can rely on it being on disk.
                    if writer is not None:
                        writer.write(result)
                except OSError as exc:
                    events.put(("fatal", exc))
                    cancel.set()
                    return
                with lock:
                    finished.append(result)  # the record of what finished; events only drive the display
                events.put(("finished", result))
        finally:
            events.put(("exit", slot))

    workers = [
        threading.Thread(target=work, args=(slot,), name=f"rlm-eval-{slot}", daemon=True)
        for slot in range(min(concurrency, len(tasks)))
    ]
    for worker in workers:
        worker.start()
    alive = len(workers)
    batch = _Batch()
    fatal: list[BaseException] = []

    def handle(kind: str, payload: Any) -> None:
        nonlocal alive
        if kind == "started":
            sink.task_started(payload)
        elif kind == "finished":
            sink.task_finished(payload)
        elif kind == "fatal":
            fatal.append(payload)
        elif kind == "exit":
            alive -= 1

    try:
        while alive:
            try:
                handle(*events.get(timeout=0.25))
            except queue.Empty:
                pass
    except KeyboardInterrupt:
        batch.interrupted = True
        cancel.set()
        deadline = time.monotonic() + grace_s
        try:
            while alive and time.monotonic() < deadline:
                with lock:
                    current = list(running.values())
                # Repeated: an exec that starts after one round of SIGINTs gets the next.
                _interrupt_sandboxes(current)
                try:
                    handle(*events.get(timeout=_INTERRUPT_EVERY_S))
                    while True:
                        handle(*events.get_nowait())
                except queue.Empty:
                    pass
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting
        batch.stragglers = alive
        with lock:
            # Interrupted tasks, and those still running: spent, but in no result.
            spent = abandoned + [entry.meter for entry in running.values()]
        batch.interrupted_cost_usd = sum(meter.cost_usd for meter in spent)
        batch.interrupted_calls = sum(meter.calls for meter in spent)
    if fatal:
        raise EvalError(f"cannot write the results file: {fatal[0]}")
    with lock:
        batch.results = list(finished)
    return batch
