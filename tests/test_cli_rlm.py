"""`rlm-sandbox run`, `niah` and `view`, driven as a user would: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_sandbox.scripted import ScriptedDemoModel

from .fakes.fake_openai import FakeOpenAIServer, Reply


def cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None, stdin: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "rlm_sandbox.cli", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_niah_without_a_key_uses_the_scripted_model_and_finds_the_number(tmp_path, sandbox_image):
    done = cli("niah", "--lines", "200000", "--seed", "3", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no model: scripted demo" in done.stderr
    result = json.loads(done.stdout)
    assert result["found"] is True and result["answer"] == result["expected"]
    assert result["stop_reason"] == "final"


def test_run_against_an_openai_compatible_server_and_view_the_trajectory(tmp_path):
    demo = ScriptedDemoModel()
    context = tmp_path / "notes.txt"
    context.write_text("alpha\nbeta\nThe magic number is 8675309.\ngamma\n")
    with FakeOpenAIServer(lambda body: Reply.text(demo.complete(body["messages"]).text)) as server:
        done = cli(
            "run",
            "--context",
            str(context),
            "--query",
            "What is the magic number?",
            "--base-url",
            server.base_url,
            "--model",
            "local-model",
            "--no-sandbox",
            "--log-dir",
            str(tmp_path / "logs"),
            cwd=tmp_path,
        )
        assert server.request_count == 4
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8675309"
    assert "scripted demo" not in done.stderr
    (trajectory,) = (tmp_path / "logs").glob("*.jsonl")
    viewed = cli("view", str(trajectory), cwd=tmp_path)
    assert viewed.returncode == 0
    assert "llm_query" in viewed.stdout and "final: 8675309" in viewed.stdout


def test_run_reads_json_context_from_stdin(tmp_path):
    done = cli(
        "run",
        "--context",
        "-",
        "--query",
        "What is the magic number?",
        "--no-sandbox",
        "--json",
        "--demo",
        cwd=tmp_path,
        stdin="The magic number is 42.\n",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "42"


@pytest.mark.parametrize("args", [["run", "--query", "q"], ["niah", "--max-depth", "zero"]])
def test_bad_arguments_are_usage_errors(tmp_path, args):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
