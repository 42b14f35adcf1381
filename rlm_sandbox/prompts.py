"""Everything the root model is told: the system prompt, per-turn messages, and
the view of an execution's output it gets back.

The model never sees the context itself, only a description of it
(`ContextInfo`), so a multi-gigabyte context costs the prompt a few hundred
characters. Each turn's output is cut to a fixed size for the same reason, and
the cut is always announced so the model knows to summarise with code.
"""

from __future__ import annotations

import reprlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_OUTPUT_CHARS",
    "PREVIEW_CHARS",
    "ContextInfo",
    "describe_context",
    "final_request",
    "follow_up_prompt",
    "format_exec_output",
    "invalid_answer",
    "no_code_nudge",
    "output_instructions",
    "system_prompt",
    "task_prompt",
    "truncate_middle",
    "turn_prompt",
]

PREVIEW_CHARS = 500
DEFAULT_OUTPUT_CHARS = 20_000
_ITEM_LENGTHS_SHOWN = 20


class ContextInfo(BaseModel):
    """What the root model is told about `context` instead of seeing it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type_name: str
    total_chars: int = Field(ge=0)
    """Characters of text in the context: strings, plus keys and scalars as text."""
    num_items: int | None = None
    """len() of a list, tuple or dict; None for anything else."""
    item_chars: list[int] = Field(default_factory=list)
    """Characters of each of the first items (at most 20), to hint at chunk sizes."""
    preview: str = Field(max_length=PREVIEW_CHARS)


def _text_chars(obj: Any) -> int:
    # Iterative, so deeply nested JSON-like data cannot hit the recursion limit,
    # and without building str(context): a 1 GiB context must not be copied.
    total = 0
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, (bytes, bytearray)):
            total += len(item)
        else:
            total += len(str(item))
    return total


def _preview(context: Any) -> str:
    if isinstance(context, str):
        head = context[:PREVIEW_CHARS]
    else:
        # reprlib bounds the work as well as the result: it never walks more
        # than a few items per level, however large the container.
        shortener = reprlib.Repr()
        shortener.maxlevel = 3
        shortener.maxlist = shortener.maxtuple = shortener.maxset = 5
        shortener.maxdict = 5
        shortener.maxstring = 160
        shortener.maxother = 160
        head = shortener.repr(context)
    return head[:PREVIEW_CHARS]


def describe_context(context: Any) -> ContextInfo:
    """Summarise `context` (str, list, dict, or anything else) for the prompt."""
    num_items: int | None = None
    item_chars: list[int] = []
    if isinstance(context, dict):
        num_items = len(context)
        item_chars = [_text_chars(k) + _text_chars(v) for k, v in list(context.items())[:_ITEM_LENGTHS_SHOWN]]
    elif isinstance(context, (list, tuple)):
        num_items = len(context)
        item_chars = [_text_chars(item) for item in context[:_ITEM_LENGTHS_SHOWN]]
    return ContextInfo(
        type_name=type(context).__name__,
        total_chars=_text_chars(context),
        num_items=num_items,
        item_chars=item_chars,
        preview=_preview(context),
    )


def _describe(info: ContextInfo) -> str:
    lines = [f"- type: {info.type_name}", f"- total size: {info.total_chars:,} characters"]
    if info.num_items is not None:
        lines.append(f"- items: {info.num_items:,}")
        if info.item_chars:
            shown = ", ".join(f"{n:,}" for n in info.item_chars)
            more = " ..." if info.num_items > len(info.item_chars) else ""
            lines.append(f"- characters per item (first {len(info.item_chars)}): {shown}{more}")
    if info.type_name != "str":
        label = "preview (long parts elided with ...)"
    elif info.total_chars > len(info.preview):
        label = f"first {len(info.preview):,} characters"
    else:
        label = "full text"
    lines.append(f"- {label}:\n<<<\n{info.preview}\n>>>")
    return "\n".join(lines)


def system_prompt(
    info: ContextInfo,
    *,
    depth: int,
    max_depth: int,
    max_iterations: int,
    output_chars: int = DEFAULT_OUTPUT_CHARS,
    tools: str = "",
) -> str:
    """The system prompt of an RLM node at `depth` (the root is 0).

    `rlm_query` starts a child RLM with its own REPL when `depth + 1 < max_depth`;
    otherwise it is a plain model call, and the prompt says so.
    """
    recursive = depth + 1 < max_depth
    if recursive:
        rlm_text = (
            "`rlm_query(prompt, model=None)` hands a whole sub-task to a helper that works the way you do: "
            "it gets its own Python session, works on the prompt you give it, and can write code and "
            "call models itself. Use it for a sub-task too large or too involved for a single model call. "
            "`rlm_query_batched(prompts, model=None)` starts several of them concurrently and returns their "
            "answers as a list of str, in order."
        )
    else:
        rlm_text = (
            "`rlm_query(prompt, model=None)` and `rlm_query_batched(prompts, model=None)` are available but, "
            "at this level, behave exactly like `llm_query` / `llm_query_batched`: a single model call each."
        )
    role = (
        "You are answering a question" if depth == 0 else f"You are a helper (nesting level {depth}) answering a task"
    )
    return f"""{role} about data that is too big to read directly. The data is not in this conversation. It is stored in a Python session as the variable `context`, and you study it by writing Python code that this session runs for you.

