"""Token estimates that err high, without a tokenizer.

Budgets and context windows are enforced *before* a request is sent, when only the
text is known. A real tokenizer would need the model's vocabulary (tiktoken downloads
its encodings at run time, which fails offline, and knows nothing of Llama or Qwen),
so this counts conservatively instead:

- every digit is one token (Llama and SmolLM tokenizers split numbers into digits);
- other ASCII: one token per 3 characters (English under BPE averages about 4);
- non-ASCII: one token per 1.5 UTF-8 bytes (a CJK character is 3 bytes and usually
  1 to 2 tokens);
- each chat message adds 8 tokens of template (role markers, separators), and each
  request 16.

Against SmolLM2's tokenizer (llama.cpp's own count) this over-counts English prompts
by roughly a third; an estimate below the server's count is the case to avoid, since
it could send a request that does not fit or overshoot a budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["MESSAGE_OVERHEAD", "REQUEST_OVERHEAD", "estimate_messages_tokens", "estimate_tokens"]

MESSAGE_OVERHEAD = 8
REQUEST_OVERHEAD = 16


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens in `text` (see the module docstring)."""
    if not text:
        return 0
    digits = sum(1 for char in text if char.isdigit() and char.isascii())
    ascii_other = sum(1 for char in text if char.isascii()) - digits
    non_ascii_bytes = len(text.encode("utf-8", "replace")) - digits - ascii_other
    return digits + math.ceil(ascii_other / 3) + math.ceil(non_ascii_bytes / 1.5)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def estimate_messages_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """An upper estimate of the input tokens of a chat request made of `messages`."""
    total = REQUEST_OVERHEAD
    for message in messages:
        total += MESSAGE_OVERHEAD + estimate_tokens(_content_text(message.get("content")))
    return total
