"""The runner end to end: real openai client -> fake OpenAI-compatible server; real sandboxes.

Most tests use local sandboxes for speed (the runner code is the same); the ones
about sandboxes themselves use Docker.
"""

from __future__ import annotations

import json
import threading

import pytest

from rlm_sandbox import Limits
from rlm_sandbox.evals.results import TaskResult, read_results
from rlm_sandbox.evals.runner import RunConfig, run_eval
from rlm_sandbox.evals.suites import generate_suite
from rlm_sandbox.evals.tasks import Task, load_tasks

from ..fakes.fake_openai import FakeOpenAIServer, Reply
from .helpers import (
    is_root,
    last_user_message,
    needle_task,
    question_of,
    repl,
    scripted,
    turn_of,
    write_jsonl,
)

pytestmark = pytest.mark.filterwarnings("ignore::rlm_sandbox.sandbox.local.IsolationWarning")


@pytest.fixture
def server():
    with FakeOpenAIServer(scripted) as fake:
        yield fake
        assert not fake.handler_errors, fake.handler_errors


def config_for(server, *, sandbox="local", **limits) -> RunConfig:
    return RunConfig(
        model="fake-root",
        sub_model="fake-sub",
        base_url=server.base_url,
        sandbox=sandbox,
        limits=Limits(**limits),
    )


def needles(count: int, start: int = 0) -> list[Task]:
    return [Task.model_validate(needle_task(f"t{i}", 1_000_000 + i)) for i in range(start, start + count)]


# ------------------------------------------------------------------ the whole path


def test_every_suite_end_to_end_in_docker(server, tmp_path, sandbox_image):
    tasks = [t for name in ("niah", "aggregation", "pairs") for t in generate_suite(name, 2, [4096], seed=9)]
    out = tmp_path / "results.jsonl"
    outcome = run_eval(tasks, config_for(server, sandbox="docker"), out=out, concurrency=3)
    assert (outcome.total, outcome.ran, outcome.resumed, outcome.interrupted) == (6, 6, 0, False)
    assert [r["id"] for r in outcome.results] == [t.id for t in tasks], "results come back in task order"
    bad = [(r["id"], r["answer"], r["error"]) for r in outcome.results if not r["correct"]]
    assert not bad and outcome.accuracy == 1.0
    lines = read_results(out)
    assert sorted(r["id"] for r in lines) == sorted(t.id for t in tasks)
    for record in lines:
        result = TaskResult.model_validate(record)  # every line is a whole, valid result
        assert result.config["model"] == "fake-root" and result.config["sub_model"] == "fake-sub"
        assert result.sandboxes_started == 1 and result.context_chars > 10_000
        assert result.usage["total"]["calls"] == result.model_calls > 0
    # Usage is what the server counted: every request is in some task's results.
    assert sum(r["model_calls"] for r in lines) == server.request_count
    assert sum(r["sub_calls"] for r in lines) == 2, "the two needle tasks ask a sub-model once each"
    assert {r["usage"]["unpriced_models"][0] for r in lines} == {"fake-root"}, "no price is known for the fake models"


def test_n_tasks_run_at_once_and_never_more(server, tmp_path):
    together = threading.Barrier(3, timeout=20)

    def respond(body):
        if is_root(body) and turn_of(body) == 0:
            together.wait()  # only passes once three tasks are in their first turn at the same time
        return scripted(body)

    server.set_responder(respond)
    outcome = run_eval(needles(6), config_for(server), concurrency=3)
    assert outcome.accuracy == 1.0
    # One request in flight per task (the needle playbook is sequential): at most 3 at once.
    assert server.peak_concurrency == 3


# ------------------------------------------------------------------ resume


