"""RLM: the root loop, recursion through rlm_query, and the result.

One `completion()` builds a tree of nodes. Each node has its own sandbox holding its
context and runs the model <-> REPL loop; `rlm_query` from a node's code starts a child
node (with its own sandbox) while depth allows. Every node of the tree charges the same
`Budget`, so calls, tokens, cost and the deadline are shared and enforced on the host.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from .errors import BudgetExceededError, CompletionTimeoutError, LMError, SandboxClosedError, SandboxError
from .limits import Budget, Limits, Usage
from .lm import LMClient, OpenAIClient, complete_within_budget
from .parsing import FinalAnswer, find_code_blocks, find_final
from .prompts import (
    describe_context,
    final_request,
    format_exec_output,
    no_code_nudge,
    system_prompt,
    task_prompt,
    turn_prompt,
)
from .sandbox.base import ExecResult, Sandbox
from .sandbox.config import SandboxConfig
from .trajectory import Listener, LiveView, Trajectory

StopReason = Literal["final", "max_iterations", "budget", "timeout", "error"]

# What a child node is asked: its whole task is the prompt, loaded as its context.
CHILD_QUERY = (
    "The variable `context` holds a task written by another model, possibly with data to work on. "
    "Carry out that task and give its result as your final answer."
)


class Timings(BaseModel):
    """Where the wall time went, summed over every node of the tree."""

    model_s: float = 0.0
    exec_s: float = 0.0
    sandbox_start_s: float = 0.0


class RLMResult(BaseModel):
    answer: str | None
    stop_reason: StopReason
    usage: Usage
    iterations: int
    elapsed_s: float
    trajectory_path: str | None = None
    error: str | None = None
    timings: Timings = Field(default_factory=Timings)
    sandboxes_started: int = 0


SandboxFactory = Callable[..., Sandbox]


class RLM:
    """A Recursive Language Model whose code runs in a sandbox.

    `sandbox`: True for DockerSandbox with the hardened defaults, a SandboxConfig to
    tune it, False for LocalSandbox (no isolation: development only), or a callable
    `(llm_handler=..., rlm_handler=...) -> Sandbox` for anything else.
    `client` / `sub_client` replace the OpenAI-compatible client (e.g. the scripted
    demo model).
    """

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
    ) -> None:
        self.model = model
        self.sub_model = sub_model or model
        self.limits = limits or Limits()
        self.log_dir = log_dir
        self.verbose = verbose
        self.client = client or OpenAIClient(model, base_url=base_url, api_key=api_key)
        self.sub_client = sub_client or self.client
        self._sandbox_factory = _sandbox_factory(sandbox, self.limits)
        self._listeners = list(listeners or [])

    def completion(self, context: str | list | dict, query: str) -> RLMResult:
        """Answer `query` about `context`, however large. Never raises for model or sandbox failures."""
        budget = Budget(self.limits)
        listeners = list(self._listeners)
        if self.verbose:
            listeners.append(LiveView())
        trajectory = Trajectory(self.log_dir, listeners)
        tree = _Tree(self, budget, trajectory)
        trajectory.emit(
            "metadata",
            run_id=trajectory.run_id,
            model=self.model,
            sub_model=self.sub_model,
            query=query,
            context=describe_context(context).model_dump(),
            limits=self.limits.model_dump(),
        )
        try:
            outcome = tree.run_node(context, query, depth=0, parent=None)
        except KeyboardInterrupt:
            # Ctrl-C reaches the main thread only: stop the nodes running on other threads
            # (batched sub-calls, child RLMs) and their containers too, at once.
            tree.cancel()
            trajectory.emit("interrupted")
            trajectory.close()
            raise
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


def partial_answer(replies: list[str]) -> str | None:
    """For a run stopped early: the prose of the model's last reply (code removed), if any."""
    for reply in reversed(replies):
        prose = reply
        for block in find_code_blocks(reply):
            prose = prose.replace(block, "")
        prose = "\n".join(line for line in prose.splitlines() if not line.strip().startswith("```")).strip()
        if prose:
            return prose
    return None