## The data
{_describe(info)}

## How to work
Put code in fenced blocks that open with ```repl and close with ```. Each block runs in the same persistent session, so variables, imports and functions you define stay available in later turns. After your message, you are shown what the code printed.

That view is cut to about {output_chars:,} characters per turn, so do not print the data wholesale. Look at its shape first (`type`, `len`, a few slices), then compute and print compact summaries, counts or short excerpts. Keep large intermediate results in variables, not in printed output.

## Asking other models
Your code can call language models on text you pass them; each such call can take a few hundred thousand characters of input.
- `llm_query(prompt, model=None)` sends one prompt and returns the reply as a str.
- `llm_query_batched(prompts, model=None)` sends a list of prompts; they run concurrently and the replies come back as a list of str in the same order. When you have many chunks to read, split `context` into pieces and use this rather than a loop of `llm_query` calls: it is much faster.
- {rlm_text}
Make every prompt self-contained: the model you call sees only the prompt you give it, not the data, the question or this conversation. A failed call raises `LLMQueryError`; once the run's model-call budget is used up, calls raise `BudgetExceededError`.

{_tools_section(tools)}Other helpers: `SHOW_VARS()` lists the variables you have defined; `print(...)` shows values.

## Finishing
When you know the answer, give it in one of these ways:
- in code: `FINAL(answer)` with the answer itself, or `FINAL_VAR("name")` with the name of a variable that holds it, in quotes;
- in your message, outside any code block, on a line of its own: FINAL(your answer) or FINAL_VAR("name").
Use FINAL_VAR for long answers you built in code. Do not finish before you have checked the answer against the data; do not guess when code can tell you.

You have at most {max_iterations} turns. Work step by step: plan briefly, run code, read its output, then decide the next step."""


def _tools_section(tools: str) -> str:
    """The host tools a node may call (rendered by tools.render_tools), or nothing."""
    if not tools:
        return ""
    return (
        "## Tools\n"
        "These functions run outside your session, on the host; call them by name from your code with "
        "JSON-like arguments (str, int, float, bool, None, list, dict). They return JSON-like values. "
        "A failed or refused call raises `ToolError` with the reason.\n"
        f"{tools}\n\n"
    )


def task_prompt(query: str) -> str:
    """The first user message: the question, with a reminder that the data is in `context`."""
    return (
        f"Question: {query}\n\n"
        "The data is in the variable `context` of your Python session; you have not seen it yet. "
        "Start by writing ```repl code to explore it."
    )


def follow_up_prompt(query: str) -> str:
    """A session's next question: the same Python session, with everything defined so far."""
    return (
        f"Next question: {query}\n\n"
        "Your Python session is the one you used before: `context` and every variable you defined are still there. "
        "Reuse them where they help; write ```repl code to work on this question."
    )