def test_resume_skips_finished_tasks_and_a_torn_line(server, tmp_path):
    out = tmp_path / "results.jsonl"
    config = config_for(server)
    first = run_eval(needles(2), config, out=out, concurrency=2)
    assert first.ran == 2 and len(read_results(out)) == 2
    # A crash in the middle of writing the third line:
    with out.open("a") as handle:
        handle.write('{"id": "t2", "fingerprint": "' + config.fingerprint() + '", "answ')
    before = server.request_count
    second = run_eval(needles(4), config, out=out, concurrency=2)
    assert (second.resumed, second.ran, second.accuracy) == (2, 2, 1.0)
    # Two tasks started (one first turn each); the finished ones were not asked again.
    assert sum(1 for r in server.requests[before:] if is_root(r.body) and turn_of(r.body) == 0) == 2
    records = read_results(out)
    assert sorted(r["id"] for r in records) == ["t0", "t1", "t2", "t3"]
    assert len(out.read_text().splitlines()) == 5, "the torn line stays, alone on its line, and is skipped"
    third = run_eval(needles(4), config, out=out)
    assert (third.resumed, third.ran, len(third.results)) == (4, 0, 4)


def test_another_configuration_does_not_resume_from_these_results(server, tmp_path):
    out = tmp_path / "results.jsonl"
    run_eval(needles(2), config_for(server), out=out)
    deeper = run_eval(needles(2), config_for(server, max_depth=2), out=out)
    assert (deeper.resumed, deeper.ran) == (0, 2)
    assert len({r["fingerprint"] for r in read_results(out)}) == 2


def test_errors_are_retried_unless_kept(server, tmp_path):
    out = tmp_path / "results.jsonl"
    server.set_responder(lambda body: Reply.error(400, message="bad request"))
    failed = run_eval(needles(2), config_for(server), out=out)
    assert [r["stop_reason"] for r in failed.results] == ["error", "error"]
    assert all("HTTP 400" in r["error"] for r in failed.results), [r["error"] for r in failed.results]
    server.set_responder(scripted)
    assert run_eval(needles(2), config_for(server), out=out, retry_errors=False).ran == 0
    retried = run_eval(needles(2), config_for(server), out=out)
    assert (retried.ran, retried.accuracy) == (2, 1.0)
    assert len(read_results(out)) == 4, "the errors stay in the file; the newer lines win"


# ------------------------------------------------------------------ scoring and failures


def test_each_scorer_through_the_runner(server, tmp_path):
    answers = {
        "exact?": "Paris.",
        "contains?": "It was signed by Ann Lee in 1997",
        "numeric?": "about 41.6",
        "f1?": "(a, b)\n(c, d)\n(x, y)",
        "wrong?": "Lyon",
    }
    server.set_responder(lambda body: Reply.text(f"FINAL({answers[question_of(body)]})"))
    rows = [
        {"id": "exact", "context": "c", "query": "exact?", "expected": "paris"},
        {"id": "contains", "context": "c", "query": "contains?", "expected": "Ann Lee", "scorer": "contains"},
        {
            "id": "numeric",
            "context": "c",
            "query": "numeric?",
            "expected": 42,
            "scorer": {"name": "numeric", "tolerance": 0.5},
        },
        {
            "id": "f1",
            "context": "c",
            "query": "f1?",
            "expected": [["a", "b"], ["d", "c"]],
            "scorer": {"name": "f1", "threshold": 0.75},
        },
        {"id": "wrong", "context": "c", "query": "wrong?", "expected": "Paris"},
    ]
    tasks = load_tasks(write_jsonl(tmp_path / "tasks.jsonl", rows))
    outcome = run_eval(tasks, config_for(server), concurrency=5)
    got = {r["id"]: (r["scorer"], round(r["score"], 3), r["correct"]) for r in outcome.results}
    assert got == {
        "exact": ("exact", 1.0, True),
        "contains": ("contains", 1.0, True),
        "numeric": ("numeric", 1.0, True),
        "f1": ("f1", 0.8, True),
        "wrong": ("exact", 0.0, False),
    }
    assert outcome.accuracy == pytest.approx(0.8)


