"""What a root-model reply says, as real models and servers write them.

A reply may carry reasoning (a `reasoning_content` field, or `<think>` blocks in the
text), be cut at the output cap, be empty, be a refusal, or consist only of tool
calls. The loop searches only the visible text for code and FINAL, keeps the rest
for the trajectory, and tells the model what was wrong instead of stopping.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .lm import LMResponse
from .parsing import split_reasoning

__all__ = ["ModelReply", "read_reply"]


class ModelReply(BaseModel):
    """One root-model reply, split into what is acted on and what is only kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    """The reply's text exactly as received (think blocks included)."""
    visible: str
    """The text without reasoning: the only part searched for code and FINAL."""
    reasoning: str | None = None
    """The reasoning field and any think blocks, for the trajectory."""
    cut: bool = False
    """The server stopped it at the output cap (`finish_reason == "length"`)."""
    notes: list[str] = Field(default_factory=list)
    """What the model is told about the reply itself before the next turn."""


def read_reply(response: LMResponse, output_cap: int | None = None) -> ModelReply:
    visible, inline_reasoning = split_reasoning(response.text)
    reasoning = "\n\n".join(part for part in (response.reasoning, inline_reasoning) if part) or None
    cut = response.finish_reason == "length"
    notes: list[str] = []
    if cut:
        limit = f" of {output_cap:,} tokens" if output_cap else ""
        notes.append(
            f"Your last reply was cut off at the output limit{limit}. A code block that was not closed "
            "was not run. Keep replies short: a brief plan and one small ```repl block."
        )
    if response.refusal:
        notes.append(f"Your last reply was a refusal ({response.refusal[:300]}). The task is to analyse the data.")
    elif not visible:
        if response.tool_calls:
            notes.append(
                "Your last reply only made tool calls, and no tools are available here. "
                "Write Python in a ```repl block instead."
            )
        elif reasoning and not cut:
            notes.append(
                "Your last reply had reasoning but no visible text. Write the ```repl code or FINAL(...) itself."
            )
        elif not cut:
            notes.append("Your last reply was empty.")
    return ModelReply(text=response.text, visible=visible, reasoning=reasoning, cut=cut, notes=notes)
