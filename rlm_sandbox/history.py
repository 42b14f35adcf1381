"""The conversation of one RLM node, kept within the root model's context window.

The loop adds replies and feedback; before each call `prepare()` returns the messages
and the reply's cap so that the request fits: estimated input (erring high) plus the
cap never exceeds the window. When the next request would overflow, the history is
compacted: the system prompt and the task stay, the latest turn stays, and older turns
become one line each in a record of what was done and found, placed under the task.
Nothing is lost for the work itself, since the REPL still holds every variable, and
the model is told that the compaction happened.

Where the window is unknown, the server's context-length error calls `recover()`:
one compaction (using the window the error names, if any) and the loop retries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import ContextWindowExceededError
from .lm import MIN_OUTPUT_TOKENS, LMResponse
from .parsing import find_code_blocks
from .prompts import truncate_middle
from .tokens import estimate_messages_tokens, estimate_tokens

__all__ = ["Compaction", "Conversation"]

_RECORD_HEADING = (
    "## Record of earlier turns (compacted)\n"
    "To fit the model's context window, earlier turns were replaced by this record. Every variable they "
    "defined is still in the Python session (SHOW_VARS() lists them). Continue from where it ends."
)
_NOTE = (
    "[Note: to fit the model's context window, turns {first}-{last} of this conversation were replaced by a "
    "short record under the question in the first message. Every variable from those turns is still in "
    "the Python session; SHOW_VARS() lists them.]"
)
# Without a known window, a compaction after the server's overflow error keeps at
# most this much of the latest feedback.
_BLIND_FEEDBACK_CHARS = 4_000


class Compaction(BaseModel):
    """One compaction, as recorded in the trajectory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Literal["window", "server_error"]
    turns_compacted: int
    tokens_before: int
    """Estimated input tokens of the request before compaction."""
    tokens_after: int
    window: int | None


@dataclass
class _Turn:
    number: int
    reply: str
    feedback: str | None = None
    note: str | None = None
    """Told with the feedback: that earlier turns were compacted."""

    def user_message(self) -> str | None:
        if self.feedback is None:
            return None
        return self.feedback if self.note is None else f"{self.note}\n\n{self.feedback}"


def _one_line(text: str, limit: int) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _record_line(turn: _Turn) -> str:
    blocks = find_code_blocks(turn.reply)
    if blocks:
        lines = [line for block in blocks for line in block.splitlines() if line.strip()]
        did = f"ran code `{_one_line(' ; '.join(lines[:3]), 160)}`" + (
            f" (+{len(lines) - 3} lines)" if len(lines) > 3 else ""
        )
    else:
        did = f"wrote no code: {_one_line(turn.reply, 120)!r}" if turn.reply.strip() else "gave an empty reply"
    found = f" -> {_one_line(turn.feedback, 200)}" if turn.feedback else ""
    return f"- turn {turn.number}: {did}{found}"