class _Outcome(BaseModel):
    answer: str | None
    stop_reason: StopReason
    iterations: int
    error: str | None = None


class _Tree:
    """State shared by all nodes of one completion."""

    def __init__(self, rlm: RLM, budget: Budget, trajectory: Trajectory) -> None:
        self.rlm = rlm
        self.budget = budget
        self.trajectory = trajectory
        self.timings = Timings()
        self.sandboxes_started = 0
        self._node_ids = itertools.count()
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self._live_sandboxes: set[Sandbox] = set()

    def cancel(self) -> None:
        """Stop the whole tree now: every node's sandbox is killed, and no node starts
        another model call, exec or sandbox."""
        self.cancelled.set()
        with self._lock:
            live = list(self._live_sandboxes)
        for sandbox in live:
            sandbox.kill()

    def _check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise SandboxClosedError("the completion was interrupted; its sandboxes were stopped")

    def _add_time(self, field: str, seconds: float) -> None:
        with self._lock:
            setattr(self.timings, field, getattr(self.timings, field) + seconds)

    # ------------------------------------------------------------- one node

    def run_node(self, context: Any, query: str, *, depth: int, parent: int | None, node: int | None = None) -> _Outcome:
        node = next(self._node_ids) if node is None else node
        limits = self.rlm.limits
        emit = self.trajectory.emit
        emit("node_start", node=node, parent=parent, depth=depth, query=query)
        iterations = 0
        replies: list[str] = []
        try:
            self.budget.check_deadline()
            started = time.monotonic()
            handlers = {"llm_handler": self._plain_handler(node, depth)}
            if depth + 1 < limits.max_depth:
                handlers["rlm_handler"] = self._recursive_handler(node, depth)
            with self._node_sandbox(handlers) as sandbox:
                sandbox.load_context(context)
                with self._lock:
                    self.sandboxes_started += 1
                self._add_time("sandbox_start_s", time.monotonic() - started)
                info = describe_context(context)
                messages: list[dict[str, str]] = [
                    {
                        "role": "system",
                        "content": system_prompt(
                            info, depth=depth, max_depth=limits.max_depth, max_iterations=limits.max_iterations
                        ),
                    },
                    {"role": "user", "content": task_prompt(query)},
                ]
                feedback: str | None = None
                while iterations < limits.max_iterations:
                    iterations += 1
                    if feedback is not None:
                        # One user message per turn: some chat templates reject two in a row.
                        note = turn_prompt(iterations, limits.max_iterations)
                        messages.append({"role": "user", "content": f"{feedback}\n\n{note}"})
                    reply = self._model_turn(messages, node, depth, iterations)
                    replies.append(reply)
                    answer, feedback = self._act_on_reply(reply, sandbox, node, depth, iterations)
                    if answer is not None:
                        return self._finish(node, _Outcome(answer=answer, stop_reason="final", iterations=iterations))
                # Out of turns: ask once for the best answer so far.
                ask = final_request() if feedback is None else f"{feedback}\n\n{final_request()}"
                messages.append({"role": "user", "content": ask})
                reply = self._model_turn(messages, node, depth, iterations + 1)
                replies.append(reply)
                final = find_final(reply)
                answer = self._resolve_final(final, sandbox)[0] if final else None
                return self._finish(
                    node,
                    _Outcome(answer=answer or partial_answer(replies), stop_reason="max_iterations", iterations=iterations),
                )
        except CompletionTimeoutError as exc:
            outcome = _Outcome(answer=partial_answer(replies), stop_reason="timeout", iterations=iterations, error=str(exc))
        except BudgetExceededError as exc:
            outcome = _Outcome(answer=partial_answer(replies), stop_reason="budget", iterations=iterations, error=str(exc))
        except (LMError, SandboxError) as exc:
            outcome = _Outcome(
                answer=partial_answer(replies),
                stop_reason="error",
                iterations=iterations,
                error=f"{type(exc).__name__}: {exc}",
            )
        return self._finish(node, outcome)

    @contextmanager
    def _node_sandbox(self, handlers: dict[str, Any]) -> Iterator[Sandbox]:
        """The node's sandbox. A node that finished leaves its teardown to a background
        thread (the answer need not wait for Docker); one that failed or was
        interrupted tears it down before the error goes on."""
        sandbox = self.rlm._sandbox_factory(**handlers)
        with self._lock:
            self._live_sandboxes.add(sandbox)
        try:
            self._check_cancelled()
            yield sandbox.start()
        except BaseException:
            sandbox.close()
            raise
        finally:
            with self._lock:
                self._live_sandboxes.discard(sandbox)
        sandbox.close_in_background()

    def _finish(self, node: int, outcome: _Outcome) -> _Outcome:
        self.trajectory.emit("node_end", node=node, **outcome.model_dump())
        return outcome

    def _model_turn(self, messages: list[dict[str, str]], node: int, depth: int, iteration: int) -> str:
        self._check_cancelled()
        started = time.monotonic()
        try:
            response = complete_within_budget(
                self.rlm.client,
                self.budget,
                messages,
                model=self.rlm.model,
                timeout_s=self.rlm.limits.llm_timeout_s,
            )
        finally:
            self._add_time("model_s", time.monotonic() - started)
        messages.append({"role": "assistant", "content": response.text})
        self.trajectory.emit(
            "model_call",
            node=node,
            depth=depth,
            iteration=iteration,
            model=response.model,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            cost_usd=response.cost_usd,
            duration_s=round(time.monotonic() - started, 6),
            prompt=messages[-2]["content"],  # only what is new since the previous call
            response=response.text,
        )
        return response.text

    def _act_on_reply(
        self,
        reply: str,
        sandbox: Sandbox,
        node: int,
        depth: int,
        iteration: int,
    ) -> tuple[str | None, str]:
        """Run the reply's code; return (the final answer if given, what the model sees next)."""
        blocks = find_code_blocks(reply)
        textual_final = find_final(reply)
        if not blocks:
            if textual_final is not None:
                return self._resolve_final(textual_final, sandbox)
            return None, no_code_nudge()
        views = []
        for index, code in enumerate(blocks):
            result = self._execute(sandbox, code, node, depth, iteration, index)
            views.append(self._view(result, index, len(blocks)))
            if result.final is not None:
                return result.final, "\n\n".join(views)
        feedback = "\n\n".join(views)
        if textual_final is not None:
            answer, problem = self._resolve_final(textual_final, sandbox)
            return answer, f"{feedback}\n\n{problem}"
        return None, feedback

    def _execute(self, sandbox: Sandbox, code: str, node: int, depth: int, iteration: int, index: int) -> ExecResult:
        self._check_cancelled()
        self.budget.check_deadline()
        timeout = self.budget.clamp_timeout(self.rlm.limits.exec_timeout_s)
        started = time.monotonic()
        result = sandbox.execute(code, timeout_s=timeout)
        self._add_time("exec_s", time.monotonic() - started)
        self.trajectory.emit(
            "exec",
            node=node,
            depth=depth,
            iteration=iteration,
            block=index,
            code=code,
            stdout=result.stdout,
            stderr=result.stderr,
            error=result.error,
            final=result.final,
            timed_out=result.timed_out,
            restarted=result.restarted,
            truncated=result.truncated,
            duration_s=round(result.duration_s, 6),
        )
        # A code block that ran into the deadline ends the node: say so as a timeout.
        if result.timed_out:
            self.budget.check_deadline()
        return result

    @staticmethod
    def _view(result: ExecResult, index: int, count: int) -> str:
        note = None
        if result.truncated:
            note = (
                f"the sandbox kept only part of the output ({result.stdout_bytes:,} bytes of stdout, "
                f"{result.stderr_bytes:,} of stderr were produced)"
            )
        body = format_exec_output(result.stdout, result.stderr, result.error, note)
        header = f"Output of code block {index + 1} of {count}:" if count > 1 else "Output:"
        return f"{header}\n{body}"

    def _resolve_final(self, final: FinalAnswer, sandbox: Sandbox) -> tuple[str | None, str]:
        """(the answer, "") or, when FINAL_VAR names nothing, (None, what to tell the model)."""
        if final.kind == "value":
            return final.text, ""
        result = sandbox.execute(f"FINAL_VAR({final.text!r})", timeout_s=30)
        if result.final is not None:
            return result.final, ""
        return None, (
            f"FINAL_VAR({final.text}) did not work: {result.error or 'no such variable'}. "
            "Assign the variable in a ```repl block first, or answer with FINAL(...)."
        )

    # ------------------------------------------------------------- sub-calls

    def _plain_handler(self, node: int, depth: int):
        def handle(prompts: list[str], model: str | None) -> list[str]:
            name = model or self.rlm.sub_model
            return self._fan_out(prompts, lambda prompt: self._plain_call(prompt, name, node, depth))

        return handle

    def _recursive_handler(self, node: int, depth: int):
        def handle(prompts: list[str], model: str | None) -> list[str]:
            return self._fan_out(prompts, lambda prompt: self._child_call(prompt, node, depth))

        return handle

    def _plain_call(self, prompt: str, model: str, node: int, depth: int) -> str:
        started = time.monotonic()
        error = None
        response = None
        try:
            response = complete_within_budget(
                self.rlm.sub_client,
                self.budget,
                [{"role": "user", "content": prompt}],
                model=model,
                timeout_s=self.rlm.limits.llm_timeout_s,
            )
            return response.text
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            # Tokens and cost of the call, when it was answered (traces and the page show them).
            usage = (
                {}
                if response is None
                else {
                    "input_tokens": response.input_tokens,
                    "output_tokens": response.output_tokens,
                    "cost_usd": response.cost_usd,
                }
            )
            self.trajectory.emit(
                "sub_call",
                kind="llm",
                node=node,
                depth=depth,
                model=model,
                prompt_chars=len(prompt),
                duration_s=round(time.monotonic() - started, 6),
                error=error,
                **usage,
            )

    def _child_call(self, prompt: str, node: int, depth: int) -> str:
        started = time.monotonic()
        # The child's id is taken here so the sub_call event can name it (traces pair them).
        child = next(self._node_ids)
        outcome = self.run_node(prompt, CHILD_QUERY, depth=depth + 1, parent=node, node=child)
        self.trajectory.emit(
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
        if outcome.answer is None:
            raise LMError(f"the sub-RLM gave no answer ({outcome.stop_reason}: {outcome.error or 'no detail'})")
        return outcome.answer

    def _fan_out(self, prompts: list[str], call: Callable[[str], str]) -> list[str]:
        """Run `call` on every prompt, up to max_concurrency at once.

        One prompt: its exception reaches the sandbox code as is. Several: a failed
        prompt's slot carries an error string instead, unless every prompt was refused
        by the budget or the deadline, which is raised so the code can stop.
        """
        if len(prompts) == 1:
            return [call(prompts[0])]
        workers = min(self.rlm.limits.max_concurrency, len(prompts))
        errors: list[BaseException | None] = [None] * len(prompts)
        answers: list[str] = [""] * len(prompts)
        indexes = iter(range(len(prompts)))
        take = threading.Lock()

        def work() -> None:
            while True:
                with take:
                    index = next(indexes, None)
                if index is None:
                    return
                try:
                    self._check_cancelled()
                    answers[index] = call(prompts[index])
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
