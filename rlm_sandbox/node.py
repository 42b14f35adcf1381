"""The node loop: one RLM node's model <-> REPL turns, from its first prompt to its answer.

`_NodeLoop` is the part of a completion tree (`rlm._Tree`) that runs a single node:
it starts the node's sandbox, talks to the root model, runs the code of each reply
and resolves FINAL / FINAL_VAR. The tree holds the state all nodes share (budget,
trajectory, cancellation) and routes sub-calls; it mixes this class in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from .errors import BudgetExceededError, CompletionTimeoutError, LMError, SandboxError
from .lm import complete_within_budget
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

if TYPE_CHECKING:
    from .rlm import _Tree

StopReason = Literal["final", "max_iterations", "budget", "timeout", "error"]


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


class _NodeLoop:
    """The node loop of a completion tree; mixed into `rlm._Tree`, whose state it uses."""

    # ------------------------------------------------------------- one node

    def run_node(self, context: Any, query: str, *, depth: int, parent: int | None) -> _Outcome:
        node = next(self._node_ids)
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
