"""The synthetic suites: deterministic, the right size, lazy, and their answers really are right.

The answers are recomputed here from the generated text with parsing code of the
test's own, not the generator's, and put through the task's scorer.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import re
import time

import pytest

from rlm_sandbox.evals.scorers import score_answer
from rlm_sandbox.evals.suites import SUITES, format_size, generate_suite, iter_context, materialize, parse_size
from rlm_sandbox.evals.tasks import EvalError


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(SUITES))
def test_same_seed_same_tasks_other_seed_other_tasks(name):
    first = generate_suite(name, 3, [4096], seed=11)
    again = generate_suite(name, 3, [4096], seed=11)
    other = generate_suite(name, 3, [4096], seed=12)
    assert [t.model_dump() for t in first] == [t.model_dump() for t in again]
    assert [digest(t.load_context()) for t in first] == [digest(t.load_context()) for t in again]
    assert {digest(t.load_context()) for t in first}.isdisjoint(digest(t.load_context()) for t in other)
    assert len({t.id for t in first + other}) == 6
    assert len({digest(t.load_context()) for t in first}) == 3, "tasks of one seed differ from each other"


@pytest.mark.parametrize("name", sorted(SUITES))
@pytest.mark.parametrize("size", [8192, 65536])
def test_contexts_have_about_the_size_asked_for(name, size):
    (task,) = generate_suite(name, 1, [size], seed=1)
    tokens = len(task.load_context()) / 4
    assert 0.85 * size <= tokens <= 1.2 * size, f"{name} at {size}: {tokens:.0f} tokens"


def test_sizes_parse_like_ruler():
    assert [parse_size(s) for s in ("4096", "8k", "128K", "1M", "10m", "1.5k")] == [
        4096,
        8192,
        131072,
        1048576,
        10485760,
        1536,
    ]
    assert [format_size(n) for n in (8192, 1048576, 1000)] == ["8K", "1M", "1000"]
    with pytest.raises(EvalError):
        parse_size("big")
    with pytest.raises(EvalError, match="no suite"):
        generate_suite("ruler", 1, [1024])


def test_ten_million_token_haystack_is_lazy_and_streams():
    started = time.monotonic()
    (task,) = generate_suite("niah", 1, [parse_size("10M")], seed=0)
    assert time.monotonic() - started < 1.0, "making the task must not make its 40 MB context"
    chunks = iter_context(task.generator)
    first = next(chunks)
    assert 0 < len(first) < 2_000_000, "the context comes in chunks, so it can be streamed to a file"


def test_chunks_join_to_the_materialized_text():
    (task,) = generate_suite("aggregation", 1, [30_000], seed=4)
    assert "".join(iter_context(task.generator)) == materialize(task.generator)


# ------------------------------------------------------------------ the answers are right


NEEDLE = re.compile(r"^One of the special magic numbers for ([a-z]+-[a-z]+) is: (\d+)\.$")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_niah_answer_is_the_number_of_the_asked_key(seed):
    for task in generate_suite("niah", 3, [4096, 32768], seed=seed):
        lines = task.load_context().splitlines()
        needles = dict(m.groups() for m in map(NEEDLE.match, lines) if m)
        assert len(needles) == 4, "one needle and three distractors with other keys"
        key = re.search(r'"([^"]+)"', task.query).group(1)
        assert sum(key in line for line in lines) == 1
        assert needles[key] == task.expected
        assert score_answer(needles[key], task.expected, task.scorer).correct
        wrong = next(number for other, number in needles.items() if other != key)
        assert not score_answer(wrong, task.expected, task.scorer).correct


RECORD = re.compile(r"^\[(\d{4}-\d{2})-\d{2}\] record \d+ \| user u\d+ \| label: (\w+) \| note: [a-z ]+$")


def test_aggregation_answers_follow_from_the_labels():
    kinds = collections.Counter()
    for task in generate_suite("aggregation", 6, [4096, 32768], seed=3):
        lines = task.load_context().splitlines()
        records = [RECORD.match(line).groups() for line in lines]  # every line is a record
        labels = collections.Counter(label for _, label in records)
        kind = task.meta["kind"]
        kinds[kind] += 1
        if kind == "count":
            label = re.search(r"labelled '(\w+)'", task.query).group(1)
            answer, wrong = str(labels[label]), str(labels[label] + 1)
        elif kind == "most_frequent":
            (top, top_count), (_, second_count) = labels.most_common(2)
            assert top_count > second_count, "the most frequent label is unique"
            answer, wrong = top, labels.most_common(2)[1][0]
        else:
            label = re.search(r"labelled '(\w+)'", task.query).group(1)
            months = collections.Counter(month for month, record_label in records if record_label == label)
            answer = "\n".join(f"{month}: {months[month]}" for month in sorted(months))
            wrong = "\n".join(f"{month}: {months[month] + 1}" for month in sorted(months))
        assert score_answer(answer, task.expected, task.scorer).correct, (task.id, task.expected, answer)
        assert not score_answer(wrong, task.expected, task.scorer).correct
    assert set(kinds) == {"count", "most_frequent", "timeline"}


MEMBER = re.compile(r"^id=(P\d+) \| city=(\w+) \| team=(\w+) \| status=(\w+) \| joined=[\d-]+ \| note: [a-z ]+$")


def test_pairs_answers_are_all_pairs_meeting_the_condition():
    for task in generate_suite("pairs", 4, [4096, 32768], seed=8):
        members = [MEMBER.match(line).groups() for line in task.load_context().splitlines()]
        status, attribute = re.search(r"status '(\w+)' and the same (\w+)", task.query).groups()
        column = {"city": 1, "team": 2}[attribute]
        chosen = [m for m in members if m[3] == status]
        pairs = sorted(
            tuple(sorted((a[0], b[0]))) for a, b in itertools.combinations(chosen, 2) if a[column] == b[column]
        )
        assert pairs, "the condition holds for some pairs"
        answer = "\n".join(f"({a}, {b})" for a, b in pairs)
        scored = score_answer(answer, task.expected, task.scorer)
        assert (scored.score, scored.correct) == (1.0, True)
        missing_one = score_answer("\n".join(answer.splitlines()[1:]), task.expected, task.scorer)
        assert missing_one.score < 1.0 and not missing_one.correct
