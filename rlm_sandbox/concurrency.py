"""Tree-wide bounds of one completion: host calls in flight, and live sandboxes.

`HostCallGate` lets at most `Limits.max_concurrency` host calls run at once across the
whole tree of one completion: sub-model calls (`llm_query`, each prompt of a batch),
the model turns of child RLMs and tool calls. Only leaf work holds a slot: a parent
waiting on a child RLM holds none, so the child can always get the slot it needs, and
no depth or fan-out can deadlock on the gate.

`SandboxSlots` caps the sandboxes alive at once (`Limits.max_sandboxes`). A new node
waits for a slot while some live node can still finish; when every live sandbox
belongs to a node that is itself waiting on child RLMs, waiting could never end, so
the request fails at once with SandboxLimitError, which reaches the asking code in the
sandbox as an error it can handle.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import SandboxLimitError

# How often a waiter wakes to notice cancellation or the deadline.
_POLL_S = 0.1


def default_max_sandboxes() -> int:
    """Live sandboxes a completion may hold by default: sized to the host.

    Each sandbox is a container with a 512 MiB memory limit and one CPU by default.
    More than a few per core only queue for the CPU, and their memory limits should
    fit in half the host's RAM: the smaller of 4 per CPU and RAM / 2 / 512 MiB, at
    least 4 and at most 64.
    """
    by_cpu = 4 * (os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        by_memory = memory // 2 // (512 * 1024 * 1024)
    except (ValueError, OSError, AttributeError):  # not every platform reports it
        by_memory = by_cpu
    return max(4, min(64, by_cpu, by_memory))


class HostCallGate:
    """A counting gate with a peak gauge. Thread-safe; shared by one completion tree."""

    def __init__(self, limit: int, *, should_stop: Callable[[], None] = lambda: None) -> None:
        if limit < 1:
            raise ValueError("the gate needs a limit of at least 1")
        self.limit = limit
        self._should_stop = should_stop
        self._condition = threading.Condition()
        self._in_flight = 0
        self.peak = 0

    @property
    def in_flight(self) -> int:
        with self._condition:
            return self._in_flight

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the body. `should_stop` may raise (cancel, deadline) while waiting."""
        with self._condition:
            while self._in_flight >= self.limit:
                self._condition.wait(_POLL_S)
                if self._in_flight >= self.limit:
                    self._should_stop()
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify()


class SandboxSlots:
    """At most `limit` live sandboxes in one tree, without deadlocking nested RLMs."""

    def __init__(self, limit: int, *, should_stop: Callable[[], None] = lambda: None) -> None:
        if limit < 1:
            raise ValueError("max_sandboxes must be at least 1")
        self.limit = limit
        self._should_stop = should_stop
        self._condition = threading.Condition()
        self._live = 0
        self._waiting_parents: dict[int, int] = {}  # node -> rlm_query calls outstanding
        self.peak = 0

    @property
    def live(self) -> int:
        with self._condition:
            return self._live

    def acquire(self) -> None:
        with self._condition:
            while self._live >= self.limit:
                if len(self._waiting_parents) >= self._live:
                    # Every live sandbox waits on a child: none will ever be freed.
                    raise SandboxLimitError(
                        f"max_sandboxes={self.limit} sandboxes are alive and every one is waiting on a "
                        "sub-RLM, so another cannot start; use fewer nested rlm_query calls, llm_query for "
                        "simple sub-tasks, or raise Limits.max_sandboxes"
                    )
                self._condition.wait(_POLL_S)
                self._should_stop()
            self._live += 1
            self.peak = max(self.peak, self._live)

    def release(self) -> None:
        with self._condition:
            self._live -= 1
            self._condition.notify_all()

    @contextmanager
    def parent_waiting(self, node: int) -> Iterator[None]:
        """Mark `node` as blocked on child RLMs for the body (nests across threads)."""
        with self._condition:
            self._waiting_parents[node] = self._waiting_parents.get(node, 0) + 1
            # A child that was waiting may now have to give up rather than wait for ever.
            self._condition.notify_all()
        try:
            yield
        finally:
            with self._condition:
                count = self._waiting_parents[node] - 1
                if count:
                    self._waiting_parents[node] = count
                else:
                    del self._waiting_parents[node]
                self._condition.notify_all()
