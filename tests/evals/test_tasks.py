"""Tasks files: validation with line numbers, and where a task's context comes from."""

from __future__ import annotations

import json

import pytest

from rlm_sandbox.evals.suites import generate_suite
from rlm_sandbox.evals.tasks import EvalError, Task, load_tasks, write_tasks

from .helpers import write_jsonl


def test_inline_text_path_and_list_of_paths(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha")
    (tmp_path / "docs" / "b.txt").write_text("beta")
    (tmp_path / "data.json").write_text(json.dumps({"k": [1, 2]}))
    tasks = load_tasks(
        write_jsonl(
            tmp_path / "tasks.jsonl",
            [
                {"id": "inline", "context": "just some text", "query": "q", "expected": "x"},
                {"id": "path", "context": "docs/a.txt", "query": "q", "expected": "x"},
                {"id": "paths", "context": ["docs/a.txt", "docs/b.txt"], "query": "q", "expected": "x"},
                {"id": "words", "context": ["docs/a.txt", "not a file"], "query": "q", "expected": "x"},
                {"id": "json", "context_path": "data.json", "query": "q", "expected": "x"},
                {"id": 7, "context": {"inline": "dict"}, "query": "q", "expected": 3, "scorer": "numeric"},
            ],
        )
    )
    contexts = {task.id: task.load_context() for task in tasks}
    assert contexts == {
        "inline": "just some text",
        "path": "alpha",
        "paths": ["alpha", "beta"],
        "words": ["docs/a.txt", "not a file"],  # not every item is a file: an inline list
        "json": {"k": [1, 2]},
        "7": {"inline": "dict"},
    }
    assert tasks[-1].scorer.name == "numeric"
    # inline() reads files now, so a worker without them gets the text.
    assert tasks[1].inline().context == "alpha" and tasks[1].inline().load_context() == "alpha"


@pytest.mark.parametrize(
    "row",
    [
        {"id": "a", "context_path": "gone.txt", "query": "q", "expected": "x"},
        {"id": "a", "context": "docs/gone.txt", "query": "q", "expected": "x"},
        {"id": "a", "context": "gone.json", "query": "q", "expected": "x"},
        {"id": "a", "context": ["gone.txt", "also-gone.txt"], "query": "q", "expected": "x"},
    ],
)
def test_a_missing_context_file_is_an_error_when_the_tasks_load(tmp_path, row):
    """Not the path's text sent to the model as if it were the context."""
    with pytest.raises(EvalError, match=r"t.jsonl:1: task a: .*gone.* \(.*\)$"):
        load_tasks(write_jsonl(tmp_path / "t.jsonl", [row]))


def test_context_text_is_text_even_when_it_looks_like_a_path(tmp_path):
    (task,) = load_tasks(
        write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "context_text": "docs/gone.txt", "query": "q", "expected": "x"}])
    )
    assert task.load_context() == "docs/gone.txt"
    with pytest.raises(ValueError, match="exactly one of"):
        Task(id="b", context="x", context_text="y", query="q", expected="z")


def test_a_task_fingerprint_follows_its_context_content(tmp_path):
    (tmp_path / "doc.txt").write_text("version one")
    path = write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "context": "doc.txt", "query": "q", "expected": "x"}])
    (task,) = load_tasks(path)
    before = task.fingerprint()
    assert task.fingerprint() == before == task.fingerprint(task.load_context())
    (tmp_path / "doc.txt").write_text("version two")
    assert task.fingerprint() != before
    assert task.inline().fingerprint() == task.fingerprint(), "a Ray worker's inline copy hashes the same"
    changed_scorer = Task(id="a", context="doc.txt", query="q", expected="x", scorer="contains").with_base_dir(tmp_path)
    assert changed_scorer.fingerprint() != task.fingerprint()


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"t.jsonl:2: not JSON"),
        ('["a list"]', r"t.jsonl:2: a task is a JSON object"),
        ('{"id": "b", "query": "q", "expected": "x"}', r"t.jsonl:2: .*exactly one of context"),
        (
            '{"id": "b", "context": "c", "query": "q", "expected": "x", "scorrer": "exact"}',
            r"t.jsonl:2: scorrer: Extra",
        ),
        ('{"id": "b", "context": "c", "query": "q", "expected": "x", "scorer": "fuzzy"}', r"t.jsonl:2: scorer.name"),
        (
            '{"id": "a", "context": "c", "query": "q", "expected": "x"}',
            r"t.jsonl:2: task id 'a' is already used on line 1",
        ),
    ],
)
def test_bad_lines_are_reported_with_their_line_number(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "context": "c", "query": "q", "expected": "x"}\n' + line + "\n")
    with pytest.raises(EvalError, match=message):
        load_tasks(path)


def test_an_empty_file_is_an_error(tmp_path):
    (tmp_path / "t.jsonl").write_text("\n\n")
    with pytest.raises(EvalError, match="no tasks"):
        load_tasks(tmp_path / "t.jsonl")


def test_generated_tasks_round_trip_through_a_file_as_references(tmp_path):
    tasks = generate_suite("pairs", 2, [2048], seed=5)
    write_tasks(tasks, tmp_path / "gen.jsonl")
    assert (tmp_path / "gen.jsonl").stat().st_size < 20_000, "contexts are not written, only their generator"
    again = load_tasks(tmp_path / "gen.jsonl")
    assert [t.model_dump() for t in again] == [t.model_dump() for t in tasks]
    assert again[1].load_context() == tasks[1].load_context()


def test_task_requires_expected():
    with pytest.raises(ValueError):
        Task(id="a", context="c", query="q", expected=None)
