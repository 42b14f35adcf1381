"""RLM: the root loop, recursion through rlm_query, and the result.

One `completion()` builds a tree of nodes. Each node has its own sandbox holding its
context and runs the model <-> REPL loop; `rlm_query` from a node's code starts a child
node (with its own sandbox) while depth allows. Every node of the tree charges the same
`Budget`, so calls, tokens, cost and the deadline are shared and enforced on the host.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import SandboxClosedError, ToolDefinitionError
from .limits import Budget, Limits, Usage
from .lm import LMClient
from .node import StopReason, _NodeLoop, _Outcome
from .output import OutputSpec, OutputType
from .prices import price_source
from .prompts import ContextInfo, describe_context
from .providers import check_provider, client_for
from .routing import CHILD_QUERY, Router  # noqa: F401 - CHILD_QUERY: re-exported for callers of rlm
from .sandbox.base import Sandbox
from .sandbox.config import SandboxConfig
from .startup import LiveSandboxes
from .tools import ToolsArg, normalize_tools
from .trajectory import Listener, LiveView, Trajectory

if TYPE_CHECKING:
    from .sandbox.pool import SandboxPool
    from .session import Session


class Timings(BaseModel):
    """Where the wall time went, summed over every node of the tree."""

    model_s: float = 0.0
    exec_s: float = 0.0
    sandbox_start_s: float = 0.0
    """Time sandboxes took to start and load their context (overlapped with model calls)."""
    sandbox_wait_s: float = 0.0
    """The part of sandbox starts that nodes waited for: what the overlap did not hide."""


class RLMResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    answer: str | None
    stop_reason: StopReason
    usage: Usage
    iterations: int
    elapsed_s: float
    trajectory_path: str | None = None
    error: str | None = None
    timings: Timings = Field(default_factory=Timings)
    sandboxes_started: int = 0
    parsed: Any = None
    """The validated answer of `completion(..., output=...)`: a model instance or a JSON value."""


SandboxFactory = Callable[..., Sandbox]

# On Ctrl-C, how long a sandbox start under way may take to remove what it created.
_CTRL_C_START_WAIT_S = 3.0


class RLM:
    """A Recursive Language Model whose code runs in a sandbox.

    `sandbox`: True for DockerSandbox with the hardened defaults, a SandboxConfig to
    tune it, False for LocalSandbox (no isolation: development only), or a callable
    `(llm_handler=..., rlm_handler=...) -> Sandbox` for anything else.
    `pool`: a `SandboxPool` whose warm sandboxes every node of the tree (children
    included) takes, so no container start is on the critical path; the caller owns
    and closes it. Without one, each node starts its own sandbox, overlapped with its
    first model call.
    `provider`: "openai" (the openai SDK, any OpenAI-compatible endpoint) or "litellm"
    (providers' native APIs through LiteLLM, `rlm-sandbox[litellm]`; `model` is then a
    LiteLLM name such as "anthropic/claude-sonnet-4-5", its key from the provider's
    usual variable). `sub_model` calls go through the same provider.
    `client` / `sub_client` replace the client `provider` would build (e.g. the
    scripted demo model).

    >>> rlm = RLM("gpt-5-mini", limits=Limits(max_depth=2))
    >>> rlm.completion(open("book.txt").read(), "Who is the narrator?").answer
    """

    # False: a node waits for its sandbox before its first model call, the order before
    # the overlapped start; kept for the benchmark that compares the two.
    _overlap_start = True

    def __init__(
        self,
        model: str = "gpt-5-mini",
        sub_model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        sandbox: bool | SandboxConfig | SandboxFactory = True,
        limits: Limits | None = None,
        log_dir: str | Path | None = None,
        verbose: bool = False,
        *,
        client: LMClient | None = None,
        sub_client: LMClient | None = None,
        listeners: list[Listener] | None = None,
        pool: SandboxPool | None = None,
        tools: ToolsArg = None,
        sub_tools: ToolsArg = None,
        provider: str = "openai",
    ) -> None:
        check_provider(provider)
        self.model = model
        self.provider = provider
        self.sub_model = sub_model or model
        self.limits = limits or Limits()
        self.log_dir = log_dir
        self.verbose = verbose
        self.client = client or client_for(provider, model, base_url=base_url, api_key=api_key)
        self.sub_client = sub_client or self.client
        self.pool = pool
        self._sandbox_factory = pool if pool is not None else _sandbox_factory(sandbox, self.limits)
        self._listeners = list(listeners or [])
        # Host tools: the root's, and the (narrower) set every child RLM gets.
        self.tools = normalize_tools(tools)
        self.sub_tools = normalize_tools(sub_tools)
        for name, tool in self.sub_tools.items():
            if name not in self.tools or self.tools[name].fn != tool.fn:
                raise ToolDefinitionError(f"sub_tools may only narrow tools: {name!r} is not one of tools")

    def completion(self, context: str | list | dict, query: str, *, output: OutputType | None = None) -> RLMResult:
        """Answer `query` about `context`, however large. Never raises for model or sandbox failures.

        `output`: a pydantic model class or a JSON-schema dict the answer must match; the
        model is shown what is wrong until it does (within its turns), and
        `result.parsed` holds the validated value.
        """
        run = self._tree_run(query, describe_context(context), output)
        return run.execute(lambda tree: tree.run_node(context, query, depth=0, parent=None))

    async def acompletion(
        self, context: str | list | dict, query: str, *, output: OutputType | None = None
    ) -> RLMResult:
        """`completion()` without blocking the event loop. Cancelling the task stops the
        whole tree and removes its containers at once."""
        from .aio import Cancellable, run_in_thread

        handle = Cancellable()

        def run() -> RLMResult:
            tree_run = self._tree_run(query, describe_context(context), output)
            handle.attach(tree_run.cancel)
            return tree_run.execute(lambda tree: tree.run_node(context, query, depth=0, parent=None))

        return await run_in_thread(run, handle.cancel)

    def session(self, context: str | list | dict, *, budget: Limits | None = None) -> Session:
        """A conversation over one context: one sandbox, loaded once, whose variables and
        history carry from query to query. `budget` caps the whole session; `self.limits`
        apply to each query. Use as a context manager; closing it removes the container.

        >>> with rlm.session(context) as chat:
        ...     chat.completion("How many records are there?")
        ...     chat.completion("And how many of them are from 2024?")
        """
        from .session import Session

        return Session(self, context, budget=budget)

    def _tree_run(
        self,
        query: str,
        context_info: ContextInfo,
        output: OutputType | None,
        *,
        limits: Limits | None = None,
        live: LiveSandboxes | None = None,
    ) -> _TreeRun:
        limits = limits or self.limits
        budget = Budget(limits)
        listeners = list(self._listeners)
        if self.verbose:
            listeners.append(LiveView())
        trajectory = Trajectory(self.log_dir, listeners)
        tree = _Tree(self, budget, trajectory)
        if live is not None:
            tree._live, tree.cancelled = live, live.cancelled
        if output is not None:
            tree.output = OutputSpec(output)
        trajectory.emit(
            "metadata",
            run_id=trajectory.run_id,
            model=self.model,
            sub_model=self.sub_model,
            query=query,
            context=context_info.model_dump(),
            limits=limits.model_dump(),
            prices=price_source(),
        )
        return _TreeRun(tree)


class _TreeRun:
    """One completion tree, made before it runs so that another thread can cancel it."""

    def __init__(self, tree: _Tree) -> None:
        self.tree = tree

    def cancel(self) -> None:
        """From another thread: kill the tree's sandboxes, and return once they are gone."""
        self.tree.cancel()
        self.tree._live.wait_for_starts(_CTRL_C_START_WAIT_S)

    def execute(self, work: Callable[[_Tree], _Outcome]) -> RLMResult:
        tree, trajectory, budget = self.tree, self.tree.trajectory, self.tree.budget
        try:
            outcome = work(tree)
        except KeyboardInterrupt:
            # Ctrl-C reaches the main thread only: stop the nodes running on other threads
            # (batched sub-calls, child RLMs) and their containers too, at once.
            tree.cancel()
            tree._live.wait_for_starts(_CTRL_C_START_WAIT_S)
            trajectory.emit("interrupted")
            trajectory.close()
            raise
        except SandboxClosedError as exc:
            if not tree.cancelled.is_set():
                raise
            # Cancelled from another thread (an asyncio task): the caller is gone or
            # no longer waiting; the result says so should anyone read it.
            trajectory.emit("interrupted")
            outcome = _Outcome(answer=None, stop_reason="error", iterations=0, error=f"cancelled: {exc}")
        result = RLMResult(
            answer=outcome.answer,
            stop_reason=outcome.stop_reason,
            usage=budget.usage(),
            iterations=outcome.iterations,
            elapsed_s=budget.elapsed_s(),
            trajectory_path=str(trajectory.path) if trajectory.path else None,
            error=outcome.error,
            timings=tree.timings,
            sandboxes_started=tree.sandboxes_started,
            parsed=outcome.parsed,
        )
        trajectory.emit("result", **result.model_dump(exclude={"trajectory_path"}))
        trajectory.close()
        return result


