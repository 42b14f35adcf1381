"""A node's sandbox, started and loaded with its context while the model thinks.

The first model call of a node needs only the context's description, which the
host already has; only the first exec needs the sandbox. So a node starts its
sandbox and streams its context on a worker thread (`SandboxStart`) and makes its
first model call at the same time; `get()` waits for whatever is still running.
A node that answers without code never waits at all: `discard()` hands the
sandbox to the worker, which tears it down once it is up.

Every sandbox is registered in the tree's live set the moment it exists, so a
cancelled tree (Ctrl-C, a cancelled asyncio task) kills it even mid-start, and
the worker removes whatever it was starting.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import SandboxClosedError
from .sandbox.base import Sandbox

__all__ = ["LiveSandboxes", "SandboxStart"]

# How often a waiter looks at the cancel flag: the bound on how late a cancel is seen.
_POLL_S = 0.05
# At interpreter exit, how long starts still under way get to remove what they made.
_EXIT_WAIT_S = 15.0

# Start workers are daemon threads (Ctrl-C must not wait on Docker), so a process that
# exits right after its answer (a CLI run, an MCP server shutting down) would kill one
# between "container created" and "container removed" and leave a Created container
# behind. At exit, each worker gets a bounded time to finish its teardown.
_workers: set[threading.Thread] = set()
_workers_lock = threading.Lock()


@atexit.register
def _finish_starts_at_exit() -> None:
    deadline = time.monotonic() + _EXIT_WAIT_S
    with _workers_lock:
        workers = list(_workers)
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))


class LiveSandboxes:
    """The sandboxes of one completion tree that are starting or in use, for cancel()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sandboxes: set[Sandbox] = set()
        self._starters: set[threading.Thread] = set()
        self.cancelled = threading.Event()

    def add(self, sandbox: Sandbox) -> None:
        with self._lock:
            self._sandboxes.add(sandbox)

    def discard(self, sandbox: Sandbox) -> None:
        with self._lock:
            self._sandboxes.discard(sandbox)

    def kill_all(self) -> None:
        self.cancelled.set()
        with self._lock:
            live = list(self._sandboxes)
        for sandbox in live:
            sandbox.kill()

    def starting(self, thread: threading.Thread) -> None:
        with self._lock:
            self._starters = {t for t in self._starters if t.is_alive()}
            self._starters.add(thread)

    def wait_for_starts(self, timeout_s: float) -> None:
        """After kill_all(), before the process exits: let starts under way remove what
        they were creating (a container the daemon finishes creating after the process
        is gone would stay behind, never started, until the next `gc`)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            starters = list(self._starters)
        for thread in starters:
            thread.join(max(0.0, deadline - time.monotonic()))

    def check(self) -> None:
        if self.cancelled.is_set():
            raise SandboxClosedError("the completion was interrupted; its sandboxes were stopped")


class SandboxStart:
    """One sandbox being created, started and loaded with `context` on a daemon thread.

    `factory(**handlers)` makes the sandbox (a pool hands out one already started).
    `on_ready(seconds)` is called once the context is loaded, with the time it took.
    """

    def __init__(
        self,
        factory: Callable[..., Sandbox],
        handlers: dict[str, Any],
        context: Any,
        live: LiveSandboxes,
        on_ready: Callable[[float], None] | None = None,
    ) -> None:
        self._factory = factory
        self._handlers = handlers
        self._context = context
        self._live = live
        self._on_ready = on_ready
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._sandbox: Sandbox | None = None
        self._error: BaseException | None = None
        self._discarded = False
        self._finished = False
        # A daemon thread: an interrupted process must not wait for Docker to exit; the
        # container of a half-started sandbox sees its stdin close and removes itself.
        self._thread = threading.Thread(target=self._run, name="rlm-sandbox-start", daemon=True)
        live.starting(self._thread)
        with _workers_lock:
            _workers.add(self._thread)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        sandbox: Sandbox | None = None
        try:
            self._check()
            sandbox = self._factory(**self._handlers)
            self._live.add(sandbox)
            with self._lock:
                self._sandbox = sandbox
            self._check()
            if self._context is not _NO_CONTEXT and not sandbox.is_running:
                # Sized before its container exists, so no container is made twice (a
                # pooled sandbox is running already: load_context() resizes it).
                sandbox.size_for(self._context)
            sandbox.start()
            if self._context is not _NO_CONTEXT:
                self._check()
                sandbox.load_context(self._context)
            self._context = None  # the caller may free a large context once it is loaded
            if self._on_ready is not None:
                self._on_ready(time.monotonic() - started)
        except BaseException as exc:
            self._error = exc
            if sandbox is not None:
                self._live.discard(sandbox)
                sandbox.close()
        # Exactly one side tears down a discarded sandbox: whichever sees the other's flag.
        with self._lock:
            self._finished = True
            discarded = self._discarded
        self._done.set()
        if discarded and self._error is None and sandbox is not None:
            self._live.discard(sandbox)
            sandbox.close()
        with _workers_lock:
            _workers.discard(threading.current_thread())

    def _check(self) -> None:
        self._live.check()
        if self._discarded:
            raise SandboxClosedError("the node no longer needs this sandbox")

    @property
    def discarded(self) -> bool:
        return self._discarded

    @property
    def failure(self) -> BaseException | None:
        """What the start raised, once it has finished; None while it runs or if it worked."""
        return self._error if self._done.is_set() else None

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self._error is None

    def get(self, timeout_s: float | None = None) -> Sandbox:
        """The started sandbox with its context, waiting for it if need be.

        Raises what the start raised (a SandboxError, as a start without overlap would),
        SandboxClosedError once the tree is cancelled, and TimeoutError after `timeout_s`.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._done.wait(_POLL_S):
            self._live.check()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("the sandbox was still starting")
        if self._error is not None:
            raise self._error
        assert self._sandbox is not None
        return self._sandbox

    def discard(self, *, now: bool = False) -> None:
        """Tear the sandbox down, without waiting: in the background once it is up, or,
        with `now`, kill it at once even mid-start (for a node that failed or was cancelled)."""
        with self._lock:
            self._discarded = True
            sandbox = self._sandbox
            finished = self._finished
        if sandbox is None:
            return  # never made (or failed); a worker still running closes what it makes
        if now:
            self._live.discard(sandbox)
            sandbox.kill()
        elif finished and self._error is None:
            self._live.discard(sandbox)
            sandbox.close_in_background()


class _NoContext:
    """Marks a start without a context to load (a session loads its own)."""


_NO_CONTEXT: Any = _NoContext()
