"""Sessions: many queries over one context, with one sandbox and one conversation.

`rlm.session(context)` starts one sandbox and loads the context into it once. Each
`completion(query)` is a completion tree of its own (its own budget under
`rlm.limits`, its own trajectory) whose root node continues the same conversation
in the same REPL, so variables, imports and what the model learnt carry over. An
optional session budget (`Limits`) caps calls, tokens, cost and wall time across all
queries: each query's limits are narrowed to what the session has left.

Closing the session (or leaving its `with` block) removes the container. Cancelling
a query (Ctrl-C, a cancelled task) stops its tree and closes the session too: the
code it was running is gone, and so is the state it held.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import SandboxClosedError
from .limits import Limits, ModelUsage, Usage
from .node import _Outcome, _Progress
from .output import OutputType
from .prompts import describe_context, follow_up_prompt
from .startup import LiveSandboxes, SandboxStart

if TYPE_CHECKING:
    from .history import Conversation
    from .rlm import RLM, RLMResult, _Tree
    from .sandbox.base import Sandbox

__all__ = ["Session"]


class Session:
    """A conversation with one RLM over one context. Use as a context manager.

    >>> with rlm.session(context, budget=Limits(max_cost_usd=1.0)) as chat:
    ...     print(chat.completion("Which customers complained twice?").answer)
    ...     print(chat.completion("Of those, who was refunded?").answer)
    """

    def __init__(self, rlm: RLM, context: str | list | dict, *, budget: Limits | None = None) -> None:
        self.rlm = rlm
        self.budget = budget
        self._info = describe_context(context)
        self._conversation: Conversation | None = None
        self._spent = ModelUsage()
        self._started = time.monotonic()
        self._busy = threading.Lock()  # one query at a time: they share one REPL
        self._closed = False
        self._current: tuple[_Tree, int] | None = None
        self.queries = 0
        self.sandboxes_started = 0
        self._live = LiveSandboxes()
        handlers: dict[str, Any] = {"llm_handler": self._route_plain}
        if rlm.limits.max_depth > 1:
            handlers["rlm_handler"] = self._route_recursive
        # Started now, so it comes up while the caller types (or the first model call runs).
        self._start = SandboxStart(self._make_sandbox, handlers, context, self._live, on_ready=self._ready)

    # ------------------------------------------------------------- queries

    def completion(self, query: str, *, output: OutputType | None = None) -> RLMResult:
        """Answer `query`, continuing the conversation; never raises for model or sandbox failures."""
        self._check_open()  # before the lock: a cancelled query may still hold it
        with self._busy:
            self._check_open()
            limits, refusal = self._query_limits()
            run = self.rlm._tree_run(query, self._info, output, limits=limits, live=self._live)
            if refusal is not None:
                result = run.execute(
                    lambda tree: _Outcome(answer=None, stop_reason="budget", iterations=0, error=refusal)
                )
            else:
                result = run.execute(lambda tree: self._turn(tree, query))
            self.queries += 1
            self._add_usage(result.usage)
            if self._live.cancelled.is_set():
                self._close_now()
            return result

    async def acompletion(self, query: str, *, output: OutputType | None = None) -> RLMResult:
        """`completion()` without blocking the event loop; cancelling it closes the session."""
        from .aio import run_in_thread

        return await run_in_thread(lambda: self.completion(query, output=output), self._cancel)

    def _ready(self, seconds: float) -> None:
        self.sandboxes_started += 1
        self.start_s = seconds

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError("this session is closed; start a new one with rlm.session(context)")

    def _turn(self, tree: _Tree, query: str) -> _Outcome:
        node = next(tree._node_ids)
        tree.trajectory.emit("node_start", node=node, parent=None, depth=0, query=query, session_query=self.queries)
        self._current = (tree, node)
        if self._conversation is None:
            self._conversation = tree.new_conversation(self._info, query, 0)
        else:
            text = follow_up_prompt(query)
            if tree.output is not None:
                text = f"{text}\n\n{_output_note(tree)}"
            self._conversation.follow_up(text)
        conversation = self._conversation
        progress = _Progress()
        try:
            return tree._guarded(node, progress, lambda: tree._turns(conversation, self._start, node, 0, progress))
        finally:
            self._current = None

    # Sub-calls from the session's sandbox go to the tree of the query that is running.

    def _route_plain(self, prompts: list[str], model: str | None, images: list[list[str]] | None = None) -> list[str]:
        tree, node = self._running()
        return tree.router._plain_handler(node, 0)(prompts, model, images)

    def _route_recursive(
        self, prompts: list[str], model: str | None, images: list[list[str]] | None = None
    ) -> list[str]:
        tree, node = self._running()
        return tree.router._recursive_handler(node, 0)(prompts, model, images)

    def _route_tool(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        tree, node = self._running()
        router = tree.router
        return router._tool_handler(router.tools_for(0), node, 0)(name, args, kwargs)

    def _make_sandbox(self, **handlers: Any) -> Sandbox:
        """The session's one sandbox, with the root's tools routed to whichever query runs."""
        sandbox = self.rlm._sandbox_factory(**handlers)
        sandbox.host_call_workers = self.rlm.limits.max_concurrency
        if self.rlm.tools:
            sandbox.set_tools([tool.spec() for tool in self.rlm.tools.values()], self._route_tool)
        return sandbox

    def _running(self) -> tuple[_Tree, int]:
        current = self._current
        if current is None:
            raise SandboxClosedError("no query of this session is running")
        return current

    # ------------------------------------------------------------- budget

    def _query_limits(self) -> tuple[Limits, str | None]:
        """The per-query limits, narrowed to what the session budget has left, and why
        nothing is left (None while something is)."""
        limits = self.rlm.limits
        cap = self.budget
        if cap is None:
            return limits, None
        spent = self._spent
        elapsed = time.monotonic() - self._started
        left = {
            "max_llm_calls": None if cap.max_llm_calls is None else cap.max_llm_calls - spent.calls,
            "max_tokens": None if cap.max_tokens is None else cap.max_tokens - spent.tokens,
            "max_cost_usd": None if cap.max_cost_usd is None else cap.max_cost_usd - spent.cost_usd,
            "timeout_s": None if cap.timeout_s is None else cap.timeout_s - elapsed,
        }
        for name, value in left.items():
            if value is not None and value <= 0:
                return limits, f"the session budget is used up ({name}={getattr(cap, name)}); start a new session"
        narrowed = {
            name: value if getattr(limits, name) is None else min(getattr(limits, name), value)
            for name, value in left.items()
            if value is not None
        }
        return limits.model_copy(update=narrowed), None

    def _add_usage(self, usage: Usage) -> None:
        total = usage.total
        self._spent.calls += total.calls
        self._spent.input_tokens += total.input_tokens
        self._spent.output_tokens += total.output_tokens
        self._spent.cost_usd += total.cost_usd
        self._spent.cached_input_tokens += total.cached_input_tokens
        self._spent.reasoning_tokens += total.reasoning_tokens

    @property
    def usage(self) -> ModelUsage:
        """What all queries of the session spent together."""
        return self._spent.model_copy()

    # ------------------------------------------------------------- lifecycle

    def _cancel(self) -> None:
        """From another thread: stop the running query's tree and the session's sandbox now."""
        self._live.kill_all()
        self._close_now()
        self._live.wait_for_starts(3.0)

    def _close_now(self) -> None:
        self._closed = True
        self._start.discard(now=True)

    def close(self) -> None:
        """Remove the session's container (at once, even mid-start). Idempotent."""
        self._close_now()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _output_note(tree: _Tree) -> str:
    from .prompts import output_instructions

    assert tree.output is not None
    return output_instructions(tree.output.schema_text())
