"""The CLI as a new user meets it: one-line errors, honest exit codes, no silent fallbacks.

Every case drives the real command as a subprocess and checks the exit code, the
one-line `error: <what> (<how to fix>)`, and that no traceback reaches stderr.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from rlm_sandbox.cli import _HelpFormatter, build_parser

from .evals.helpers import cli, cli_popen, is_root, needle_task, scripted, write_jsonl
from .fakes.fake_openai import FakeOpenAIServer, Reply


def one_line_error(done, code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# ------------------------------------------------------------------ bad input: exit 2, one line


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (
            None,
            ["run", "--context", "missing.txt", "--query", "q", "--demo"],
            "context file 'missing.txt' does not exist (",
        ),
        (None, ["run", "--context", ".", "--query", "q", "--demo"], "is a directory ("),
        ("binary", ["run", "--context", "blob.bin", "--query", "q", "--demo"], "is not UTF-8 text ("),
        ("badjson", ["run", "--context", "bad.json", "--query", "q", "--demo"], "is not valid JSON: "),
        (None, ["run", "--context", "-", "--query", "q", "--max-depth", "0"], "--max-depth: 0 is below 1 ("),
        (None, ["run", "--context", "-", "--query", "q", "--exec-timeout", "0"], "--exec-timeout: 0 is not allowed ("),
        (None, ["view", "missing.jsonl"], "no such trajectory file: missing.jsonl ("),
        (
            "results",
            ["view", "r.jsonl"],
            "r.jsonl is an eval results file, not a trajectory (use rlm-sandbox report r.jsonl)",
        ),
        (
            None,
            ["eval", "--suite", "niah", "--demo", "--fail-under", "80"],
            "--fail-under: 80 is not from 0 to 1 (give 0.8, or 80%",
        ),
        (None, ["eval", "--suite", "niah", "--demo", "--concurrency", "0"], "--concurrency: 0 is below 1"),
        (None, ["run", "--context", "-", "--query", "q"], "no API key for the model (set OPENAI_API_KEY"),
        (None, ["eval", "--suite", "niah"], "pass --demo for the built-in scripted model"),
        (
            "pathlike",
            ["eval", "tasks.jsonl", "--demo"],
            "tasks.jsonl:1: task a: context 'docs/notes.txt' looks like a file name",
        ),
        (
            None,
            [
                "run",
                "--context",
                "-",
                "--query",
                "q",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--model",
                "my-local",
                "--max-cost",
                "1",
            ],
            "--max-cost cannot be enforced: no price is known for my-local (give its prices with --price",
        ),
        (
            None,
            ["run", "--context", "-", "--query", "q", "--demo", "--base-url", "http://127.0.0.1:9/v1"],
            "contradict",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, setup, args, message):
    if setup == "binary":
        (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    elif setup == "badjson":
        (tmp_path / "bad.json").write_text('{"a": ')
    elif setup == "results":
        (tmp_path / "r.jsonl").write_text(json.dumps({"id": "t", "fingerprint": "f", "answer": "x"}) + "\n")
    elif setup == "pathlike":
        write_jsonl(tmp_path / "tasks.jsonl", [{"id": "a", "context": "docs/notes.txt", "query": "q", "expected": "x"}])
    line = one_line_error(cli(*args, cwd=tmp_path))
    assert message in line, line


def test_debug_shows_the_traceback(tmp_path):
    done = cli("run", "--context", "missing.txt", "--query", "q", "--demo", "--debug", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "InputError" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("error: context file")


# ------------------------------------------------------------------ eval exit codes


def test_eval_against_nothing_listening_fails_and_names_the_tasks(tmp_path):
    write_jsonl(tmp_path / "tasks.jsonl", [needle_task("only", 1234567)])
    args = ("eval", "tasks.jsonl", "--base-url", "http://127.0.0.1:9/v1", "--no-sandbox")
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "only: error: " in done.stdout and "1 task(s) ended in an error" in done.stderr
    allowed = cli(*args, "--allow-errors", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr


def test_resume_reruns_changed_contexts_and_reports_changed_limits(tmp_path):
    (tmp_path / "doc.txt").write_text("noise\nThe magic number is 1234567.\nnoise\n")
    write_jsonl(
        tmp_path / "tasks.jsonl",
        [{"id": "f", "context": "doc.txt", "query": "What is the magic number?", "expected": "1234567"}],
    )
    with FakeOpenAIServer(scripted) as server:
        args = ("eval", "tasks.jsonl", "--base-url", server.base_url, "--no-sandbox", "--out", "r.jsonl")
        assert cli(*args, cwd=tmp_path).returncode == 0
        count = server.request_count
        assert cli(*args, cwd=tmp_path).returncode == 0 and server.request_count == count, "resumed"

        (tmp_path / "doc.txt").write_text("noise\nThe magic number is 7654321.\nnoise\n")
        changed = cli(*args, cwd=tmp_path)
        assert changed.returncode == 1 or changed.returncode == 0
        assert server.request_count > count, "the changed context ran again"
        assert "1 task(s) changed since their result" in changed.stderr

        tighter = cli(*args, "--max-iterations", "5", cwd=tmp_path)
        assert "limits.max_iterations: 20 -> 5" in tighter.stderr and "report r.jsonl" in tighter.stderr
    report = cli("report", "r.jsonl", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "max_iterations=5" in report.stdout and "max_iterations=20" in report.stdout, report.stdout


def _hang_on_root(body):
    return Reply.hang_forever() if is_root(body) else Reply.text("ok")


def _wait_for_request(server, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while server.request_count == 0:
        assert time.monotonic() < deadline, "the CLI never called the model"
        time.sleep(0.1)


def test_ctrl_c_on_run_says_where_the_trajectory_is(tmp_path):
    (tmp_path / "ctx.txt").write_text("some text")
    with FakeOpenAIServer(_hang_on_root) as server:
        process = cli_popen(
            "run", "--context", "ctx.txt", "--query", "q", "--base-url", server.base_url, "--no-sandbox", cwd=tmp_path
        )
        try:
            _wait_for_request(server)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    (trajectory,) = (tmp_path / "rlm_logs").glob("rlm-*.jsonl")  # logged to ./rlm_logs by default
    assert f"interrupted: the trajectory so far is in rlm_logs/{trajectory.name}" in stderr
    assert cli("view", str(trajectory), cwd=tmp_path).returncode == 0


def test_ctrl_c_before_the_first_task_finishes_claims_no_results_file(tmp_path):
    write_jsonl(tmp_path / "tasks.jsonl", [needle_task("slow", 1234567)])
    with FakeOpenAIServer(_hang_on_root) as server:
        process = cli_popen(
            "eval", "tasks.jsonl", "--base-url", server.base_url, "--no-sandbox", "--out", "r.jsonl", cwd=tmp_path
        )
        try:
            _wait_for_request(server)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, stderr
    assert "no task finished, so r.jsonl was not written" in stderr and "results are in" not in stderr
    assert not (tmp_path / "r.jsonl").exists()


# ------------------------------------------------------------------ context shapes


def _type_reporter(body):
    if is_root(body):
        return Reply.text("```repl\nFINAL(type(context).__name__ + ' ' + str(len(context)))\n```")
    return Reply.text("ok")


@pytest.mark.parametrize(
    "fmt, stdin, answer",
    [
        ("auto", "[1, 2, 3]", "list 3"),
        ("json", '{"a": 1}', "dict 1"),
        ("text", "[1, 2, 3]", "str 9"),
        ("auto", "plain", "str 5"),
    ],
)
def test_context_format_on_stdin(tmp_path, fmt, stdin, answer):
    import subprocess
    import sys

    from .evals.helpers import cli_env

    with FakeOpenAIServer(_type_reporter) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "rlm_sandbox.cli",
                "run",
                "--context",
                "-",
                "--context-format",
                fmt,
                "--query",
                "q",
                "--base-url",
                server.base_url,
                "--no-sandbox",
            ],
            cwd=tmp_path,
            env=cli_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == answer


def test_contexts_json_cannot_carry_are_refused_before_anything_starts():
    from rlm_sandbox import ContextError
    from rlm_sandbox.sandbox.protocol import encode_context

    with pytest.raises(ContextError, match=r"context\['rows'\]\[1\] has the key 2 \(int\).*\(use str keys"):
        encode_context({"rows": [{"a": 1}, {2: "b"}]})
    with pytest.raises(ContextError, match="is a set"):
        encode_context([{1, 2}])
    with pytest.raises(TypeError):  # still a TypeError for callers that catch that
        encode_context({(1, 2): "x"})
    encode_context({"fine": [1, 2.5, None, True, {"nested": "ok"}]})


# ------------------------------------------------------------------ help and public names


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    from rlm_sandbox.cli import _subparsers

    for sub in [parser, *_subparsers(parser)]:
        assert sub.formatter_class is _HelpFormatter
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{sub.prog} {action.option_strings} has no help"
            shown = _HelpFormatter(sub.prog)._get_help_string(action)
            nothing = action.default is None or isinstance(action.default, bool) or action.default == "==SUPPRESS=="
            if not nothing and not action.required:
                assert "default" in shown, f"{sub.prog} {action.option_strings}: {shown}"


def test_help_says_what_totals_and_timeouts_cover(tmp_path):
    run_help = cli("run", "--help", cwd=tmp_path).stdout
    assert "a total, not a per-call cap" in " ".join(run_help.split())
    assert "stays valid JSON" in " ".join(run_help.split())
    eval_help = " ".join(cli("eval", "--help", cwd=tmp_path).stdout.split())
    assert "wall clock for the whole task" in eval_help
    assert "3 some tasks ended in an error" in eval_help


def test_sandbox_pool_is_public():
    import rlm_sandbox

    assert "SandboxPool" in rlm_sandbox.__all__ and rlm_sandbox.SandboxPool.__doc__


def test_summaries_count_restarted_sandboxes():
    from rlm_sandbox.evals.report import summarize, summary_table

    summary = summarize([{"id": "a", "sandbox_restarts": 2, "elapsed_s": 1}, {"id": "b", "sandbox_restarts": 1}])
    assert summary.sandbox_restarts == 3
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(summary_table(summary))
    assert re.search(r"sandbox restarts +│ 3 ", console.export_text())


def test_no_traceback_for_an_unexpected_failure(tmp_path):
    """A bug still ends in one line that says how to see more."""
    script = Path(tmp_path) / "drive.py"
    script.write_text(
        "import sys\nfrom rlm_sandbox import cli\nimport rlm_sandbox.sandbox.docker as docker\n"
        "def broken():\n    raise RuntimeError('boom')\n"
        "docker.docker_client = broken\n"
        "sys.exit(cli.main(['gc']))\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    line = one_line_error(done, code=1)
    assert "internal error: RuntimeError: boom (run again with --debug" in line


def test_markup_in_files_is_shown_as_text(tmp_path):
    """Square brackets from a results file or a trajectory are text, never rich markup."""
    odd = "[/] [bold red]x[/bold red] [link=file:///etc/passwd]y"
    record = {
        "id": odd,
        "fingerprint": "f1",
        "config": {"model": odd, "max_depth": 1},
        "answer": odd,
        "expected": "z",
        "correct": False,
        "stop_reason": "final",
        "elapsed_s": 1.0,
        "suite": odd,
    }
    (tmp_path / "r.jsonl").write_text(json.dumps(record) + "\n")
    report = cli("report", "r.jsonl", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "[bold red]x[/bold red]" in report.stdout.replace("\n", "")
    events = [
        {"type": "metadata", "model": odd, "query": odd, "context": {"type_name": odd, "total_chars": "many"}},
        {"type": "model_call", "node": [odd], "depth": odd, "response": odd, "input_tokens": "x"},
        {"type": "sub_call", "node": 0, "error": odd},
        {"type": "result", "stop_reason": odd, "usage": {"total": []}, "answer": odd},
    ]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + "\x00\xff not json\n")
    view = cli("view", "t.jsonl", cwd=tmp_path)
    assert view.returncode == 0, view.stderr
    assert view.stdout.count("[/]") >= 4
