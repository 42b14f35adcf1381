"""Token estimates that err high on the text a run sends, without a tokenizer.

Budgets and context windows are enforced *before* a request is sent, when only the
text is known. A real tokenizer would need the model's vocabulary (tiktoken downloads
its encodings at run time, which fails offline, and knows nothing of Llama or Qwen),
so this counts conservatively instead. The text is split the way BPE pre-tokenizers
split it (words with their leading space, single digits, punctuation marks, runs of
whitespace); each piece is one token, a word of more than 3 letters one per 3
letters, a non-ASCII character one per 1.5 UTF-8 bytes; and the result is never
below one token per 2.5 bytes. Each chat message adds 8 tokens of template, each
request 16.

Measured against SmolLM2-135M's tokenizer (llama.cpp's own count; a small 49k
vocabulary, so denser than GPT-4's or Llama 3's), estimate / real: system prompt
1.40, English 1.44, Python 1.30, JSON 1.70, tracebacks 1.62, digits 1.00, hex 0.97,
CJK 1.46, NIAH haystack (made-up words) 1.00. Text of random letters (base64,
made-up words without spaces) tokenizes denser than any length rule can know
(0.65-0.75): for those the loop relies on the server's context-length error
(one compaction and a retry) and the budget bound stated in `limits.Budget`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MESSAGE_OVERHEAD", "REQUEST_OVERHEAD", "estimate_messages_tokens", "estimate_tokens"]

MESSAGE_OVERHEAD = 8
REQUEST_OVERHEAD = 16


_PIECE = re.compile(r" ?[A-Za-z]+|[0-9]|[ \t]+|\n+|[^\sA-Za-z0-9]")
_LONG_WORD = re.compile(r"[A-Za-z]{4,}")


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens in `text` (see the module docstring)."""
    if not text:
        return 0
    size = len(text.encode("utf-8", "replace"))
    pieces = sum(1 for _ in _PIECE.finditer(text))
    long_words = sum(math.ceil(len(word) / 3) - 1 for word in _LONG_WORD.findall(text))
    non_ascii_chars = len(text) - sum(1 for _ in re.finditer(r"[\x00-\x7f]", text))
    non_ascii_bytes = size - (len(text) - non_ascii_chars)
    non_ascii = math.ceil(non_ascii_bytes / 1.5) - non_ascii_chars  # each was counted as one piece
    return max(pieces + long_words + non_ascii, math.ceil(size / 2.5))


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
