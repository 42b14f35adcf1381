"""Routing of host calls from a node's sandbox: sub-model calls, child RLMs and tools.

Every host call a sandbox can make follows one rule: a request on the channel,
validated on the host, counted against the shared budget, answered or refused by the
host. This module holds the answering side for one completion tree: the handlers a
node's sandbox gets, the tree-wide gate that bounds host calls in flight
(`Limits.max_concurrency`) and the cap on live sandboxes (`Limits.max_sandboxes`).

Only leaf work holds a gate slot: a sub-model call, a child node's model turn, a tool
call. A parent waiting on a child RLM holds none, so nesting cannot deadlock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .concurrency import HostCallGate, SandboxSlots, default_max_sandboxes
from .errors import BudgetExceededError, CompletionTimeoutError, LMError
from .images import check_image, user_message
from .lm import complete_within_budget
from .parsing import split_reasoning
from .tools import Tool, ToolCalls

if TYPE_CHECKING:
    from .rlm import _Tree
    from .sandbox.base import Sandbox

# What a child node is asked: its whole task is the prompt, loaded as its context.
CHILD_QUERY = (
    "The variable `context` holds a task written by another model, possibly with data to work on. "
    "Carry out that task and give its result as your final answer."
)


class Router:
    """The host-call side of one completion tree."""

    def __init__(self, tree: _Tree) -> None:
        self.tree = tree
        limits = tree.rlm.limits
        self.gate = HostCallGate(limits.max_concurrency, should_stop=self._should_stop)
        max_sandboxes = getattr(limits, "max_sandboxes", None) or default_max_sandboxes()
        self.slots = SandboxSlots(max_sandboxes, should_stop=self._should_stop)
        self.tool_calls = ToolCalls(
            max_calls=getattr(limits, "max_tool_calls", None),
            deadline_s=tree.budget.remaining_s,
            on_call=lambda **event: tree.trajectory.emit("tool_call", **event),
        )
        self.images_sent = 0
        self._lock = threading.Lock()

    def _should_stop(self) -> None:
        self.tree._check_cancelled()
        self.tree.budget.check_deadline()

    # ------------------------------------------------------------- wiring a node

    def tools_for(self, depth: int) -> dict[str, Tool]:
        """Grants only narrow: the root gets `tools`, every child `sub_tools`."""
        rlm = self.tree.rlm
        return dict(getattr(rlm, "tools", {}) if depth == 0 else getattr(rlm, "sub_tools", {}))

    def handlers(self, node: int, depth: int) -> dict[str, Any]:
        handlers: dict[str, Any] = {"llm_handler": self._plain_handler(node, depth)}
        if depth + 1 < self.tree.rlm.limits.max_depth:
            handlers["rlm_handler"] = self._recursive_handler(node, depth)
        return handlers

    def attach(self, sandbox: Sandbox, node: int, depth: int) -> None:
        """Give a node's sandbox its tools and its host-call workers (before or after
        it started: a pooled one is running already)."""
        sandbox.host_call_workers = self.tree.rlm.limits.max_concurrency
        tools = self.tools_for(depth)
        if tools:
            sandbox.set_tools([tool.spec() for tool in tools.values()], self._tool_handler(tools, node, depth))

    # ------------------------------------------------------------- handlers

    def _plain_handler(self, node: int, depth: int) -> Callable[..., list[str]]:
        def handle(prompts: list[str], model: str | None, images: list[list[str]] | None = None) -> list[str]:
            name = model or self.tree.rlm.sub_model
            if images is not None:
                if len(images) != len(prompts):  # the sandbox's word; a short list must not drop prompts
                    raise ValueError(f"{len(images)} image lists for {len(prompts)} prompts: give one list per prompt")
                for group in images:  # every image is checked before any call is made
                    for url in group:
                        check_image(url)
            pairs = list(zip(prompts, images or [[] for _ in prompts], strict=True))
            return self._fan_out(pairs, lambda pair: self._plain_call(pair[0], pair[1], name, node, depth))

        return handle

    def _recursive_handler(self, node: int, depth: int) -> Callable[..., list[str]]:
        def handle(prompts: list[str], model: str | None, images: list[list[str]] | None = None) -> list[str]:
            if images:
                raise ValueError("rlm_query takes no images; use llm_query(prompt, images=[...])")
            with self.slots.parent_waiting(node):
                return self._fan_out(
                    [(prompt, []) for prompt in prompts], lambda pair: self._child_call(pair[0], node, depth)
                )

        return handle

    def _tool_handler(self, tools: dict[str, Tool], node: int, depth: int) -> Callable[[str, list, dict], str]:
        def handle(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
            tool = tools.get(name)
            if tool is None:
                self.tool_calls.unknown(name, sorted(tools), node=node, depth=depth)
            with self.gate.slot():
                return self.tool_calls.call(tool, args, kwargs, node=node, depth=depth)

        return handle

    # ------------------------------------------------------------- calls

    def _plain_call(self, prompt: str, images: list[str], model: str, node: int, depth: int) -> str:
        tree = self.tree
        started = time.monotonic()
        error = None
        response = None
        try:
            with self.gate.slot():
                response = complete_within_budget(
                    tree.rlm.sub_client,
                    tree.budget,
                    [user_message(prompt, images)],
                    model=model,
                    timeout_s=tree.rlm.limits.llm_timeout_s,
                    max_output_tokens=tree.rlm.limits.max_output_tokens,
                    context_window=tree.context_window(model, tree.rlm.sub_client),
                )
            return split_reasoning(response.text)[0]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if images:
                with self._lock:
                    self.images_sent += len(images)
            tree.trajectory.emit(
                "sub_call",
                kind="llm",
                node=node,
                depth=depth,
                model=model,
                prompt_chars=len(prompt),
                images=len(images),
                duration_s=round(time.monotonic() - started, 6),
                error=error,
                # Tokens and cost of the call, when it was answered (traces and the page show them).
                **(
                    {}
                    if response is None
                    else {
                        "input_tokens": response.input_tokens,
                        "output_tokens": response.output_tokens,
                        "cost_usd": response.cost_usd,
                    }
                ),
            )

    def _child_call(self, prompt: str, node: int, depth: int) -> str:
        tree = self.tree
        started = time.monotonic()
        # The child's id is taken here so the sub_call event can name it (traces pair them).
        child = next(tree._node_ids)
        outcome = tree.run_node(prompt, CHILD_QUERY, depth=depth + 1, parent=node, node=child)
        tree.trajectory.emit(
            "sub_call",
            kind="rlm",
            node=node,
            child=child,
            depth=depth,
            stop_reason=outcome.stop_reason,
            prompt_chars=len(prompt),
            duration_s=round(time.monotonic() - started, 6),
            error=outcome.error,
        )
        if outcome.stop_reason == "timeout":
            raise CompletionTimeoutError(outcome.error or "the completion's deadline passed in a sub-RLM")
        if outcome.stop_reason == "budget":
            raise BudgetExceededError(outcome.error or "the budget ran out in a sub-RLM")
        if outcome.stop_reason == "error" or outcome.answer is None:
            # A child that failed says why, even when it had written some prose first:
            # its partial answer is not an answer the parent code should trust.
            raise LMError(f"the sub-RLM gave no answer ({outcome.stop_reason}: {outcome.error or 'no detail'})")
        return outcome.answer

    def _fan_out(self, items: list[Any], call: Callable[[Any], str]) -> list[str]:
        """Run `call` on every item, on up to max_concurrency threads (the gate bounds the calls).

        One item: its exception reaches the sandbox code as is. Several: a failed
        item's slot carries an error string instead, unless every item was refused by
        the budget or the deadline, which is raised so the code can stop.
        """
        if len(items) == 1:
            return [call(items[0])]
        workers = min(self.tree.rlm.limits.max_concurrency, len(items))
        errors: list[BaseException | None] = [None] * len(items)
        answers: list[str] = [""] * len(items)
        indexes = iter(range(len(items)))
        take = threading.Lock()

        def work() -> None:
            while True:
                with take:
                    index = next(indexes, None)
                if index is None:
                    return
                try:
                    self.tree._check_cancelled()
                    answers[index] = call(items[index])
                except Exception as exc:
                    errors[index] = exc
                    answers[index] = f"[error: {type(exc).__name__}: {exc}]"

        # Daemon threads, not a ThreadPoolExecutor: on Ctrl-C the main thread leaves the
        # join at once, and the process can exit without waiting for model calls in
        # flight (an executor's workers are joined at exit, up to llm_timeout_s later).
        threads = [threading.Thread(target=work, name="rlm-batch", daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if all(isinstance(error, BudgetExceededError) for error in errors):
            raise errors[0]  # type: ignore[misc]
        return answers
