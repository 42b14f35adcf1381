"""Scorers: each compares the way its name says, and no more leniently."""

from __future__ import annotations

import pytest

from rlm_sandbox.evals.scorers import default_scorer, parse_items, parse_number, score_answer
from rlm_sandbox.evals.tasks import ScorerSpec


def spec(name: str, **kwargs) -> ScorerSpec:
    return ScorerSpec(name=name, **kwargs)


@pytest.mark.parametrize(
    "answer, expected, correct",
    [
        ("Paris", "paris", True),
        ('  "Paris."  ', "Paris", True),
        ("**Paris**", "Paris", True),
        ("Paris, France", "Paris", False),
        ("New  York", "new york", True),
        (None, "x", False),
    ],
)
def test_exact(answer, expected, correct):
    assert score_answer(answer, expected, spec("exact")).correct is correct


def test_contains():
    assert score_answer("The lease was signed by Ann Lee in 1997.", "ann lee", spec("contains")).correct
    assert not score_answer("Signed by Ann.", "Ann Lee", spec("contains")).correct


@pytest.mark.parametrize(
    "answer, expected, tolerance, relative, correct",
    [
        ("42", 42, 0, False, True),
        ("There are 1,234 records.", 1234, 0, False, True),
        ("41", 42, 0, False, False),
        ("41.5", 42, 0.5, False, True),
        ("40", 42, 0.05, True, True),  # 5% of 42 = 2.1
        ("39", 42, 0.05, True, False),
        ("In 2023 there were 17", "17", 0, False, True),  # the last number counts
        ("none", 3, 0, False, False),
        ("$3.50", 3.5, 0, False, True),
    ],
)
def test_numeric(answer, expected, tolerance, relative, correct):
    assert score_answer(answer, expected, spec("numeric", tolerance=tolerance, relative=relative)).correct is correct


def test_parse_number():
    assert parse_number("1,234,567") == 1234567
    assert parse_number("-3.5e2") == -350
    assert parse_number("no digits") is None


def test_f1_over_a_set_of_lines():
    expected = ["2023-01: 4", "2023-02: 7", "2023-03: 1"]
    perfect = score_answer("2023-01: 4\n2023-02: 7\n2023-03: 1", expected, spec("f1"))
    assert (perfect.score, perfect.correct) == (1.0, True)
    partial = score_answer("2023-01: 4\n2023-02: 8", expected, spec("f1"))
    # precision 1/2, recall 1/3 -> F1 = 0.4
    assert partial.score == pytest.approx(0.4) and not partial.correct
    assert score_answer("- 2023-01: 4\n- 2023-02: 7\n- 2023-03: 1", expected, spec("f1")).correct  # bullets
    assert score_answer("2023-01: 4; 2023-02: 7; 2023-03: 1", expected, spec("f1")).correct  # one line


def test_f1_over_unordered_pairs():
    expected = [["P1", "P2"], ["P1", "P3"], ["P4", "P5"]]
    assert score_answer("(P1, P2)\n(P3, P1)\n(P5, P4)", expected, spec("f1")).score == 1.0
    assert score_answer('[["P2", "P1"], ["P1", "P3"], ["P4", "P5"]]', expected, spec("f1")).score == 1.0
    two_of_three = score_answer("(P1, P2), (P1, P3), (P9, P8), (P7, P6)", expected, spec("f1"))
    # precision 2/4, recall 2/3 -> F1 = 4/7
    assert two_of_three.score == pytest.approx(4 / 7)
    loose = score_answer("P1 P2\nP4 - P5", expected, spec("f1", threshold=0.75))  # loose lines: 2 of 3
    assert loose.score == pytest.approx(0.8) and loose.correct
    assert not score_answer("P1 P2\nP4 - P5", expected, spec("f1")).correct  # the default threshold is 1.0
    assert score_answer("", expected, spec("f1")).score == 0.0
    assert score_answer("", [], spec("f1")).score == 1.0  # nothing expected, nothing given


def test_parse_items_pairs_are_unordered_and_case_folded():
    assert parse_items("(b, A)", pairs=True) == {("a", "b")}


def test_default_scorer_follows_the_expected_type():
    assert default_scorer(3).name == "numeric"
    assert default_scorer([1, 2]).name == "f1"
    assert default_scorer("x").name == "exact"
    assert default_scorer(True).name == "exact"