def turn_prompt(iteration: int, max_iterations: int) -> str:
    """The note that precedes turn `iteration` (1-based) of `max_iterations`."""
    left = max_iterations - iteration
    if left <= 0:
        return (
            f"Turn {iteration} of {max_iterations}: this is your last turn. "
            "Give your final answer now with FINAL(...) or FINAL_VAR(...)."
        )
    return (
        f"Turn {iteration} of {max_iterations} ({left} more after this one). "
        "Continue with ```repl code, or give FINAL(...) / FINAL_VAR(...) if you have the answer."
    )


def no_code_nudge() -> str:
    """Sent after a reply that had neither a ```repl block nor a FINAL."""
    return (
        "Your last message had no ```repl code block and no final answer. "
        "Write code in a ```repl block to make progress, or, if you are done, "
        'give the answer on its own line as FINAL(answer) or FINAL_VAR("name").'
    )


def final_request() -> str:
    """Sent once when the turns are used up, asking for the best answer so far."""
    return (
        "You have used all your turns, and no more code will run. Based on what you have found so far, "
        "reply now with your best answer on a line of its own as FINAL(answer), "
        'or FINAL_VAR("name") for a variable you already set.'
    )


def output_instructions(schema_json: str) -> str:
    """Appended to the task when the answer must have a type (`completion(..., output=...)`)."""
    return (
        "## Answer format\n"
        "Your final answer must be a JSON value that matches this JSON schema:\n"
        f"{schema_json}\n"
        'Build it in code as a dict or list and give it with FINAL(value) or FINAL_VAR("name"): '
        "it is sent as JSON and checked. If it does not match, you are told what is wrong and can fix it."
    )


def invalid_answer(problems: str) -> str:
    """Sent when a typed answer did not match its schema."""
    return (
        "Your final answer was not accepted: it does not match the required JSON schema.\n"
        f"{problems}\n"
        'Fix the value and give it again with FINAL(...) or FINAL_VAR("name").'
    )


def truncate_middle(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping both ends, with the cut announced."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    # The start shows what the code set out to do; the end holds the last value
    # and any traceback. Both matter more than the middle.
    head = limit - limit // 3
    tail = limit - head
    marker = f"\n[... {cut:,} more characters truncated ...]\n"
    return text[:head] + marker + (text[len(text) - tail :] if tail else "")


def _share(lengths: list[int], limit: int) -> list[int]:
    # Fair division: a part shorter than its share keeps all of it and leaves
    # the rest to the others, so one huge stdout cannot hide a short traceback.
    caps = [0] * len(lengths)
    pending = sorted(range(len(lengths)), key=lambda i: lengths[i])
    budget = limit
    while pending:
        share = budget // len(pending)
        index = pending.pop(0)
        caps[index] = min(lengths[index], share)
        budget -= caps[index]
    return caps


def format_exec_output(
    stdout: str,
    stderr: str,
    error: str | None,
    truncated_chars_note: str | None = None,
    *,
    limit: int = DEFAULT_OUTPUT_CHARS,
) -> str:
    """What the model sees of one execution: output, errors and notes, cut to ~`limit` chars.

    `truncated_chars_note` is the sandbox's own notice that it capped the
    captured output before it ever reached the host; it is always shown.
    """
    parts = [("", stdout), ("stderr:\n", stderr), ("error:\n", error or "")]
    present = [(label, text) for label, text in parts if text]
    caps = _share([len(text) for _, text in present], limit)
    sections = [
        label + truncate_middle(text, cap).rstrip("\n") for (label, text), cap in zip(present, caps, strict=True)
    ]
    if truncated_chars_note:
        sections.append(f"[note: {truncated_chars_note}]")
    return "\n".join(sections) if sections else "(no output)"
