"""`rlm-sandbox eval` and `report` as a user (or CI) runs them: real subprocesses, real Docker."""

from __future__ import annotations

import json
import signal
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from rlm_sandbox.evals.results import read_results

from ..fakes.fake_openai import FakeOpenAIServer, Reply
from .helpers import (
    cli,
    cli_popen,
    is_root,
    needle_task,
    question_of,
    repl,
    scripted,
    turn_of,
    wait_until_no_containers,
    write_jsonl,
)


def junit_counts(path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    counted = {key: int(root.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    # The totals agree with the elements actually there.
    assert counted == {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    return counted


def test_built_in_suites_with_the_scripted_model_then_report(tmp_path, sandbox_image):
    done = cli(
        "eval",
        "--suite",
        "niah,aggregation,pairs",
        "--n",
        "2",
        "--size",
        "4k",
        "--out",
        "r1.jsonl",
        "--junit",
        "j.xml",
        "--fail-under",
        "1.0",
        "--demo",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "no model: scripted demo" in done.stderr
    assert "100.0% (6/6)" in done.stdout and "p50" in done.stdout
    assert junit_counts(tmp_path / "j.xml") == {"tests": 6, "failures": 0, "errors": 0, "skipped": 0}
    suites = {s.get("name") for s in ET.parse(tmp_path / "j.xml").getroot().findall("testsuite")}
    assert suites == {"niah", "aggregation", "pairs"}

    deeper = cli(
        "eval",
        "--suite",
        "niah",
        "--n",
        "2",
        "--size",
        "4k,16k",
        "--max-depth",
        "2",
        "--out",
        "r2.jsonl",
        "--json",
        "--demo",
        cwd=tmp_path,
    )
    assert deeper.returncode == 0, deeper.stderr
    summary = json.loads(deeper.stdout)
    assert (summary["accuracy"], summary["tasks"], summary["max_depth"]) == (1.0, 4, 2)

    report = cli("report", "r1.jsonl", "r2.jsonl", "--plot", "plot.png", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "scripted-demo, depth 1" in report.stdout and "scripted-demo, depth 2" in report.stdout
    assert "16K" in report.stdout and "aggregation" in report.stdout
    png = (tmp_path / "plot.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    as_json = json.loads(cli("report", "r1.jsonl", "r2.jsonl", "--json", cwd=tmp_path).stdout)
    assert [(run["max_depth"], run["tasks"]) for run in as_json] == [(1, 6), (2, 4)]


def test_junit_and_fail_under_against_an_openai_compatible_server(tmp_path, sandbox_image):
    def respond(body):
        if "(wrong)" in (question_of(body) or ""):
            return Reply.text("FINAL(0)")
        if "(refused)" in (question_of(body) or ""):
            return Reply.error(400, message="this prompt is refused")
        return scripted(body)

    rows = [
        needle_task("right-1", 1234567),
        needle_task("wrong-1", 2345678, query="What is the magic number? (wrong)"),
        needle_task("right-2", 3456789),
        needle_task("wrong-2", 4567891, query="What is the magic number? (wrong)"),
        needle_task("broken", 5678912, query="What is the magic number? (refused)"),
    ]
    write_jsonl(tmp_path / "tasks.jsonl", rows)
    with FakeOpenAIServer(respond) as server:
        args = (
            "eval",
            "tasks.jsonl",
            "--base-url",
            server.base_url,
            "--model",
            "local-model",
            "--out",
            "r.jsonl",
            "--junit",
            "j.xml",
        )
        errors = cli(*args, "--fail-under", "0.1", cwd=tmp_path)
        assert errors.returncode == 3, errors.stderr
        assert "1 task(s) ended in an error" in errors.stderr and "Traceback" not in errors.stderr
        assert "broken: error: " in errors.stdout and "HTTP 400" in errors.stdout, "the summary says which and why"
        assert "wrong-1: expected '2345678', got '0'" in errors.stdout
        strict = cli(*args, "--fail-under", "0.75", "--allow-errors", "--no-retry-errors", cwd=tmp_path)
        assert strict.returncode == 1, strict.stderr
        assert "under --fail-under" in strict.stderr and "scripted demo" not in strict.stderr
        assert junit_counts(tmp_path / "j.xml") == {"tests": 5, "failures": 2, "errors": 1, "skipped": 0}
        root = ET.parse(tmp_path / "j.xml").getroot()
        failed = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
        assert failed == {"wrong-1", "wrong-2"}
        assert "expected 2345678, got 0" in root.find(".//testcase[@name='wrong-1']/failure").get("message")
        assert "HTTP 400" in root.find(".//testcase[@name='broken']/error").get("message")
        assert "detail: None" not in (tmp_path / "j.xml").read_text()
        requests = server.request_count

        lenient = cli(*args, "--fail-under", "40%", "--allow-errors", "--no-retry-errors", cwd=tmp_path)  # 2 of 5
        assert lenient.returncode == 0, lenient.stderr
        assert server.request_count == requests, "the second run resumed: no task ran again"
        assert "5 task(s) already finished" in lenient.stderr
        assert junit_counts(tmp_path / "j.xml")["tests"] == 5
    assert len(read_results(tmp_path / "r.jsonl")) == 5


def test_ctrl_c_mid_suite_loses_nothing_and_the_same_command_resumes(tmp_path, docker_client, sandbox_image):
    slow_on = threading.Event()
    slow_on.set()
    both_slow_running = threading.Event()
    slow_seen: set[str] = set()
    lock = threading.Lock()

    def respond(body):
        question = question_of(body) or ""
        if slow_on.is_set() and "(slow)" in question and turn_of(body) == 0:
            with lock:
                slow_seen.add(question)
                if len(slow_seen) == 2:
                    both_slow_running.set()
            return Reply.text(repl("import time\ntime.sleep(120)"))
        return scripted(body)

    # Two at a time: t0 and t1 finish, then t2 and t3 start (only once t0, t1 are written) and hang.
    rows = [
        needle_task(
            f"t{i}", 1_000_000 + i, query=f"What is the magic number? (task {i}{' (slow)' if i in (2, 3) else ''})"
        )
        for i in range(6)
    ]
    write_jsonl(tmp_path / "tasks.jsonl", rows)
    with FakeOpenAIServer(respond) as server:
        args = (
            "eval",
            "tasks.jsonl",
            "--base-url",
            server.base_url,
            "--out",
            "r.jsonl",
            "--concurrency",
            "2",
            "--junit",
            "j.xml",
        )
        process = cli_popen(*args, cwd=tmp_path)
        try:
            assert both_slow_running.wait(120), "the slow tasks never started"
            interrupted_at = time.monotonic()
            process.send_signal(signal.SIGINT)
            _stdout, stderr = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
        took = time.monotonic() - interrupted_at
        assert process.returncode == 130, stderr
        assert took < 15, f"running tasks were not interrupted: exit took {took:.1f} s"
        assert "interrupted: 2 of 6 tasks finished (2 in this run)" in stderr
        assert "run the same command again to resume" in stderr
        assert "the interrupted tasks had made 2 model call(s)" in stderr  # one first turn each
        assert sorted(r["id"] for r in read_results(tmp_path / "r.jsonl")) == ["t0", "t1"]
        assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2, "nothing partial was written"
        assert wait_until_no_containers(docker_client, {process.pid}) == []
        assert junit_counts(tmp_path / "j.xml") == {"tests": 6, "failures": 0, "errors": 0, "skipped": 4}

        slow_on.clear()
        before = server.request_count
        again = cli(*args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        started = [question_of(r.body) for r in server.requests[before:] if is_root(r.body) and turn_of(r.body) == 0]
        assert sorted(started) == sorted(row["query"] for row in rows[2:]), "only the unfinished tasks ran"
    assert junit_counts(tmp_path / "j.xml") == {"tests": 6, "failures": 0, "errors": 0, "skipped": 0}
    results = read_results(tmp_path / "r.jsonl")
    assert sorted(r["id"] for r in results) == [f"t{i}" for i in range(6)]
    assert all(r["correct"] for r in results)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["eval"], 2, "one of the arguments"),
        (["eval", "t.jsonl", "--suite", "niah"], 2, "not allowed with"),
        (["eval", "bad.jsonl", "--demo"], 2, "bad.jsonl:1: not JSON"),
        (["eval", "--suite", "ruler", "--demo"], 2, "no suite 'ruler'"),
        (["eval", "--suite", "niah", "--size", "huge", "--demo"], 2, "not a size"),
        (["report", "missing.jsonl"], 2, "no such results file"),
    ],
)
def test_usage_errors(tmp_path, args, code, message):
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_write_tasks_makes_a_file_the_eval_can_run(tmp_path):
    done = cli(
        "eval",
        "--suite",
        "pairs",
        "--n",
        "3",
        "--size",
        "2k",
        "--seed",
        "4",
        "--write-tasks",
        "pairs.jsonl",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["pairs-2K-s4-000", "pairs-2K-s4-001", "pairs-2K-s4-002"]
    assert all(line["generator"]["suite"] == "pairs" and "context" not in line for line in lines)
    ran = cli("eval", "pairs.jsonl", "--no-sandbox", "--json", "--demo", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["accuracy"] == 1.0
