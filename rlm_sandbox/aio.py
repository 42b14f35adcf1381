"""Async entry points: a completion runs on a worker thread, never on the event loop.

A completion tree is synchronous (model calls, Docker, the sandbox channel all block),
so `acompletion` runs it on a thread of its own. A plain daemon thread per call,
not the loop's default executor: that one has a handful of workers, and twenty
concurrent completions must all run, not queue. Cancelling the awaiting task cancels
the tree from a second thread (killing its sandboxes blocks on Docker), waits until
its containers are gone, and then lets the CancelledError go on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["run_in_thread"]

T = TypeVar("T")

# After a cancel, how long to wait for the worker to notice before giving up on it
# (it is a daemon thread: it cannot keep the process alive).
_CANCEL_WAIT_S = 30.0


async def run_in_thread(call: Callable[[], T], cancel: Callable[[], None]) -> T:
    """`call()` on a daemon thread; on task cancellation, `cancel()` (off the loop) first."""
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
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(value))

    worker = threading.Thread(target=work, name="rlm-async", daemon=True)
    worker.start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def stop() -> None:
            cancel()
            worker.join(_CANCEL_WAIT_S)

        # Shielded: a second cancel must not leave the containers running.
        await asyncio.shield(asyncio.to_thread(stop))
        raise
