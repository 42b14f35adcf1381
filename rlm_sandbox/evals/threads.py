"""Running a batch of tasks on a pool of threads in this process.

This is the local backend of `run_eval`, and what each Ray worker runs for its one
task (see `ray_runner`). Each result is written the moment its task finishes. Ctrl-C
stops taking new tasks and interrupts the running ones: their next model call raises
KeyboardInterrupt, code running in their sandboxes gets SIGINT (repeatedly, until the
grace runs out), and their sandboxes are closed as the interrupt unwinds. Nothing is
written for an interrupted task; what it had spent is reported in the batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import EvalError
from ..sandbox import Sandbox
from .config import Meter, RunConfig
from .execute import error_result, execute_task
from .progress import ProgressSink
from .results import ResultsWriter, TaskResult
from .tasks import Task

__all__ = ["Batch", "run_threads"]

_INTERRUPT_EVERY_S = 0.5


class Batch(BaseModel):
    """What a backend reports back to run_eval."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    results: list[TaskResult] = Field(default_factory=list)
    interrupted: bool = False
    stragglers: int = 0
    interrupted_cost_usd: float = 0.0
    interrupted_calls: int = 0


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


def run_threads(
    tasks: Sequence[Task],
    config: RunConfig,
    writer: ResultsWriter | None,
    sink: ProgressSink,
    concurrency: int,
    grace_s: float,
) -> Batch:
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
    batch = Batch()
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
