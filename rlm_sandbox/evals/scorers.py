"""Scoring an answer against what was expected: exact, contains, numeric, F1 over a set."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Score",
    "ScorerName",
    "ScorerSpec",
    "default_scorer",
    "normalize",
    "parse_items",
    "parse_number",
    "score_answer",
]


ScorerName = Literal["exact", "contains", "numeric", "f1"]


class ScorerSpec(BaseModel):
    """How an answer is compared with `expected`.

    exact: equal after normalising case, whitespace, surrounding quotes and a final period.
    contains: the normalised expected text occurs in the normalised answer.
    numeric: the answer's number is within `tolerance` of expected (relative to |expected| if `relative`).
    f1: F1 between the set of expected items and the items of the answer (lines, or pairs
        like "(a, b)" when the expected items are pairs); correct when F1 >= `threshold`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ScorerName
    tolerance: float = Field(default=0.0, ge=0)
    relative: bool = False
    threshold: float = Field(default=1.0, ge=0, le=1)


class Score(BaseModel):
    score: float
    """In [0, 1]: 1 or 0 for exact / contains / numeric, the F1 for f1."""
    correct: bool
    detail: str | None = None


def default_scorer(expected: Any) -> ScorerSpec:
    """numeric for numbers, f1 for lists, exact for anything else."""
    if isinstance(expected, bool):
        return ScorerSpec(name="exact")
    if isinstance(expected, (int, float)):
        return ScorerSpec(name="numeric")
    if isinstance(expected, (list, tuple)):
        return ScorerSpec(name="f1")
    return ScorerSpec(name="exact")


_SPACE = re.compile(r"\s+")
_WRAPPERS = "\"'`“”‘’*"  # noqa: RUF001 - typographic quotes are what it strips


def normalize(text: Any) -> str:
    """Case-folded, whitespace collapsed, without surrounding quotes/markdown or a final period."""
    value = _SPACE.sub(" ", str(text)).strip()
    for _ in range(3):
        stripped = value.strip(_WRAPPERS).strip().rstrip(".").strip()
        if stripped == value:
            break
        value = stripped
    return value.casefold()


# Thousands separators ("1,234,567") are part of a number; "3, 4" is two numbers.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def parse_number(text: Any) -> float | None:
    """The answer as a number: all of it if it is one, else its last number; None without any."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = normalize(text).replace("$", "")
    whole = value.replace(",", "")
    try:
        number = float(whole)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    found = _NUMBER.findall(value)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


_PAIR = re.compile(r"[(\[]\s*['\"]?([\w.\-]+)['\"]?\s*,\s*['\"]?([\w.\-]+)['\"]?\s*[)\]]")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def _pair_key(a: Any, b: Any) -> tuple[str, str]:
    x, y = normalize(a), normalize(b)
    return (x, y) if x <= y else (y, x)


def parse_items(answer: Any, *, pairs: bool) -> set:
    """The set of items an answer lists: strings, or unordered pairs when `pairs`."""
    if answer is None:
        return set()
    if isinstance(answer, (list, tuple)):
        items: list[Any] = list(answer)
    else:
        text = str(answer).strip()
        items = []
        try:
            loaded = json.loads(text)
        except (json.JSONDecodeError, ValueError):
            loaded = None
        if isinstance(loaded, list):
            items = loaded
        elif pairs:
            found = _PAIR.findall(text)
            if found:
                return {_pair_key(a, b) for a, b in found}
            for line in text.splitlines():
                tokens = [
                    t
                    for t in re.split(r"[\s,;:|()\[\]]+", _BULLET.sub("", line))
                    if t and t.lower() != "and" and re.search(r"\w", t)
                ]
                if len(tokens) == 2:
                    items.append(tokens)
        else:
            lines = [line for line in text.splitlines() if line.strip()]
            if len(lines) == 1:
                lines = re.split(r"\s*[;,]\s*", lines[0])
            items = [_BULLET.sub("", line) for line in lines]
    if pairs:
        return {_pair_key(*item) for item in items if isinstance(item, (list, tuple)) and len(item) == 2}
    return {normalize(item) for item in items if normalize(item)}


def _f1(answer: Any, expected: Any, spec: ScorerSpec) -> Score:
    expected_items = list(expected) if isinstance(expected, (list, tuple, set)) else [expected]
    pairs = bool(expected_items) and all(isinstance(item, (list, tuple)) for item in expected_items)
    want = parse_items(expected_items, pairs=pairs)
    got = parse_items(answer, pairs=pairs)
    hits = len(want & got)
    if not want and not got:
        f1 = 1.0
    elif hits == 0:
        f1 = 0.0
    else:
        precision, recall = hits / len(got), hits / len(want)
        f1 = 2 * precision * recall / (precision + recall)
    detail = f"{hits} of {len(want)} expected items found, {len(got) - hits} extra; F1 {f1:.3f}"
    return Score(score=f1, correct=f1 >= spec.threshold, detail=detail)


def score_answer(answer: str | None, expected: Any, spec: ScorerSpec | None = None) -> Score:
    """Score `answer` against `expected` with `spec` (or the default for `expected`'s type)."""
    spec = spec or default_scorer(expected)
    if spec.name == "f1":
        return _f1(answer, expected, spec)
    if answer is None:
        return Score(score=0.0, correct=False, detail="no answer")
    if spec.name == "numeric":
        want = parse_number(expected)
        if want is None:
            return Score(score=0.0, correct=False, detail=f"expected {expected!r} is not a number")
        got = parse_number(answer)
        if got is None:
            return Score(score=0.0, correct=False, detail="the answer has no number")
        allowed = spec.tolerance * abs(want) if spec.relative else spec.tolerance
        ok = abs(got - want) <= allowed + 1e-9 * max(1.0, abs(want))
        return Score(score=float(ok), correct=ok, detail=f"{got:g} vs {want:g} (tolerance {allowed:g})")
    want_text, got_text = normalize(expected), normalize(answer)
    if spec.name == "contains":
        ok = bool(want_text) and want_text in got_text
    else:
        ok = want_text == got_text
    return Score(score=float(ok), correct=ok)