def test_a_failing_task_never_stops_the_suite(server, tmp_path):
    def respond(body):
        if "broken model" in str(body):
            return Reply.error(400, message="this prompt is refused")
        return scripted(body)

    server.set_responder(respond)
    rows = [
        needle_task("ok-1", 1111111),
        needle_task("refused", 2222222, query="What is the magic number? (broken model)"),
        needle_task("ok-2", 3333333),
    ]
    tasks = load_tasks(write_jsonl(tmp_path / "t.jsonl", rows))
    # A file that vanished after the tasks were loaded (load_tasks itself refuses a missing one).
    gone = Task.model_validate({"id": "no-file", "context_path": "missing.txt", "query": "q", "expected": "x"})
    tasks.insert(1, gone.with_base_dir(tmp_path))
    out = tmp_path / "results.jsonl"
    outcome = run_eval(tasks, config_for(server), out=out, concurrency=2)
    by_id = {r["id"]: r for r in outcome.results}
    assert len(read_results(out)) == 4
    assert by_id["ok-1"]["correct"] and by_id["ok-2"]["correct"]
    assert by_id["no-file"]["stop_reason"] == "error" and "missing.txt" in by_id["no-file"]["error"]
    assert by_id["refused"]["stop_reason"] == "error" and "HTTP 400" in by_id["refused"]["error"]
    assert not by_id["no-file"]["correct"] and not by_id["refused"]["correct"]


def test_a_task_whose_sandbox_is_killed_is_recorded_and_the_suite_goes_on(
    server, tmp_path, docker_client, sandbox_image
):
    """The container of one task is killed from outside while the task runs."""
    killed: list[str] = []

    def respond(body):
        if question_of(body) != "Which container am I in?":
            return scripted(body)
        turn = turn_of(body)
        if turn == 0:
            return Reply.text(repl("import socket\nprint('host', socket.gethostname())"))
        if turn == 1:
            container = last_user_message(body).split("host ", 1)[1].split()[0]
            docker_client.api.kill(container, signal="SIGKILL")  # dies before the next code runs
            killed.append(container)
            return Reply.text(repl("print('still here?')"))
        assert "SandboxDied" in last_user_message(body) and "restarted" in last_user_message(body)
        return Reply.text("FINAL(lost my sandbox)")

    server.set_responder(respond)
    rows = [
        needle_task("before", 4444444),
        {"id": "killed", "context": "c", "query": "Which container am I in?", "expected": "x"},
        needle_task("after", 5555555),
    ]
    out = tmp_path / "results.jsonl"
    outcome = run_eval(
        load_tasks(write_jsonl(tmp_path / "t.jsonl", rows)),
        config_for(server, sandbox="docker"),
        out=out,
        concurrency=1,
    )
    assert len(killed) == 1
    by_id = {r["id"]: r for r in read_results(out)}
    assert by_id["killed"]["sandbox_restarts"] == 1
    assert (by_id["killed"]["answer"], by_id["killed"]["correct"]) == ("lost my sandbox", False)
    assert by_id["before"]["correct"] and by_id["after"]["correct"]
    assert outcome.ran == 3


def test_sandboxes_that_cannot_start_make_error_results(server, tmp_path, docker_client, sandbox_image):
    config = config_for(server, sandbox="docker").model_copy(update={"runtime": "no-such-runtime"})
    outcome = run_eval(needles(3), config, out=tmp_path / "r.jsonl", concurrency=3)
    assert [r["stop_reason"] for r in outcome.results] == ["error"] * 3
    assert all("no-such-runtime" in r["error"] for r in outcome.results)
    # The sandbox starts during the first model call (#16): one call per task, then the
    # start's error ends it; no turn runs without a sandbox.
    assert server.request_count == 3
    assert outcome.accuracy == 0.0 and len(read_results(tmp_path / "r.jsonl")) == 3


