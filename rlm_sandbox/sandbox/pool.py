"""A warm pool of started sandboxes, so no container start sits on the critical path.

A pooled sandbox is started and has said ready, but holds no context and has run no
code. `acquire()` hands one out with the caller's handlers attached; it is never
returned to the pool: closing it destroys it, so no state or data can pass from one
completion (or user) to the next. A single background thread refills the pool after
each take and shrinks it back to `min_size` after `idle_s` without demand.

The idle clock stops while a start is in flight and restarts at each take and at
each finished refill. A start can take longer than `idle_s` on a loaded host; counted
from the take alone, the clock would run out mid-refill and leave the pool short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import SandboxClosedError, SandboxError
from .base import LLMHandler, Sandbox
from .config import SandboxConfig

log = logging.getLogger(__name__)

# After a failed start, wait this long before the refill thread tries again.
_RETRY_AFTER_FAILURE_S = 5.0


class SandboxPool:
    """Up to `size` warm sandboxes of one configuration. Thread-safe; use as a context manager."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        size: int = 2,
        min_size: int = 0,
        idle_s: float = 300.0,
        factory: Callable[[SandboxConfig], Sandbox] | None = None,
    ) -> None:
        if size < 1 or not 0 <= min_size <= size:
            raise ValueError("need size >= 1 and 0 <= min_size <= size")
        self.config = config or SandboxConfig()
        self.size = size
        self.min_size = min_size
        self.idle_s = idle_s
        if factory is None:
            from .docker import DockerSandbox

            factory = DockerSandbox
        self._factory = factory
        self._ready: deque[Sandbox] = deque()
        self._starting = 0
        self._target = size
        self._quiet_since = time.monotonic()  # the later of the last take and the last refill
        self._closed = False
        self._condition = threading.Condition()
        self.cold_starts = 0
        self.warm_hits = 0
        self._thread = threading.Thread(target=self._refill_loop, name="rlm-sandbox-pool", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- public

    def acquire(self, *, llm_handler: LLMHandler | None = None, rlm_handler: LLMHandler | None = None) -> Sandbox:
        """A started sandbox for the caller alone; close it when done (it is not reused)."""
        with self._condition:
            if self._closed:
                raise SandboxClosedError("the sandbox pool is closed")
            self._quiet_since = time.monotonic()
            self._target = self.size
            sandbox = self._ready.popleft() if self._ready else None
            if sandbox is None:
                self.cold_starts += 1
            else:
                self.warm_hits += 1
            self._condition.notify_all()
        if sandbox is None:
            sandbox = self._factory(self.config).start()
        sandbox.llm_handler = llm_handler
        sandbox.rlm_handler = rlm_handler
        return sandbox

    def __call__(self, *, llm_handler: LLMHandler | None = None, rlm_handler: LLMHandler | None = None) -> Sandbox:
        """So a pool can be passed wherever a sandbox factory is expected (RLM(sandbox=pool))."""
        return self.acquire(llm_handler=llm_handler, rlm_handler=rlm_handler)

    @property
    def warm(self) -> int:
        with self._condition:
            return len(self._ready)

    def wait_until_warm(self, count: int | None = None, timeout_s: float = 60.0) -> bool:
        """Block until `count` (default: size) sandboxes are ready; False on timeout."""
        wanted = self.size if count is None else count
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while len(self._ready) < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                self._condition.wait(remaining)
            return True

    def close(self) -> None:
        with self._condition:
            if self._closed:
                return
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=120)
        with self._condition:
            leftovers = list(self._ready)
            self._ready.clear()
        for sandbox in leftovers:
            sandbox.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------- background

    def _refill_loop(self) -> None:
        while True:
            with self._condition:
                while not self._closed and not self._needs_work():
                    self._condition.wait(self._time_to_shrink())
                if self._closed:
                    return
                surplus = self._take_surplus_locked()
                if surplus is None:
                    self._starting += 1
            if surplus is not None:
                surplus.close()
                continue
            try:
                sandbox = self._factory(self.config).start()
            except SandboxError as exc:
                log.warning("sandbox pool could not start a sandbox: %s", exc)
                with self._condition:
                    self._starting -= 1
                    self._condition.wait(_RETRY_AFTER_FAILURE_S)
                continue
            with self._condition:
                self._starting -= 1
                if self._closed:
                    surplus = sandbox
                else:
                    self._ready.append(sandbox)
                    self._quiet_since = time.monotonic()
                    self._condition.notify_all()
            if surplus is not None:
                surplus.close()
                return

    def _idle(self) -> bool:
        if self._starting:
            return False  # a refill in flight: not idle, whatever the clock says
        return time.monotonic() - self._quiet_since >= self.idle_s

    def _needs_work(self) -> bool:
        if self._idle():
            self._target = self.min_size
        return len(self._ready) + self._starting < self._target or len(self._ready) > self._target

    def _time_to_shrink(self) -> float | None:
        if self._target <= self.min_size:
            return None
        return max(self.idle_s - (time.monotonic() - self._quiet_since), 0.01)

    def _take_surplus_locked(self) -> Sandbox | None:
        if len(self._ready) > self._target:
            return self._ready.popleft()
        return None