def _sandbox_factory(sandbox: bool | SandboxConfig | SandboxFactory, limits: Limits) -> SandboxFactory:
    if callable(sandbox) and not isinstance(sandbox, (bool, SandboxConfig)):
        return sandbox
    if sandbox is False:
        from .sandbox.local import LocalSandbox

        config = SandboxConfig(exec_timeout_s=limits.exec_timeout_s)
        return lambda **handlers: LocalSandbox(config, **handlers)
    from .sandbox.docker import DockerSandbox

    config = sandbox if isinstance(sandbox, SandboxConfig) else SandboxConfig(exec_timeout_s=limits.exec_timeout_s)
    return lambda **handlers: DockerSandbox(config, **handlers)


class _Tree(_NodeLoop):
    """State shared by all nodes of one completion, and the routing of their sub-calls.

    The node loop itself (`run_node` and its steps) lives in node.py.
    """

    def __init__(self, rlm: RLM, budget: Budget, trajectory: Trajectory) -> None:
        self.rlm = rlm
        self.budget = budget
        self.trajectory = trajectory
        self.timings = Timings()
        self.sandboxes_started = 0
        self._node_ids = itertools.count()
        self._lock = threading.Lock()
        self._live = LiveSandboxes()  # starting or in use: what cancel() kills
        self.cancelled = self._live.cancelled
        self.router = Router(self)

    def cancel(self) -> None:
        """Stop the whole tree now: every node's sandbox is killed, and no node starts
        another model call, exec or sandbox."""
        self._live.kill_all()

    def _check_cancelled(self) -> None:
        self._live.check()

    def _add_time(self, field: str, seconds: float) -> None:
        with self._lock:
            setattr(self.timings, field, getattr(self.timings, field) + seconds)
