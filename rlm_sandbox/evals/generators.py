"""The built-in synthetic suites' generators: from a `GeneratorRef`, a query, its answer and the context text.

In the style of the RLM paper's benchmarks:

- `niah`: RULER-style needle in a haystack. Random filler lines hold one needle
  ("One of the special magic numbers for crimson-falcon is: 4821937.") and a few
  distractor needles for other keys; the query asks for one key's number.
- `aggregation`: labelled, dated records (OOLONG-like, with explicit labels): how many
  have a label, which label is most frequent, or the monthly timeline of a label.
  The answer is computed from the labels.
- `pairs`: records with attributes; every pair of ids satisfying a condition
  (OOLONG-Pairs-like), scored by F1 over the set of pairs.

A task carries only a `GeneratorRef` (suite, seed, index, size): its query and expected
answer come from a small "spec" random stream, and the context text is produced only
when the task runs, by `iter_context` (chunks, so a 10M-token haystack can be streamed
to a file) or `materialize`. The same ref gives the same text on any machine: streams
are seeded with strings, which Python hashes with SHA-512, not the per-process hash.
Sizes are in tokens, estimated as 4 characters each; "8k" is 8,192 and "1M" 1,048,576
tokens, as in RULER.
"""

from __future__ import annotations

import collections
import itertools
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import EvalError
from .niah import _vocabulary
from .scorers import ScorerSpec

__all__ = [
    "CHARS_PER_TOKEN",
    "SUITES",
    "GeneratorRef",
    "TaskSpec",
    "format_size",
    "iter_context",
    "materialize",
    "parse_size",
    "suite_named",
    "task_spec",
]

CHARS_PER_TOKEN = 4
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str | int) -> int:
    """Tokens from "8k", "128K", "1M", "10m", "1.5M" or a plain number."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", str(text))
        if not match:
            raise EvalError(f"not a size: {text!r} (use e.g. 8k, 128k, 1M, 10M or a number of tokens)")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise EvalError(f"a size must be positive, got {text!r}")
    return value


def format_size(tokens: int) -> str:
    for unit, factor in (("M", 1024**2), ("K", 1024)):
        if tokens >= factor and tokens % factor == 0:
            return f"{tokens // factor}{unit}"
    return str(tokens)


class GeneratorRef(BaseModel):
    """A context made by a built-in suite: the same fields give the same text anywhere."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str
    seed: int
    index: int = Field(ge=0)
    size: int = Field(gt=0, description="target size in tokens (about 4 characters each)")


@dataclass(frozen=True)
class TaskSpec:
    query: str
    expected: Any
    scorer: ScorerSpec
    kind: str


def _rng(ref: GeneratorRef, stream: str) -> random.Random:
    return random.Random(f"{ref.suite}:{ref.seed}:{ref.index}:{ref.size}:{stream}")


def _target_chars(ref: GeneratorRef) -> int:
    return ref.size * CHARS_PER_TOKEN


def _words(rng: random.Random, vocabulary: list[str], low: int, high: int) -> str:
    return " ".join(rng.choices(vocabulary, k=rng.randint(low, high)))


# ------------------------------------------------------------------ niah

_ADJECTIVES = [
    "amber",
    "azure",
    "bitter",
    "brave",
    "calm",
    "crimson",
    "dusty",
    "eager",
    "faint",
    "fierce",
    "gentle",
    "gilded",
    "hollow",
    "icy",
    "jolly",
    "keen",
    "lucky",
    "misty",
    "noble",
    "olive",
    "pale",
    "quiet",
    "rapid",
    "rusty",
    "silent",
    "sly",
    "tawny",
    "velvet",
    "wild",
    "young",
]
_NOUNS = [
    "anchor",
    "badger",
    "beacon",
    "cedar",
    "comet",
    "falcon",
    "ferret",
    "garnet",
    "harbor",
    "heron",
    "jackal",
    "lantern",
    "lynx",
    "maple",
    "meadow",
    "otter",
    "pebble",
    "quartz",
    "raven",
    "saddle",
    "salmon",
    "sparrow",
    "thistle",
    "tiger",
    "walrus",
    "willow",
]
_NIAH_DISTRACTORS = 3
_BATCH_LINES = 10_000


