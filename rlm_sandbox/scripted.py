"""A scripted stand-in for a language model, for demos and CI with no API key.

It plays both roles. As the root of an RLM node (a conversation with a system prompt)
it writes the code a capable model would write for a needle-in-a-haystack question:
look at the data's shape, search it with code, hand the neighbourhood of the hit to a
sub-model with `llm_query`, then answer with FINAL_VAR. As a sub-model (a single
prompt) it reads the number stated in the text it is given. It is deterministic, costs
nothing, and reports estimated token counts so budgets still apply.

It runs in the host process and never sees the context: only the prompts and the
REPL output the RLM loop shows it, exactly like a real model.
"""

from __future__ import annotations

import re
from typing import Any

from .lm import LMResponse

SCRIPTED_MODEL = "scripted-demo"

_QUESTION = re.compile(r"^Question:\s*(?P<query>.+)$", re.MULTILINE)
_QUOTED = re.compile(r"[\"“']([^\"”']{3,80})[\"”']")
_STOPWORDS = frozenset(
    "the a an is are was what which who where when how in of on to for and or that this it its with "
    "from by hidden stated text data context document please find give tell me number".split()
)


def search_term(query: str) -> str:
    """The phrase to look for: a quoted phrase, 'magic number', or the query's rarest-looking words."""
    quoted = _QUOTED.search(query)
    if quoted:
        return quoted.group(1)
    if re.search(r"magic number", query, re.IGNORECASE):
        return "magic number"
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9_-]+", query) if w.lower() not in _STOPWORDS]
    return max(words, key=len) if words else query.strip()[:40]


def _explore_and_search(term: str) -> str:
    return f"""Let me look at the shape of the data first, and search it with code rather than reading it.

```repl
import re
text = context if isinstance(context, str) else "\\n".join(map(str, context))
lines = text.splitlines()
print(f"{{type(context).__name__}}: {{len(text):,}} characters in {{len(lines):,}} lines")
pattern = re.compile({re.escape(term).replace(chr(92) + " ", " ")!r}, re.IGNORECASE)
hits = [number for number, line in enumerate(lines) if pattern.search(line)]
print(f"{{len(hits)}} line(s) match {term!r}: {{hits[:5]}}")
```"""


_READ_HIT = """The search narrowed it down. I will have a sub-model read just the neighbourhood of the first match.

```repl
if hits:
    first = hits[0]
    excerpt = "\\n".join(lines[max(first - 3, 0) : first + 4])
else:
    excerpt = text[:20000]
answer = llm_query(
    "Here is an excerpt of a long document. Reply with only the magic number it states, "
    "digits only, or NONE if it states none.\\n\\n" + excerpt
).strip()
print("sub-model says:", answer)
```"""

_FINISH = "The sub-model read the number from the matching line.\n\nFINAL_VAR(answer)"
_GIVE_UP = "I could not find it in the data.\n\nFINAL(NONE)"


def _root_reply(messages: list[dict[str, Any]]) -> str:
    turn = sum(1 for message in messages if message.get("role") == "assistant")
    if turn == 0:
        match = _QUESTION.search(next((m["content"] for m in messages if m.get("role") == "user"), ""))
        return _explore_and_search(search_term(match.group("query") if match else ""))
    if turn == 1:
        return _READ_HIT
    if turn == 2:
        return _FINISH
    return _GIVE_UP


def _sub_reply(prompt: str) -> str:
    number = re.search(r"magic number\D{0,20}?(\d+)", prompt, re.IGNORECASE)
    return number.group(1) if number else "NONE"


class ScriptedDemoModel:
    """An LMClient that needs no network. Thread-safe (it keeps no state)."""

    def __init__(self, model: str = SCRIPTED_MODEL) -> None:
        self.model = model

    def complete(
        self, messages: list[dict[str, Any]], *, model: str | None = None, timeout_s: float | None = None
    ) -> LMResponse:
        is_rlm_node = any(message.get("role") == "system" for message in messages)
        text = _root_reply(messages) if is_rlm_node else _sub_reply(str(messages[-1].get("content", "")))
        prompt_chars = sum(len(str(message.get("content", ""))) for message in messages)
        return LMResponse(
            text=text,
            model=model or self.model,
            input_tokens=max(1, prompt_chars // 4),
            output_tokens=max(1, len(text) // 4),
            cost_usd=0.0,
            usage_estimated=True,
        )
