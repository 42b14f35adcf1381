"""Running eval tasks as Ray tasks across a cluster (the optional extra `rlm-sandbox[ray]`).

Each task runs `execute_task` on a Ray worker: the worker builds the RLM, makes or
reads the context, starts its sandboxes on its own node's Docker daemon and returns
the scored result. Results come back to the driver, which alone writes the results
file, so resume and the summary work exactly as in a local run.

Every node needs Docker (and the sandbox image, built on first use) and rlm-sandbox
installed in the Python that Ray runs. Contexts of tasks given as files are read on
the driver and shipped with the task; generated contexts are made on the worker.
The driver's OPENAI_API_KEY / OPENAI_BASE_URL (environment or .env) are passed to
the job's workers as environment variables of its runtime_env. A task reserves one
CPU (its sandbox is limited to one) and is never retried by Ray: a worker that dies
becomes that task's error result, not a second, paid, attempt.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from ..errors import EvalError
from .config import RunConfig
from .execute import error_result
from .progress import NoProgress, ProgressSink
from .results import ResultsWriter, TaskResult
from .tasks import Task
from .threads import Batch, run_threads

__all__ = ["import_ray", "run_on_ray"]

_FORWARDED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EvalError("--ray needs Ray on this machine and on every node: pip install 'rlm-sandbox[ray]'") from None
    return ray


def _remote_execute(task_data: dict[str, Any], config_data: dict[str, Any], grace_s: float) -> dict[str, Any]:
    """Runs on a Ray worker: the task on a thread of its own, exactly as a local run does it.

    Ray cancels a task by raising KeyboardInterrupt in the worker's main thread, which
    a thread blocked in a socket read would not see for as long as the read lasts.
    The main thread here only waits, so the interrupt lands at once, and the same
    cancellation as on Ctrl-C locally follows: no new model call, SIGINT to the code
    in the task's sandboxes, sandboxes closed as it unwinds.
    """
    task = Task.model_validate(task_data)
    config = RunConfig.model_validate(config_data)
    batch = run_threads([task], config, None, NoProgress(), 1, grace_s)
    if batch.interrupted or not batch.results:
        raise KeyboardInterrupt
    return batch.results[0].model_dump(mode="json")


def _forwarded_env(config: RunConfig) -> dict[str, str]:
    if config.scripted:
        return {}
    from dotenv import dotenv_values, find_dotenv

    found = find_dotenv(usecwd=True)
    dotenv = dotenv_values(found) if found else {}
    env = {}
    for name in _FORWARDED_ENV:
        value = os.environ.get(name) or dotenv.get(name)
        if value:
            env[name] = value
    return env


def run_on_ray(
    tasks: Sequence[Task],
    config: RunConfig,
    writer: ResultsWriter | None,
    sink: ProgressSink,
    concurrency: int,
    address: str | None,
    grace_s: float,
) -> Batch:
    ray = import_ray()
    if config.log_dir is not None:
        config = config.model_copy(update={"log_dir": os.path.abspath(config.log_dir)})
    env = _forwarded_env(config)
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {}
        if not address and not os.environ.get("RAY_ADDRESS"):
            options["include_dashboard"] = False  # a throwaway local cluster needs none
        ray.init(
            address=address or None,
            runtime_env={"env_vars": env} if env else None,
            logging_level=logging.WARNING,
            log_to_driver=False,
            **options,
        )
    remote = ray.remote(_remote_execute).options(num_cpus=1, max_retries=0)
    config_data = config.model_dump(mode="json")
    # Workers get most of the grace to unwind; what is left is for force-killing stragglers.
    worker_grace_s = max(1.0, grace_s * 0.75)
    todo = list(reversed(tasks))
    pending: dict[Any, Task] = {}
    batch = Batch()

    def submit() -> None:
        while todo and len(pending) < concurrency:
            task = todo.pop()
            try:
                portable = task.inline()  # files are read here: the worker may not have them
            except Exception as exc:
                finish(error_result(task, config, f"{type(exc).__name__}: {exc}"))
                continue
            pending[remote.remote(portable.model_dump(mode="json"), config_data, worker_grace_s)] = task
            sink.task_started(task)

    def finish(result: TaskResult) -> None:
        if writer is not None:
            writer.write(result)
        batch.results.append(result)
        sink.task_finished(result)

    def collect(ref: Any, *, interrupted: bool = False) -> None:
        task = pending.pop(ref)
        try:
            payload = ray.get(ref)
        except (ray.exceptions.TaskCancelledError, KeyboardInterrupt):
            return  # interrupted: nothing is written
        except ray.exceptions.RayError as exc:
            if interrupted:
                return
            cause = getattr(exc, "cause", None) or exc
            finish(error_result(task, config, f"ray: {type(cause).__name__}: {str(cause)[-2000:]}"))
            return
        try:
            result = TaskResult.model_validate(payload)
        except Exception as exc:  # e.g. another rlm-sandbox version on that node
            result = error_result(task, config, f"the Ray worker sent an unreadable result: {exc}")
        finish(result)

    try:
        try:
            submit()
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    collect(ref)
                submit()
        except KeyboardInterrupt:
            batch.interrupted = True
            todo.clear()
            for ref in list(pending):
                ray.cancel(ref)  # KeyboardInterrupt inside the task: its sandboxes close as it unwinds
            deadline = time.monotonic() + grace_s
            try:
                while pending and time.monotonic() < deadline:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                    for ref in done:
                        collect(ref, interrupted=True)
            except KeyboardInterrupt:
                pass
            batch.stragglers = len(pending)
            # Whatever still runs is killed with its worker: its containers see their
            # input close and remove themselves.
            for ref in list(pending):
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
        except Exception:
            for ref in list(pending):  # e.g. the results file cannot be written: stop paying for work
                try:
                    ray.cancel(ref)
                except Exception:
                    pass
            raise
    finally:
        if started_here:
            ray.shutdown()
    return batch
