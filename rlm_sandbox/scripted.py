"""A scripted stand-in for a language model, for demos and CI with no API key.

It plays both roles. As the root of an RLM node (a conversation with a system prompt)
it writes the code a capable model would write. For a needle-in-a-haystack question:
look at the data's shape, search it with code, hand the neighbourhood of the hit to a
sub-model with `llm_query`, then answer with FINAL_VAR. For the question shapes of the
built-in eval suites (see `rlm_sandbox.evals.suites`) it follows a playbook: a keyed
needle, counting / most frequent / monthly timeline over labelled records, and pairs
of ids meeting a condition; each computes the answer with real Python over `context`
in the sandbox. As a sub-model (a single prompt) it reads the number stated in the
text it is given. It is deterministic, costs nothing, and reports estimated token
counts so budgets still apply.

It runs in the host process and never sees the context: only the prompts and the
REPL output the RLM loop shows it, exactly like a real model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .lm import LMResponse

SCRIPTED_MODEL = "scripted-demo"

_QUESTION = re.compile(r"^Question:\s*(?P<query>.+)$", re.MULTILINE)
_QUOTED = re.compile(r"[\"“']([^\"”']{3,80})[\"”']")
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "what",
        "which",
        "who",
        "where",
        "when",
        "how",
        "in",
        "of",
        "on",
        "to",
        "for",
        "and",
        "or",
        "that",
        "this",
        "it",
        "its",
        "with",
        "from",
        "by",
        "hidden",
        "stated",
        "text",
        "data",
        "context",
        "document",
        "please",
        "find",
        "give",
        "tell",
        "me",
        "number",
    ]
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


def _needle_reply(query: str, turn: int) -> str:
    """The default playbook: find a stated number near the query's search term."""
    if turn == 0:
        return _explore_and_search(search_term(query))
    if turn == 1:
        return _READ_HIT
    if turn == 2:
        return _FINISH
    return _GIVE_UP


# ------------------------------------------------------------------ playbooks for the eval suites

_EXPLORE = """Let me look at the shape of the data first.

```repl
text = context if isinstance(context, str) else "\\n".join(map(str, context))
lines = text.splitlines()
print(f"{type(context).__name__}: {len(text):,} characters in {len(lines):,} lines. The first lines:")
for line in lines[:3]:
    print(line[:160])
```"""

_FINISH_COMPUTED = "The code computed the answer from every record.\n\nFINAL_VAR(answer)"

_RECORDS = """import collections, re
record = re.compile(r"^\\[(?P<date>\\d{{4}}-\\d{{2}}-\\d{{2}})\\].*?\\blabel:\\s*(?P<label>[\\w-]+)")
records = [m.groupdict() for m in map(record.match, lines) if m]
labels = collections.Counter(r["label"].lower() for r in records)
print(f"{{len(records):,}} records; labels: {{labels.most_common()}}")"""


def _count_label(match: re.Match[str], turn: int) -> str:
    label = match.group("label").lower()
    code = _RECORDS.format() + f"\nanswer = str(labels[{label!r}])\nprint('answer:', answer)"
    return _computed(
        turn, f"Each record line carries `label: ...`; I will count them with code.\n\n```repl\n{code}\n```"
    )


def _most_frequent_label(match: re.Match[str], turn: int) -> str:
    code = _RECORDS.format() + "\nanswer = labels.most_common(1)[0][0] if labels else 'NONE'\nprint('answer:', answer)"
    return _computed(turn, f"I will tally the labels of all records with code.\n\n```repl\n{code}\n```")


def _label_timeline(match: re.Match[str], turn: int) -> str:
    label = match.group("label").lower()
    code = _RECORDS.format() + (
        f"\nmonths = collections.Counter(r['date'][:7] for r in records if r['label'].lower() == {label!r})"
        "\nanswer = '\\n'.join(f'{month}: {months[month]}' for month in sorted(months))"
        "\nprint(answer[:2000])"
    )
    return _computed(turn, f"I will group the matching records by month with code.\n\n```repl\n{code}\n```")


