"""The node loop: one RLM node's model <-> REPL turns, from its first prompt to its answer.

`_NodeLoop` is the part of a completion tree (`rlm._Tree`) that runs a single node:
it starts the node's sandbox, talks to the root model, runs the code of each reply
and resolves FINAL / FINAL_VAR. The tree holds the state all nodes share (budget,
trajectory, cancellation) and routes sub-calls; it mixes this class in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import (
    BudgetExceededError,
    CompletionTimeoutError,
    ContextWindowExceededError,
    LMError,
    RepeatedFailureError,
    SandboxClosedError,
    SandboxError,
)
from .history import Conversation
from .lm import complete_within_budget
from .output import AnswerInvalid, OutputSpec
from .parsing import FinalAnswer, find_code_blocks, find_final
from .prompts import (
    ContextInfo,
    describe_context,
    final_request,
    format_exec_output,
    invalid_answer,
    no_code_nudge,
    output_instructions,
    system_prompt,
    task_prompt,
    turn_prompt,
)
from .replies import ModelReply, read_reply
from .sandbox.base import ExecResult, Sandbox
from .startup import SandboxStart
from .tokens import estimate_messages_tokens
from .tools import render_tools

if TYPE_CHECKING:
    import threading

    from .limits import Budget
    from .lm import LMClient
    from .rlm import RLM
    from .routing import Router
    from .startup import LiveSandboxes
    from .trajectory import Trajectory

StopReason = Literal["final", "max_iterations", "budget", "timeout", "error"]

# The same failing step this many turns in a row ends the node (stop_reason "error").
REPEATED_FAILURES_LIMIT = 3
_CELL_NAME = re.compile(r"<cell-\d+>")


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
    model_config = ConfigDict(arbitrary_types_allowed=True)

    answer: str | None
    stop_reason: StopReason
    iterations: int
    error: str | None = None
    parsed: Any = None
    """The validated answer, when the completion asked for a typed one (root node only)."""


@dataclass(frozen=True)
class _Answer:
    """A final answer as it arrived: JSON text when the sandbox sent a structured value."""

    text: str
    json: bool = False


@dataclass
class _Progress:
    """What a node has done so far: enough for a partial answer if it stops early."""

    iterations: int = 0
    replies: list[str] = field(default_factory=list)


class _RepeatGuard:
    """Ends a node whose model makes the same failing step again and again.

    A model stuck on one error (FINAL_VAR of a value it thinks is a name, the same
    exception from the same code) would otherwise spend every turn and the budget on it.
    """

    def __init__(self, limit: int = REPEATED_FAILURES_LIMIT) -> None:
        self.limit = limit
        self._last: tuple[tuple[str, ...], str] | None = None
        self._count = 0

    def record(self, reply: str, feedback: str, failed: bool) -> None:
        if not failed:
            self._last, self._count = None, 0
            return
        # Cell names count up with every exec; the failure is the same without them.
        signature = (tuple(block.strip() for block in find_code_blocks(reply)), _CELL_NAME.sub("<cell>", feedback))
        self._count = self._count + 1 if signature == self._last else 1
        self._last = signature
        if self._count >= self.limit:
            first_line = next((line for line in feedback.splitlines() if "Error" in line), feedback.strip()[:200])
            raise RepeatedFailureError(
                f"the model repeated the same failing step {self._count} times in a row ({first_line.strip()[:300]}); "
                "stopped instead of spending the rest of the budget. Try a stronger model or a clearer query"
            )


class _NodeLoop:
    """The node loop of a completion tree; mixed into `rlm._Tree`, whose state it uses."""

    if TYPE_CHECKING:  # provided by rlm._Tree
        rlm: RLM
        budget: Budget
        trajectory: Trajectory
        sandboxes_started: int
        _node_ids: Iterator[int]
        _lock: threading.Lock
        _live: LiveSandboxes

        router: Router

        def _check_cancelled(self) -> None: ...
        def _add_time(self, field: str, seconds: float) -> None: ...

    output: OutputSpec | None = None
    """The type the root's answer must have (`completion(..., output=...)`), if any."""

    # ------------------------------------------------------------- one node

    def run_node(
        self, context: Any, query: str, *, depth: int, parent: int | None, node: int | None = None
    ) -> _Outcome:
        node = next(self._node_ids) if node is None else node
        self.trajectory.emit("node_start", node=node, parent=parent, depth=depth, query=query)
        progress = _Progress()
        handlers = self.router.handlers(node, depth)

        def work() -> _Outcome:
            self.budget.check_deadline()
            # The sandbox starts and loads the context while the first model call runs.
            with self._node_sandbox(handlers, context, node, depth) as start:
                if not self.rlm._overlap_start:
                    self._ready_sandbox(start)
                conversation = self.new_conversation(describe_context(context), query, depth)
                return self._turns(conversation, start, node, depth, progress)

        return self._guarded(node, progress, work)

    def new_conversation(self, info: ContextInfo, query: str, depth: int) -> Conversation:
        """The system prompt and the task: all a node's first model call needs (not the
        sandbox), in a conversation that keeps later turns within the model's window."""
        limits = self.rlm.limits
        task = task_prompt(query)
        if depth == 0 and self.output is not None:
            task = f"{task}\n\n{output_instructions(self.output.schema_text())}"
        return Conversation(
            system_prompt(
                info,
                depth=depth,
                max_depth=limits.max_depth,
                max_iterations=limits.max_iterations,
                tools=render_tools(self.router.tools_for(depth)),
            ),
            task,
            window=self.context_window(self.rlm.model, self.rlm.client),
            max_output_tokens=limits.max_output_tokens,
        )

    def context_window(self, model: str, client: LMClient) -> int | None:
        """`model`'s window: Limits.context_window for the root model, else what the
        client can find out (the server's /v1/models, the maintained data)."""
        if self.rlm.limits.context_window is not None and model == self.rlm.model:
            return self.rlm.limits.context_window
        find = getattr(client, "context_window", None)
        return find(model) if callable(find) else None

    def _guarded(self, node: int, progress: _Progress, work: Callable[[], _Outcome]) -> _Outcome:
        """`work()`'s outcome, or the stop it ran into, as an outcome with a partial answer."""
        try:
            return work()
        except CompletionTimeoutError as exc:
            outcome = _Outcome(
                answer=partial_answer(progress.replies),
                stop_reason="timeout",
                iterations=progress.iterations,
                error=str(exc),
            )
        except BudgetExceededError as exc:
            outcome = _Outcome(
                answer=partial_answer(progress.replies),
                stop_reason="budget",
                iterations=progress.iterations,
                error=str(exc),
            )
        except (LMError, SandboxError, RepeatedFailureError) as exc:
            outcome = _Outcome(
                answer=partial_answer(progress.replies),
                stop_reason="error",
                iterations=progress.iterations,
                error=f"{type(exc).__name__}: {exc}",
            )
        return self._finish(node, outcome)

    def _turns(
        self, conversation: Conversation, start: SandboxStart, node: int, depth: int, progress: _Progress
    ) -> _Outcome:
        """Model turn, code, output, until an answer (valid, when typed) or the turns run out."""
        limits = self.rlm.limits
        guard = _RepeatGuard()
        feedback: str | None = None
        while progress.iterations < limits.max_iterations:
            progress.iterations += 1
            turn = progress.iterations
            if feedback is not None:
                # One user message per turn: some chat templates reject two in a row.
                note = turn_prompt(turn, limits.max_iterations)
                conversation.add_user(f"{feedback}\n\n{note}")
            reply = self._model_turn(conversation, node, depth, progress.iterations)
            progress.replies.append(reply.visible)
            answer, feedback, failed = self._act_on_reply(reply, start, node, depth, progress.iterations)
            if answer is not None:
                parsed, problem = self._check_answer(answer, depth)
                if problem is None:
                    outcome = _Outcome(answer=answer.text, parsed=parsed, stop_reason="final", iterations=turn)
                    return self._finish(node, outcome)
                feedback, failed = (f"{feedback}\n\n{problem}" if feedback else problem), True
            guard.record(reply.visible, feedback, failed)
        # Out of turns: ask once for the best answer so far.
        ask = final_request() if feedback is None else f"{feedback}\n\n{final_request()}"
        conversation.add_user(ask)
        reply = self._model_turn(conversation, node, depth, progress.iterations + 1)
        progress.replies.append(reply.visible)
        final = find_final(reply.visible)
        answer = self._resolve_final(final, start)[0] if final else None
        parsed, problem = self._check_answer(answer, depth) if answer is not None else (None, None)
        if problem is not None:
            answer = None
        return self._finish(
            node,
            _Outcome(
                answer=answer.text if answer is not None else partial_answer(progress.replies),
                parsed=parsed,
                stop_reason="max_iterations",
                iterations=progress.iterations,
                error=problem,
            ),
        )

    def _check_answer(self, answer: _Answer, depth: int) -> tuple[Any, str | None]:
        """(the validated value, None), or (None, what to tell the model) for a typed root."""
        if depth != 0 or self.output is None:
            return None, None
        try:
            return self.output.validate(answer.text, is_json=answer.json), None
        except AnswerInvalid as exc:
            return None, invalid_answer(str(exc))

    @contextmanager
    def _node_sandbox(self, handlers: dict[str, Any], context: Any, node: int, depth: int) -> Iterator[SandboxStart]:
        """The node's sandbox, starting in the background. A node that finished leaves its
        teardown to a background thread (the answer need not wait for Docker, nor for a
        start still under way); one that failed or was interrupted kills it at once."""
        start = SandboxStart(
            self._slotted_factory(node, depth), handlers, context, self._live, on_ready=self._sandbox_ready
        )
        try:
            yield start
        except LMError as exc:
            # The model failed while the sandbox failed to start: the start's error is the
            # one to fix first (no daemon, no image), as it was before starts overlapped.
            # Read before the kill below, whose own "process is gone" is no start failure.
            failed_start = start.failure
            start.discard(now=True)
            if isinstance(failed_start, SandboxError) and not isinstance(failed_start, SandboxClosedError):
                raise failed_start from exc
            raise
        except BaseException:
            start.discard(now=True)
            raise
        start.discard()

    def _slotted_factory(self, node: int, depth: int) -> Callable[..., Sandbox]:
        """The sandbox factory within Limits.max_sandboxes: a slot is taken before the
        sandbox is made and freed once it is gone, not before; the sandbox gets the
        node's tools and host-call workers."""
        slots = self.router.slots

        def make(**handlers: Any) -> Sandbox:
            slots.acquire()
            try:
                sandbox = self.rlm._sandbox_factory(**handlers)
                self.router.attach(sandbox, node, depth)
                remaining = self.budget.remaining_s()  # a frozen Docker daemon must not outlast the deadline
                sandbox.deadline = None if remaining is None else time.monotonic() + remaining
            except BaseException:
                slots.release()
                raise
            sandbox.on_gone(slots.release)
            return sandbox

        return make

    def _sandbox_ready(self, seconds: float) -> None:
        with self._lock:
            self.sandboxes_started += 1
        self._add_time("sandbox_start_s", seconds)

    def _ready_sandbox(self, start: SandboxStart) -> Sandbox:
        """The node's sandbox for an exec: waits for what is left of its start, within the deadline."""
        if start.ready:
            return start.get()
        started = time.monotonic()
        try:
            return start.get(self.budget.remaining_s())
        except TimeoutError:
            self.budget.check_deadline()
            raise
        finally:
            self._add_time("sandbox_wait_s", time.monotonic() - started)

    def _finish(self, node: int, outcome: _Outcome) -> _Outcome:
        self.trajectory.emit("node_end", node=node, **outcome.model_dump())
        return outcome

    def _model_turn(self, conversation: Conversation, node: int, depth: int, iteration: int) -> ModelReply:
        self._check_cancelled()
        turn_started = started = time.monotonic()
        recovered = False
        while True:
            messages, cap, compaction = conversation.prepare()
            if compaction is not None:
                self.trajectory.emit(
                    "compaction", node=node, depth=depth, iteration=iteration, **compaction.model_dump()
                )
            try:
                with self.router.gate.slot():  # a model turn is leaf work: it counts against max_concurrency
                    response = complete_within_budget(
                        self.rlm.client,
                        self.budget,
                        messages,
                        model=self.rlm.model,
                        timeout_s=self.rlm.limits.llm_timeout_s,
                        max_output_tokens=cap,
                        # The conversation fitted the request to the window already, on its
                        # calibrated estimate; the budget still reserves the raw one.
                    )
                break
            except ContextWindowExceededError as exc:
                # The server knows its window better than any estimate: compact once, retry once.
                compaction = None if recovered else conversation.recover(exc.window)
                if compaction is None:
                    raise
                recovered = True
                self.trajectory.emit(
                    "compaction", node=node, depth=depth, iteration=iteration, **compaction.model_dump()
                )
            finally:
                self._add_time("model_s", time.monotonic() - started)
                started = time.monotonic()
        learned = conversation.observe(messages, response, cap)
        if learned is not None and hasattr(self.rlm.client, "learn_context_window"):
            self.rlm.client.learn_context_window(self.rlm.model, learned)  # sub-calls check against it
        reply = read_reply(response, cap)
        conversation.add_reply(reply.visible)
        self.trajectory.emit(
            "model_call",
            node=node,
            depth=depth,
            iteration=iteration,
            model=response.model,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            cached_input_tokens=response.cached_input_tokens,
            reasoning_tokens=response.reasoning_tokens,
            cost_usd=response.cost_usd,
            duration_s=round(time.monotonic() - turn_started, 6),
            prompt=messages[-1]["content"],  # only what is new since the previous call
            response=response.text,
            reasoning=reply.reasoning,
            finish_reason=response.finish_reason,
            max_output_tokens=cap,
            context_window=conversation.window,
            estimated_input_tokens=estimate_messages_tokens(messages),
        )
        return reply

    def _act_on_reply(
        self,
        reply: ModelReply,
        start: SandboxStart,
        node: int,
        depth: int,
        iteration: int,
    ) -> tuple[_Answer | None, str, bool]:
        """Run the reply's code; return (the final answer if given, what the model sees
        next, whether anything failed).

        Only the visible text counts (never reasoning), and a reply cut at the output
        cap never runs its unclosed last block."""
        answer, feedback, failed = self._act_on_visible(reply, start, node, depth, iteration)
        notes = "\n".join(reply.notes)
        return answer, (f"{notes}\n\n{feedback}" if notes else feedback), failed

    def _act_on_visible(
        self, reply: ModelReply, start: SandboxStart, node: int, depth: int, iteration: int
    ) -> tuple[_Answer | None, str, bool]:
        blocks = find_code_blocks(reply.visible, complete_only=reply.cut)
        textual_final = find_final(reply.visible)
        if not blocks:
            if textual_final is not None:
                answer, problem = self._resolve_final(textual_final, start)
                return answer, problem, answer is None
            return None, no_code_nudge(), False
        sandbox = self._ready_sandbox(start)
        views = []
        failed = False
        for index, code in enumerate(blocks):
            result = self._execute(sandbox, code, node, depth, iteration, index)
            views.append(self._view(result, index, len(blocks)))
            failed = failed or result.error is not None
            if result.final is not None:
                return _Answer(result.final, result.final_json), "\n\n".join(views), failed
        feedback = "\n\n".join(views)
        if textual_final is not None:
            answer, problem = self._resolve_final(textual_final, start)
            return answer, f"{feedback}\n\n{problem}", failed or answer is None
        return None, feedback, failed

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

    def _resolve_final(self, final: FinalAnswer, start: SandboxStart) -> tuple[_Answer | None, str]:
        """(the answer, "") or, when FINAL_VAR names nothing, (None, what to tell the model)."""
        if final.kind == "value":
            return _Answer(final.text), ""
        result = self._ready_sandbox(start).execute(f"FINAL_VAR({final.text!r})", timeout_s=30)
        if result.final is not None:
            return _Answer(result.final, result.final_json), ""
        return None, (
            f"FINAL_VAR({final.text}) did not work: {result.error or 'no such variable'}. "
            'Assign the variable in a ```repl block first and give FINAL_VAR("name"), or answer with FINAL(...).'
        )
