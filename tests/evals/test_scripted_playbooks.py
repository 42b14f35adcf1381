"""The scripted demo model's playbooks: recognised by the question, answered by code in the sandbox."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlm_sandbox import RLM
from rlm_sandbox.evals.scorers import score_answer
from rlm_sandbox.evals.suites import generate_suite
from rlm_sandbox.sandbox.local import IsolationWarning
from rlm_sandbox.scripted import ScriptedDemoModel

DEMO = ScriptedDemoModel()


def root(query: str, turns: int = 0) -> list[dict]:
    messages = [{"role": "system", "content": "an RLM node"}, {"role": "user", "content": f"Question: {query}\n\nmore"}]
    for _ in range(turns):
        messages += [{"role": "assistant", "content": "..."}, {"role": "user", "content": "output"}]
    return messages


@pytest.mark.parametrize("name", ["niah", "aggregation", "pairs"])
def test_each_suite_is_solved_by_the_scripted_model(name):
    rlm = RLM(model="scripted-demo", client=DEMO, sandbox=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)
        for task in generate_suite(name, 3, [4096, 65536], seed=21):
            result = rlm.completion(task.load_context(), task.query)
            assert result.stop_reason == "final", result.error
            assert score_answer(result.answer, task.expected, task.scorer).correct, (task.id, result.answer)
            assert result.iterations == 3


def test_the_code_is_computed_in_the_sandbox_not_known_to_the_model():
    (task,) = generate_suite("aggregation", 1, [4096], seed=2)  # index 0: a count
    code = DEMO.complete(root(task.query, turns=1)).text
    assert "labels[" in code and str(task.expected) not in code.split("labels[")[1].split("]")[0]
    assert "```repl" in code and "collections.Counter" in code


def test_unrecognised_questions_get_the_needle_playbook_as_before():
    first = DEMO.complete(root("Who signed the lease?")).text
    assert "pattern = re.compile('signed'" in first  # its longest word
    assert DEMO.complete(root("What is the magic number?", turns=2)).text.endswith("FINAL_VAR(answer)")


def test_the_keyed_sub_reply_ignores_distractors():
    prompt = (
        'Here are lines from a long document. Reply with only the special magic number for "red-fox" that they state.'
        "\n\nOne of the special magic numbers for bored-fox is: 1111111.\n"
        "One of the special magic numbers for red-fox is: 2222222.\n"
    )
    assert DEMO.complete([{"role": "user", "content": prompt}]).text == "2222222"


def test_deterministic_and_safe_from_many_threads():
    queries = [task.query for name in ("niah", "aggregation", "pairs") for task in generate_suite(name, 3, [1024])]
    expected = [DEMO.complete(root(q, turns=t)).text for q in queries for t in range(3)]
    with ThreadPoolExecutor(8) as pool:
        again = list(
            pool.map(lambda args: DEMO.complete(root(*args)).text, [(q, t) for q in queries for t in range(3)])
        )
    assert again == expected