def _pairs(match: re.Match[str], turn: int) -> str:
    status, attribute = match.group("status").lower(), match.group("attribute").lower()
    code = f"""import collections, itertools, re
field = re.compile(r"(\\w+)=([^|]*?)\\s*(?=\\||$)")
rows = [dict(field.findall(line)) for line in lines]
rows = [row for row in rows if "id" in row]
chosen = [row for row in rows if row.get("status", "").strip().lower() == {status!r}]
groups = collections.defaultdict(list)
for row in chosen:
    groups[row.get({attribute!r}, "").strip().lower()].append(row["id"].strip())
pairs = sorted((a, b) for ids in groups.values() for a, b in itertools.combinations(sorted(ids), 2))
answer = "\\n".join(f"({{a}}, {{b}})" for a, b in pairs)
print(f"{{len(rows):,}} records, {{len(chosen):,}} with status {status!r}, {{len(pairs):,}} pairs; first: {{pairs[:3]}}")"""
    return _computed(
        turn,
        f"I will parse the `key=value` fields, keep the {status} records and pair them by {attribute}.\n\n```repl\n{code}\n```",
    )


def _computed(turn: int, compute: str) -> str:
    """Explore, compute, answer: the three turns of a playbook that answers with code alone."""
    if turn == 0:
        return _EXPLORE
    if turn == 1:
        return compute
    if turn == 2:
        return _FINISH_COMPUTED
    return _GIVE_UP


_KEYED_INSTRUCTION = (
    'Here are lines from a long document. Reply with only the special magic number for "{key}" '
    "that they state, digits only, or NONE if they state none."
)


def _keyed_needle(match: re.Match[str], turn: int) -> str:
    key = match.group("key")
    if turn == 0:
        return f"""The key is an exact phrase, so I will find the lines that mention it with code.

```repl
import re
text = context if isinstance(context, str) else "\\n".join(map(str, context))
lines = text.splitlines()
print(f"{{type(context).__name__}}: {{len(text):,}} characters in {{len(lines):,}} lines")
key = {key!r}
pattern = re.compile(r"(?<![\\w-])" + re.escape(key) + r"(?![\\w-])")
hits = [number for number, line in enumerate(lines) if pattern.search(line)]
print(f"{{len(hits)}} line(s) mention {{key!r}}: {{hits[:5]}}")
```"""
    if turn == 1:
        instruction = _KEYED_INSTRUCTION.format(key=key)
        return f"""A sub-model will read just the matching lines.

```repl
excerpt = "\\n".join(lines[number] for number in hits[:5]) if hits else text[:20000]
answer = llm_query({instruction!r} + "\\n\\n" + excerpt).strip()
print("sub-model says:", answer)
```"""
    if turn == 2:
        return _FINISH
    return _GIVE_UP


# Matched against the question in order; the first match decides. Anything else gets
# the needle playbook, as before.
_PLAYBOOKS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], int], str]], ...] = (
    (re.compile(r'special magic number for "(?P<key>[^"]+)"', re.IGNORECASE), _keyed_needle),
    (re.compile(r"how many records\b.*?\blabell?ed '(?P<label>[^']+)'", re.IGNORECASE), _count_label),
    (re.compile(r"which label occurs most often", re.IGNORECASE), _most_frequent_label),
    (re.compile(r"monthly timeline of the records labell?ed '(?P<label>[^']+)'", re.IGNORECASE), _label_timeline),
    (
        re.compile(
            r"pair of record ids where both records have status '(?P<status>[^']+)' and the same (?P<attribute>\w+)",
            re.IGNORECASE,
        ),
        _pairs,
    ),
)


def _root_reply(messages: list[dict[str, Any]]) -> str:
    turn = sum(1 for message in messages if message.get("role") == "assistant")
    match = _QUESTION.search(next((m["content"] for m in messages if m.get("role") == "user"), ""))
    query = match.group("query") if match else ""
    for pattern, playbook in _PLAYBOOKS:
        found = pattern.search(query)
        if found:
            return playbook(found, turn)
    return _needle_reply(query, turn)


_KEYED = re.compile(r'special magic number for "(?P<key>[^"]+)"')


def _sub_reply(prompt: str) -> str:
    instruction, _, text = prompt.partition("\n\n")
    keyed = _KEYED.search(instruction)
    if keyed and text:
        key = re.escape(keyed.group("key"))
        number = re.search(rf"(?<![\w-]){key}(?![\w-])\D{{0,40}}?(\d+)", text)
        return number.group(1) if number else "NONE"
    number = re.search(r"magic number\D{0,20}?(\d+)", prompt, re.IGNORECASE)
    return number.group(1) if number else "NONE"


class ScriptedDemoModel:
    """An LMClient that needs no network. Thread-safe (it keeps no state)."""

    def __init__(self, model: str = SCRIPTED_MODEL) -> None:
        self.model = model

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        timeout_s: float | None = None,
        max_output_tokens: int | None = None,  # its replies are always short
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