class Conversation:
    """Messages of one node: system prompt, task, then (reply, feedback) turns.

    `window` is the root model's context window in tokens (None: unknown);
    `max_output_tokens` the cap on each reply (None: the server's default).
    """

    def __init__(self, system: str, task: str, *, window: int | None, max_output_tokens: int | None) -> None:
        self.system = system
        self.task = task
        self.window = window
        self.max_output_tokens = max_output_tokens
        self.compactions: list[Compaction] = []
        self._turns: list[_Turn] = []
        self._record: list[str] = []
        self._omitted = 0  # record lines dropped to keep the record itself small
        self._scale = 1.0  # server's count / our estimate, as observed (with a margin)
        self._observed = 0.0
        self._turn_count = 0

    # -- building -------------------------------------------------------------

    def add_reply(self, visible_text: str) -> None:
        """The model's reply (reasoning removed: it is not sent back)."""
        if self._turns and self._turns[-1].feedback is None:
            raise RuntimeError("two replies in a row without feedback between them")
        self._turn_count += 1
        self._turns.append(_Turn(number=self._turn_count, reply=visible_text))

    def add_user(self, content: str) -> None:
        """What the model is told before its next reply (one user message per turn)."""
        if not self._turns:
            raise RuntimeError("feedback before any reply")
        self._turns[-1].feedback = content

    def follow_up(self, content: str) -> None:
        """A new query of a session: the next user message, whatever the last query left.

        A query that stopped before the model answered its feedback leaves a user
        message last; the follow-up joins it (one user message per turn)."""
        if not self._turns:
            self.task = f"{self.task}\n\n{content}"
        elif self._turns[-1].feedback is None:
            self._turns[-1].feedback = content
        else:
            self._turns[-1].feedback = f"{self._turns[-1].feedback}\n\n{content}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        task = self.task
        if self._record or self._omitted:
            omitted = [f"- ({self._omitted} earlier turns omitted)"] if self._omitted else []
            task = f"{self.task}\n\n{_RECORD_HEADING}\n" + "\n".join(omitted + self._record)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": task},
        ]
        for turn in self._turns:
            messages.append({"role": "assistant", "content": turn.reply})
            user = turn.user_message()
            if user is not None:
                messages.append({"role": "user", "content": user})
        return messages

    def estimated_tokens(self) -> int:
        """The next request's input tokens: the estimate, scaled by what the server counted."""
        return self._scaled(self.messages)

    def _scaled(self, messages: list[dict[str, Any]]) -> int:
        return math.ceil(estimate_messages_tokens(messages) * self._scale)

    def observe(self, messages: list[dict[str, Any]], response: LMResponse, cap: int | None) -> int | None:
        """Learn from the server's answer to `messages`; returns a window it revealed.

        Calibration: the estimate errs high for most text by 30-70% (see `tokens`),
        which in a small window means compacting far too early. Once the server has
        counted a request, the scale becomes the largest ratio seen so far plus a 10%
        margin: still above every count observed in this conversation, much closer.

        Window: a server that silently shortens the cap to its window (llama-cpp-python
        does) stops with `finish_reason: "length"` before the cap; input + output is
        then the window, give or take a token, and is taken as it (erring low).
        """
        if response.usage_estimated:
            return None
        estimate = estimate_messages_tokens(messages)
        if estimate > 0 and response.input_tokens > 0:
            self._observed = max(self._observed, response.input_tokens / estimate * 1.1)
            self._scale = min(3.0, max(0.5, self._observed))
        if (
            self.window is None
            and response.finish_reason == "length"
            and cap is not None
            and response.output_tokens < cap
        ):
            self.window = response.input_tokens + response.output_tokens
            return self.window
        return None

    # -- fitting --------------------------------------------------------------

    def _min_output(self) -> int:
        return min(self.max_output_tokens or MIN_OUTPUT_TOKENS, MIN_OUTPUT_TOKENS)

    def output_cap(self) -> int | None:
        """The reply's cap for the next call: the configured cap, cut to the room left."""
        if self.window is None:
            return self.max_output_tokens
        room = max(0, self.window - self.estimated_tokens())
        return room if self.max_output_tokens is None else min(self.max_output_tokens, room)

    def prepare(self) -> tuple[list[dict[str, Any]], int | None, Compaction | None]:
        """(messages, output cap, the compaction done if any) for the next call.

        Raises ContextWindowExceededError if even the system prompt and the task leave
        no room for a reply.
        """
        compaction = None
        if self.window is not None and self.estimated_tokens() + self._min_output() > self.window:
            compaction = self._compact("window")
        return self.messages, self.output_cap(), compaction

    def recover(self, window: int | None) -> Compaction | None:
        """After the server's context-length error: learn `window` (if it named one)
        and compact once. None when nothing could be made smaller (give up)."""
        if self.window is not None:
            # We fitted the request to a known window and the server still refused it:
            # the text tokenizes denser than calibrated, so estimate higher from now on.
            self._observed = max(self._observed, 0.5) * 1.2
            self._scale = min(3.0, self._observed)
        if window is not None and (self.window is None or window < self.window):
            self.window = window
        if self.window is not None:
            return self._compact("server_error")
        before = self.estimated_tokens()
        dropped = self._drop_turns(keep=1)
        if self._turns and self._turns[-1].feedback and len(self._turns[-1].feedback) > _BLIND_FEEDBACK_CHARS:
            self._turns[-1].feedback = truncate_middle(self._turns[-1].feedback, _BLIND_FEEDBACK_CHARS)
        after = self.estimated_tokens()
        if after >= before:
            return None
        return self._done("server_error", dropped, before, after)

    def _compact(self, reason: Literal["window", "server_error"]) -> Compaction:
        assert self.window is not None
        before = self.estimated_tokens()
        # Compact well below the limit, so the next turns do not compact again at once.
        target_output = max(self._min_output(), min(self.max_output_tokens or self.window // 4, self.window // 4))
        target = self.window - target_output
        keep = len(self._turns)
        # The 64 tokens cover the record lines and the note the dropped turns add.
        while keep > 1 and self._scaled(self._messages_keeping(keep)) + 64 > target:
            keep -= 1
        dropped = self._drop_turns(keep=keep)
        self._trim_record(max(64, self.window // 8))
        self._shrink_latest(target)
        if self._turns and self.estimated_tokens() + self._min_output() > self.window:
            # Last resort: the latest turn too becomes a line of the record.
            dropped += self._drop_turns(keep=0)
            self._trim_record(max(64, self.window // 8))
        while self._record and self.estimated_tokens() + self._min_output() > self.window:
            self._record.pop(0)  # and then the record gives way, oldest line first
            self._omitted += 1
        after = self.estimated_tokens()
        if after + self._min_output() > self.window:
            raise ContextWindowExceededError(
                f"the system prompt and the task alone are about {after:,} tokens (estimated), which leaves no "
                f"room for a reply in the model's context window of {self.window:,} tokens. Use a model with a "
                "larger window, or a shorter query.",
                window=self.window,
                tokens=after,
            )
        return self._done(reason, dropped, before, after)

    def _messages_keeping(self, keep: int) -> list[dict[str, Any]]:
        # The request if all but the latest `keep` turns were compacted (the record's
        # lines are small; the 64-token margin above covers them).
        saved = self._turns
        self._turns = saved[len(saved) - keep :]
        try:
            return self.messages
        finally:
            self._turns = saved

    def _done(self, reason: Literal["window", "server_error"], dropped: int, before: int, after: int) -> Compaction:
        compaction = Compaction(
            reason=reason, turns_compacted=dropped, tokens_before=before, tokens_after=after, window=self.window
        )
        self.compactions.append(compaction)
        return compaction

    def _drop_turns(self, keep: int) -> int:
        """Move all but the latest `keep` turns into the record; tell the model."""
        dropped = self._turns[: max(0, len(self._turns) - keep)]
        if not dropped:
            return 0
        self._turns = self._turns[len(dropped) :]
        self._record.extend(_record_line(turn) for turn in dropped)
        latest = self._turns[-1] if self._turns else None
        if latest is not None:
            latest.note = _NOTE.format(first=1, last=dropped[-1].number)
        return len(dropped)

    def _trim_record(self, max_tokens: int) -> None:
        while len(self._record) > 1 and estimate_tokens("\n".join(self._record)) > max_tokens:
            self._record.pop(0)
            self._omitted += 1

    def _shrink_latest(self, target: int) -> None:
        """Cut the middle of the latest feedback, then of the latest reply, until the
        request fits `target` (or they are as short as they can usefully be)."""
        if not self._turns:
            return
        latest = self._turns[-1]
        for field in ("feedback", "reply"):
            text = getattr(latest, field)
            while text and self.estimated_tokens() > target and len(text) > 200:
                excess_tokens = self.estimated_tokens() - target
                # 3 characters per token at most (the estimate's ASCII rate), so cutting
                # 3x the excess (plus room for the marker) always makes progress.
                shorter = truncate_middle(text, max(200, len(text) - 3 * excess_tokens - 120))
                if len(shorter) >= len(text):
                    break  # as short as it gets: the marker outweighs what is left to cut
                text = shorter
                setattr(latest, field, text)