def test_results_lines_are_plain_json(server, tmp_path):
    out = tmp_path / "r.jsonl"
    run_eval(needles(1), config_for(server), out=out)
    record = json.loads(out.read_text().splitlines()[0])
    for field in (
        "id",
        "task_fingerprint",
        "fingerprint",
        "config",
        "answer",
        "expected",
        "score",
        "correct",
        "stop_reason",
        "usage",
        "elapsed_s",
        "error",
        "context_chars",
        "context_tokens",
        "sub_calls",
        "worker",
        "finished_at",
    ):
        assert field in record
    assert record["config"]["limits"]["max_depth"] == record["config"]["max_depth"] == 1


def test_a_changed_task_is_run_again_not_resumed(server, tmp_path):
    out = tmp_path / "r.jsonl"
    run_eval(needles(2), config_for(server), out=out)
    changed = needles(2)
    changed[1] = changed[1].model_copy(update={"expected": "1000042"})  # its answer key was fixed
    again = run_eval(changed, config_for(server), out=out)
    assert (again.resumed, again.ran) == (1, 1)
    assert {r["id"]: r["correct"] for r in again.results} == {"t0": True, "t1": False}


def test_a_changed_context_or_endpoint_is_run_again_and_said(server, tmp_path):
    (tmp_path / "doc.txt").write_text("The magic number is 1234567.")
    tasks_file = write_jsonl(
        tmp_path / "t.jsonl",
        [{"id": "f", "context": "doc.txt", "query": "What is the magic number?", "expected": "1234567"}],
    )
    out = tmp_path / "r.jsonl"
    assert run_eval(load_tasks(tasks_file), config_for(server), out=out).ran == 1
    assert run_eval(load_tasks(tasks_file), config_for(server), out=out).resumed == 1

    (tmp_path / "doc.txt").write_text("The magic number is 7654321.")  # same path, new content
    changed = run_eval(load_tasks(tasks_file), config_for(server), out=out)
    assert (changed.resumed, changed.ran, changed.changed_tasks) == (0, 1, ["f"])
    assert changed.results[0]["answer"] == "7654321"

    with FakeOpenAIServer(scripted) as elsewhere:  # another endpoint: another set-up
        moved = run_eval(load_tasks(tasks_file), config_for(elsewhere), out=out)
        assert (moved.resumed, moved.ran) == (0, 1)
        assert any("base_url" in line for diff in moved.other_configs for line in diff)


def test_errors_run_again_by_default_and_changed_limits_are_reported(server, tmp_path):
    fail = threading.Event()
    fail.set()
    server.set_responder(lambda body: Reply.error(400, message="nope") if fail.is_set() else scripted(body))
    out = tmp_path / "r.jsonl"
    first = run_eval(needles(1), config_for(server), out=out)
    assert first.results[0]["stop_reason"] == "error"
    fail.clear()
    kept = run_eval(needles(1), config_for(server), out=out, retry_errors=False)
    assert (kept.resumed, kept.ran) == (1, 0)
    again = run_eval(needles(1), config_for(server), out=out)
    assert (again.resumed, again.ran, again.retried_errors) == (0, 1, 1)
    assert again.results[0]["correct"]

    notes: list[str] = []

    class Sink:
        def notes(self, lines):
            notes.extend(lines)

        def start(self, total, resumed): ...
        def task_started(self, task): ...
        def task_finished(self, result): ...
        def interrupted(self): ...
        def stop(self): ...

    tighter = run_eval(needles(1), config_for(server, max_iterations=5), out=out, progress=Sink())
    assert (tighter.resumed, tighter.ran) == (0, 1)
    assert tighter.other_configs == [["limits.max_iterations: 20 -> 5"]]
    assert any("max_iterations: 20 -> 5" in note and "report" in note for note in notes), notes


def test_results_files_that_say_task_id_still_resume_by_id(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"task_id": "t0", "fingerprint": "abc", "answer": "1"}) + "\n")
    (record,) = read_results(old)
    assert record["id"] == "t0" and "task_id" not in record