def _niah_needles(ref: GeneratorRef) -> tuple[str, str, list[tuple[float, str]]]:
    """(key, number, [(depth in [0, 1), needle line)...]) from the spec stream alone."""
    rng = _rng(ref, "spec")
    keys = rng.sample([f"{a}-{n}" for a in _ADJECTIVES for n in _NOUNS], 1 + _NIAH_DISTRACTORS)
    numbers = rng.sample(range(1_000_000, 10_000_000), len(keys))
    needles = [
        (rng.random(), f"One of the special magic numbers for {key} is: {number}.")
        for key, number in zip(keys, numbers, strict=True)
    ]
    return keys[0], str(numbers[0]), sorted(needles)


def _niah_spec(ref: GeneratorRef) -> TaskSpec:
    key, number, _ = _niah_needles(ref)
    query = f'What is the special magic number for "{key}" mentioned in the context? Answer with the number only.'
    return TaskSpec(query=query, expected=number, scorer=ScorerSpec(name="exact"), kind="single-key")


def _niah_chunks(ref: GeneratorRef) -> Iterator[str]:
    _, _, needles = _niah_needles(ref)
    rng = _rng(ref, "filler")
    target = _target_chars(ref)
    vocabulary = _vocabulary(rng)
    pool = [_words(rng, vocabulary, 4, 10) for _ in range(min(20_000, max(200, target // 40)))]
    inserts = [(int(depth * target), line) for depth, line in needles]
    written = 0
    pending = collections.deque(inserts)
    while written < target:
        out: list[str] = []
        for line in rng.choices(pool, k=_BATCH_LINES):
            out.append(line)
            written += len(line) + 1
            while pending and written >= pending[0][0]:
                needle = pending.popleft()[1]
                out.append(needle)
                written += len(needle) + 1
            if written >= target:
                break
        if written >= target:
            out.extend(line for _, line in pending)  # a depth at the very end
            pending.clear()
        yield "\n".join(out) + "\n"


# ------------------------------------------------------------------ aggregation

AGGREGATION_LABELS = ("billing", "outage", "login", "refund", "shipping", "feedback", "security", "upgrade")
_AGGREGATION_LINE_CHARS = 112  # a typical record line, to turn a size into a record count
_START_DAY = 738_521  # 2023-01-01 as a proleptic ordinal
_DAYS = 540


@dataclass(frozen=True)
class _Record:
    date: str
    user: int
    label: str


def _aggregation_records(ref: GeneratorRef) -> list[_Record]:
    import datetime

    rng = _rng(ref, "spec")
    count = max(30, round(_target_chars(ref) / _AGGREGATION_LINE_CHARS))
    weights = [rng.uniform(0.5, 2.0) for _ in AGGREGATION_LABELS]
    labels = rng.choices(AGGREGATION_LABELS, weights=weights, k=count)
    # A unique most frequent label: a tie is broken by relabelling one record.
    counts = collections.Counter(labels)
    (top, top_count), *rest = counts.most_common()
    for other, other_count in rest:
        if other_count == top_count:
            labels[labels.index(other)] = top
    days = sorted(rng.randrange(_DAYS) for _ in range(count))
    users = [rng.randrange(1, 2000) for _ in range(count)]
    return [
        _Record(date=datetime.date.fromordinal(_START_DAY + day).isoformat(), user=user, label=label)
        for day, user, label in zip(days, users, labels, strict=True)
    ]


def _aggregation_spec(ref: GeneratorRef) -> TaskSpec:
    records = _aggregation_records(ref)
    rng = _rng(ref, "query")
    counts = collections.Counter(record.label for record in records)
    label = rng.choice(sorted(counts))
    kind = ("count", "most_frequent", "timeline")[ref.index % 3]
    if kind == "count":
        return TaskSpec(
            query=f"How many records in the context are labelled '{label}'? Answer with a number.",
            expected=counts[label],
            scorer=ScorerSpec(name="numeric"),
            kind=kind,
        )
    if kind == "most_frequent":
        return TaskSpec(
            query="Which label occurs most often among the records in the context? Answer with the label only.",
            expected=counts.most_common(1)[0][0],
            scorer=ScorerSpec(name="exact"),
            kind=kind,
        )
    months = collections.Counter(record.date[:7] for record in records if record.label == label)
    return TaskSpec(
        query=(
            f"Give the monthly timeline of the records labelled '{label}': for every month that has any, "
            "one line 'YYYY-MM: count', in chronological order."
        ),
        expected=[f"{month}: {months[month]}" for month in sorted(months)],
        scorer=ScorerSpec(name="f1"),
        kind=kind,
    )


def _aggregation_chunks(ref: GeneratorRef) -> Iterator[str]:
    records = _aggregation_records(ref)
    rng = _rng(ref, "filler")
    vocabulary = _vocabulary(rng, 500)
    for start in range(0, len(records), _BATCH_LINES):
        lines = [
            f"[{r.date}] record {start + i:06d} | user u{r.user:04d} | label: {r.label} | note: "
            + _words(rng, vocabulary, 5, 11)
            for i, r in enumerate(records[start : start + _BATCH_LINES])
        ]
        yield "\n".join(lines) + "\n"


# ------------------------------------------------------------------ pairs

PAIRS_CITIES = ("lisbon", "oslo", "quito", "hanoi", "dakar", "perth", "tunis", "lima")
PAIRS_TEAMS = ("red", "blue", "green", "amber", "violet", "teal")
_PAIRS_LINE_CHARS = 128


@dataclass(frozen=True)
class _Member:
    id: str
    city: str
    team: str
    status: str


def _pairs_members(ref: GeneratorRef) -> list[_Member]:
    rng = _rng(ref, "spec")
    count = max(20, round(_target_chars(ref) / _PAIRS_LINE_CHARS))
    # Few enough active members that the pairs stay a readable list (~size^0.5 of them).
    active = min(count, max(8, int(6 * math.sqrt(ref.size / 1024))))
    ids = [f"P{number:06d}" for number in rng.sample(range(1, max(10 * count, 1000)), count)]
    statuses = ["active"] * active + rng.choices(("inactive", "suspended"), k=count - active)
    rng.shuffle(statuses)
    return [
        _Member(id=member_id, city=rng.choice(PAIRS_CITIES), team=rng.choice(PAIRS_TEAMS), status=status)
        for member_id, status in zip(ids, statuses, strict=True)
    ]


def _pairs_spec(ref: GeneratorRef) -> TaskSpec:
    members = _pairs_members(ref)
    attribute = ("city", "team")[ref.index % 2]
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for member in members:
        if member.status == "active":
            groups[getattr(member, attribute)].append(member.id)
    pairs = sorted([a, b] for ids in groups.values() for a, b in itertools.combinations(sorted(ids), 2))
    return TaskSpec(
        query=(
            f"List every pair of record ids where both records have status 'active' and the same {attribute}. "
            "Give one pair per line as (id1, id2) with id1 < id2."
        ),
        expected=pairs,
        scorer=ScorerSpec(name="f1"),
        kind=f"same-{attribute}",
    )


def _pairs_chunks(ref: GeneratorRef) -> Iterator[str]:
    import datetime

    members = _pairs_members(ref)
    rng = _rng(ref, "filler")
    vocabulary = _vocabulary(rng, 500)
    for start in range(0, len(members), _BATCH_LINES):
        lines = [
            f"id={m.id} | city={m.city} | team={m.team} | status={m.status} | "
            f"joined={datetime.date.fromordinal(_START_DAY - rng.randrange(2000)).isoformat()} | note: "
            + _words(rng, vocabulary, 5, 11)
            for m in members[start : start + _BATCH_LINES]
        ]
        yield "\n".join(lines) + "\n"


# ------------------------------------------------------------------ registry


@dataclass(frozen=True)
class _Suite:
    spec: Callable[[GeneratorRef], TaskSpec]
    chunks: Callable[[GeneratorRef], Iterator[str]]
    description: str


SUITES: dict[str, _Suite] = {
    "niah": _Suite(_niah_spec, _niah_chunks, "needle in a haystack of random filler, with distractor needles"),
    "aggregation": _Suite(
        _aggregation_spec, _aggregation_chunks, "count / most frequent / timeline over labelled records"
    ),
    "pairs": _Suite(_pairs_spec, _pairs_chunks, "every pair of ids meeting a condition, scored by F1"),
}


def suite_named(name: str) -> _Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise EvalError(f"no suite {name!r}; the suites are {', '.join(SUITES)}") from None


def task_spec(ref: GeneratorRef) -> TaskSpec:
    return suite_named(ref.suite).spec(ref)


def iter_context(ref: GeneratorRef) -> Iterator[str]:
    """The context text in chunks (each ends with a newline), for streaming very large ones."""
    return suite_named(ref.suite).chunks(ref)


def materialize(ref: GeneratorRef) -> str:
    return "".join(iter_context(ref))
