"""Needle in a haystack: a magic number hidden among lines of random words."""

from __future__ import annotations

import random

from pydantic import BaseModel

NIAH_QUERY = "What is the magic number hidden in the context? Answer with the number only."

_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "te",
    "su",
    "vo",
    "ne",
    "pa",
    "di",
    "gu",
    "zo",
    "fi",
    "be",
    "ta",
    "re",
    "no",
    "sa",
    "ko",
    "mu",
    "li",
    "da",
    "ve",
    "po",
    "ri",
    "shi",
    "ton",
    "gar",
    "mel",
    "vin",
    "dra",
    "kel",
    "sor",
    "pim",
    "lut",
    "wex",
    "bor",
    "qua",
    "zen",
    "hal",
    "fro",
]


class Haystack(BaseModel):
    text: str
    magic_number: str
    needle_line: int
    lines: int


def _vocabulary(rng: random.Random, size: int = 2000) -> list[str]:
    return ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 3))) for _ in range(size)]


def make_haystack(
    lines: int = 1_000_000, *, seed: int | None = None, words_per_line: tuple[int, int] = (4, 10)
) -> Haystack:
    """`lines` lines of random words with one line stating a random 7-digit magic number.

    Lines are drawn from a pool of distinct random lines, which keeps a million-line
    haystack quick to make (about a second) while every line still reads as noise.
    """
    if lines < 1:
        raise ValueError("a haystack needs at least one line")
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    pool = [" ".join(rng.choices(vocabulary, k=rng.randint(*words_per_line))) for _ in range(min(lines, 20_000))]
    body = rng.choices(pool, k=lines)
    magic = str(rng.randint(1_000_000, 9_999_999))
    needle_line = rng.randrange(lines)
    body[needle_line] = f"The magic number is {magic}."
    return Haystack(text="\n".join(body), magic_number=magic, needle_line=needle_line, lines=lines)
