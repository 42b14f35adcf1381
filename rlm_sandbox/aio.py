"""Async entry points: a completion runs on a worker thread, never on the event loop.

A completion tree is synchronous (model calls, Docker, the sandbox channel all block),
so `acompletion` runs it on a thread of its own. A plain daemon thread per call,
not the loop's default executor: that one has a handful of workers, and twenty
concurrent completions must all run, not queue. Cancelling the awaiting task cancels
the tree from a second thread (killing its sandboxes blocks on Docker), waits until
its containers are gone, and then lets the CancelledError go on.

The loop thread does as little as it can: `Thread.start()` waits until the new
thread runs, which on a busy machine can take a scheduling round, so one launcher
thread starts the workers and the loop only puts a request on its queue; the tree
itself is built on the worker.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Cancellable", "run_in_thread"]

T = TypeVar("T")


async def run_in_thread(call: Callable[[], T], cancel: Callable[[], None]) -> T:
    """`call()` on a daemon thread; on task cancellation, `cancel()` (off the loop) first.

    `cancel()` must return only once the run's containers are gone."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def hand_over(outcome: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def work() -> None:
        try:
            value = call()
        except BaseException as exc:
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(value))

    worker = threading.Thread(target=work, name="rlm-async", daemon=True)
    _launch(worker)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # Shielded: a second cancel must not leave the containers running. The worker
        # is not waited for: a model call in flight cannot be interrupted and returns
        # within llm_timeout_s into a tree that stops at once; it holds no container.
        await asyncio.shield(asyncio.to_thread(cancel))
        raise


class Cancellable:
    """Cancels a run that may not exist yet: `attach()` is called on the worker once it
    does, and a cancel that came first cancels it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancel: Callable[[], None] | None = None
        self.cancelled = False

    def attach(self, cancel: Callable[[], None]) -> None:
        with self._lock:
            self._cancel = cancel
            already = self.cancelled
        if already:
            cancel()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            cancel = self._cancel
        if cancel is not None:
            cancel()


_requests: queue.SimpleQueue[threading.Thread] = queue.SimpleQueue()
_launcher: threading.Thread | None = None
_launcher_lock = threading.Lock()


def _launch(worker: threading.Thread) -> None:
    global _launcher
    _requests.put(worker)
    if _launcher is None or not _launcher.is_alive():
        with _launcher_lock:
            if _launcher is None or not _launcher.is_alive():
                _launcher = threading.Thread(target=_launch_forever, name="rlm-async-launcher", daemon=True)
                _launcher.start()


def _launch_forever() -> None:
    while True:
        _requests.get().start()
