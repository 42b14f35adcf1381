"""Reading a root-model reply: which code to run, and whether it gave its answer.

Model output is sloppy markdown, so the rules here are tolerant on purpose:
indented fences, trailing spaces, CRLF and an unclosed last fence all work.
The strict rules: nothing inside a fenced block counts as a textual FINAL (code
that *mentions* FINAL must not end the run before it executes); reasoning
(`<think>...</think>`) is never searched for code or FINAL (`split_reasoning`); and
a reply cut at the output cap never runs its unclosed last block (`complete_only`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["CODE_LANGUAGES", "FinalAnswer", "find_code_blocks", "find_final", "split_reasoning"]

CODE_LANGUAGES = frozenset({"repl", "python"})
"""Fence languages whose contents are executed."""

_OPEN_FENCE = re.compile(r"^[ \t]*(?P<ticks>`{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_FINAL_START = re.compile(r"^[ \t]*(?P<kind>FINAL_VAR|FINAL)[ \t]*\(", re.MULTILINE)
_QUOTES = ("'''", '"""', "'", '"')
# Reasoning models (DeepSeek-R1, Qwen3, QwQ, gpt-oss through some servers) write their
# thinking inline. Some chat templates open the block in the prompt, so a reply may
# start inside it and show only the closing tag.
_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)


class FinalAnswer(BaseModel):
    """A textual FINAL(...) (kind "value") or FINAL_VAR(name) (kind "var")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["value", "var"]
    text: str
    """The answer itself, or the name of the variable that holds it."""


@dataclass(frozen=True)
class _Fence:
    language: str
    start: int  # offset of the opening fence line
    body_start: int
    body_end: int
    end: int  # offset just past the closing fence line (or the text's end)


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _fences(text: str) -> list[_Fence]:
    """Every fenced block of normalized text, whatever its language, in order."""
    fences: list[_Fence] = []
    lines = text.split("\n")
    offsets: list[int] = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    i = 0
    while i < len(lines):
        opening = _OPEN_FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        ticks = len(opening.group("ticks"))
        info = opening.group("info").strip()
        language = info.split()[0].lower() if info else ""
        closing = re.compile(rf"^[ \t]*`{{{ticks},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        body_start = offsets[i + 1] if i + 1 < len(lines) else len(text)
        if j < len(lines):
            # The body excludes the newline before the closing fence.
            body_end = max(body_start, offsets[j] - 1)
            end = min(len(text), offsets[j] + len(lines[j]) + 1)
        else:
            body_end = end = len(text)  # unclosed: the block runs to the end
        fences.append(_Fence(language, offsets[i], body_start, body_end, end))
        i = j + 1
    return fences


def split_reasoning(text: str) -> tuple[str, str]:
    """(the reply without its reasoning, the reasoning) of a model reply.

    Removes every `<think>...</think>` block (also `<thinking>`, `<reasoning>`), a
    leading stretch that ends in a closing tag with no opening one (the template
    opened it), and an opening tag that never closes (with everything after it).
    """
    thoughts: list[str] = []
    leading = _THINK_CLOSE.search(text)
    first_open = _THINK_OPEN.search(text)
    if leading is not None and (first_open is None or first_open.start() > leading.start()):
        thoughts.append(text[: leading.start()])
        text = text[leading.end() :]

    def keep(match: re.Match[str]) -> str:
        thoughts.append(match.group(2))
        return ""

    text = _THINK_BLOCK.sub(keep, text)
    unclosed = _THINK_OPEN.search(text)
    if unclosed is not None:
        thoughts.append(text[unclosed.end() :])
        text = text[: unclosed.start()]
    return text.strip(), "\n\n".join(t.strip() for t in thoughts if t.strip())


def find_code_blocks(text: str, *, complete_only: bool = False) -> list[str]:
    """The contents of the ```repl and ```python blocks of `text`, in order.

    `complete_only`: leave out a last block that never closes (the reply was cut
    mid-block, so its code is unfinished even if what is there would parse).
    """
    text = _normalize(text)
    fences = [f for f in _fences(text) if f.language in CODE_LANGUAGES]
    if complete_only:
        fences = [f for f in fences if f.body_end < f.end]
    return [text[f.body_start : f.body_end] for f in fences]


def find_final(text: str) -> FinalAnswer | None:
    """The first FINAL(...) or FINAL_VAR(...) that starts a line outside any fence.

    The argument ends at the parenthesis that balances the opening one, skipping
    parentheses inside quoted strings, and may span lines. If it never balances,
    it runs to the end of its stretch of prose (the next fence or the text's end)
    minus one trailing ")". A FINAL whose whole argument is one string literal,
    like FINAL("42"), gives the string's value.
    """
    text = _normalize(text)
    for start, end in _prose_spans(text):
        match = _FINAL_START.search(text, start, end)
        if match is None:
            continue
        argument = _argument(text, match.end(), end)
        if match.group("kind") == "FINAL_VAR":
            return FinalAnswer(kind="var", text=argument.strip().strip("'\"` \t\n"))
        return FinalAnswer(kind="value", text=_unquote(argument.strip()))
    return None


def _prose_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for fence in _fences(text):
        spans.append((pos, fence.start))
        pos = fence.end
    spans.append((pos, len(text)))
    return [(s, e) for s, e in spans if s < e]


def _argument(text: str, start: int, end: int) -> str:
    """The text from `start` up to the ")" that closes the "(" just before it."""
    depth = 1
    i = start
    while i < end:
        skipped = _skip_string(text, i, end)
        if skipped is not None:
            i = skipped
            continue
        char = text[i]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    unbalanced = text[start:end].rstrip()
    return unbalanced[:-1] if unbalanced.endswith(")") else unbalanced


def _skip_string(text: str, i: int, end: int) -> int | None:
    """The offset just past a quoted string starting at `i`, or None if none starts there.

    A quote only opens a string at the start of a word, so the apostrophe in
    "the model's answer (final)" is prose, not a string that hides parentheses.
    A quote without a partner is prose too.
    """
    if text[i] not in "'\"":
        return None
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        return None
    for quote in _QUOTES:
        if not text.startswith(quote, i):
            continue
        j = i + len(quote)
        while j < end:
            if text[j] == "\\":
                j += 2
                continue
            if len(quote) == 1 and text[j] == "\n":
                return None  # single-quoted strings do not span lines
            if text.startswith(quote, j):
                return j + len(quote)
            j += 1
        return None
    return None


def _unquote(argument: str) -> str:
    if len(argument) >= 2 and argument[0] in "'\"" and argument[-1] == argument[0]:
        try:
            value = ast.literal_eval(argument)
        except (ValueError, SyntaxError):
            return argument
        if isinstance(value, str):
            return value
    return argument
