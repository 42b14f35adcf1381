"""The host side of one exec's host calls: answered concurrently, within fixed bounds.

While an exec runs, the exec loop reads frames and hands each host call (`llm_request`,
`tool_request`) to `HostCalls.submit`, which queues it and returns at once; a few
worker threads answer the queue, so calls made from many sandbox threads run side by
side. Answers go back tagged with the request's id, whatever order they finish in.

What a sandbox can make the host hold, however many requests it sends:
- threads: at most `workers` per exec (each handler may fan a batch out further, within
  the tree-wide gate; see concurrency.py);
- memory: queued requests are capped by count (`max_queued`) and by frame bytes
  (`max_queued_bytes`); one past either is refused at once with an error the sandbox
  code sees, without a thread or a copy. Running ones are at most `workers` frames.

The exec timeout measures the sandbox's own work: the clock stops while any host call
of the exec is queued or running (`paused_s`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from .protocol import LLMRequest, ToolRequest, llm_result_frame, tool_result_frame

log = logging.getLogger(__name__)

HostRequest = LLMRequest | ToolRequest
Answerer = Callable[[HostRequest], bytes]
"""Turns a request into its answer frame; never raises."""

DEFAULT_MAX_QUEUED = 1024
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024


def error_frame(request: HostRequest, message: str, error_type: str | None = None) -> bytes:
    """The error answer to `request`, in the frame its kind expects."""
    if isinstance(request, ToolRequest):
        return tool_result_frame(request.id, error=message, error_type=error_type or "ToolError")
    return llm_result_frame(request.id, error=message, error_type=error_type)


class HostCalls:
    """Answers the host calls of one exec on up to `workers` threads."""

    def __init__(
        self,
        answer: Answerer,
        send: Callable[[bytes], None],
        *,
        workers: int,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self._answer = answer
        self._send = send
        self._workers = max(1, workers)
        self._max_queued = max_queued
        self._max_queued_bytes = max_queued_bytes
        self._lock = threading.Lock()
        # Workers wait here for work until the exec ends: a thread start per call would
        # cost more than the call's whole round trip.
        self._wakeup = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[HostRequest, int]] = collections.deque()
        self._queued_bytes = 0
        self._running = 0
        self._threads = 0
        self._closed = False
        self._busy_since: float | None = None
        self._paused = 0.0
        self.refused = 0
        self.peak_running = 0

    # ------------------------------------------------------------- exec loop side

    def submit(self, request: HostRequest, size: int) -> None:
        """Queue `request` (its frame was `size` bytes) or refuse it at once."""
        refusal = None
        with self._lock:
            if self._closed:
                refusal = "the exec has ended; no more host calls"
            elif len(self._queue) >= self._max_queued or self._queued_bytes + size > self._max_queued_bytes:
                refusal = (
                    f"too many host calls waiting ({len(self._queue)} queued, {self._queued_bytes} bytes); "
                    "wait for some to finish, or batch prompts with llm_query_batched"
                )
            else:
                self._queue.append((request, size))
                self._queued_bytes += size
                self._mark_busy_locked()
                start = self._threads < self._workers and self._threads - self._running < len(self._queue)
                if start:
                    self._threads += 1
                else:
                    self._wakeup.notify()
        if refusal is not None:
            self.refused += 1
            self._send(error_frame(request, refusal, "HostCallRefused"))
            return
        if start:
            threading.Thread(target=self._work, name="rlm-host-call", daemon=True).start()

    def refuse(self, request: HostRequest, message: str, error_type: str | None = None) -> None:
        self.refused += 1
        self._send(error_frame(request, message, error_type))

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy_since is not None

    def paused_s(self) -> float:
        """Seconds so far during which at least one host call was queued or running."""
        with self._lock:
            current = 0.0 if self._busy_since is None else time.monotonic() - self._busy_since
            return self._paused + current

    def close(self, *, notify: bool = True) -> None:
        """The exec is over: drop what is still queued (refusing each to the sandbox if
        `notify`; not for one being replaced, which may not be reading); running calls
        finish on their own."""
        with self._lock:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self._mark_idle_locked()
            self._wakeup.notify_all()
        if not notify:
            return
        for request, _ in dropped:
            try:
                self._send(error_frame(request, "the exec ended before this call ran", "HostCallRefused"))
            except OSError:
                return

    # ------------------------------------------------------------- workers

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    self._threads -= 1
                    return
                request, size = self._queue.popleft()
                self._queued_bytes -= size
                self._running += 1
                self.peak_running = max(self.peak_running, self._running)
            try:
                try:
                    frame = self._answer(request)
                except Exception as exc:
                    log.exception("host call handler failed")
                    frame = error_frame(request, f"the host failed to answer: {type(exc).__name__}")
                self._send(frame)
            except OSError as exc:  # the channel is gone; the exec loop reports that
                log.debug("could not send a host call's answer: %s", exc)
            finally:
                with self._lock:
                    self._running -= 1
                    if not self._queue and not self._running:
                        self._mark_idle_locked()

    def _mark_busy_locked(self) -> None:
        if self._busy_since is None:
            self._busy_since = time.monotonic()

    def _mark_idle_locked(self) -> None:
        if self._busy_since is not None and not self._running:
            self._paused += time.monotonic() - self._busy_since
            self._busy_since = None
