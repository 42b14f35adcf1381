"""`rlm-sandbox chat` and `run --output-schema`, driven as a user would: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID
from tests.reliability.test_host_process import containers_of

from .fakes.fake_openai import FakeOpenAIServer, Reply
from .test_cli_rlm import cli
from .test_rlm import is_root, repl, turn_of
from .test_session import session_program


def test_run_with_an_output_schema_retries_until_the_answer_matches(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}))
    context = tmp_path / "ctx.txt"
    context.write_text("some text")

    def respond(body):
        if not is_root(body):
            return Reply.text("sub")
        return Reply.text(repl("FINAL({'n': 'seven'})") if turn_of(body) == 0 else repl("FINAL({'n': 7})"))

    with FakeOpenAIServer(respond) as server:
        done = cli(
            "run",
            "--context",
            str(context),
            "--query",
            "q",
            "--output-schema",
            str(schema),
            "--base-url",
            server.base_url,
            "--no-sandbox",
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"n": 7}


def test_run_with_a_bad_schema_file_is_a_one_line_error(tmp_path):
    (tmp_path / "ctx.txt").write_text("x")
    (tmp_path / "bad.json").write_text("[1, 2]")
    done = cli(
        "run",
        "--context",
        "ctx.txt",
        "--query",
        "q",
        "--output-schema",
        "bad.json",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--no-sandbox",
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "--output-schema bad.json: a JSON schema is an object" in done.stderr
    assert "Traceback" not in done.stderr


def test_chat_answers_line_by_line_in_one_sandbox(tmp_path, docker_client):
    (tmp_path / "ctx.txt").write_text("the shared context")
    since = time.time() - 0.01
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with FakeOpenAIServer(lambda body: Reply.text(session_program(body))) as server:
        chat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rlm_sandbox.cli",
                "chat",
                "--context",
                "ctx.txt",
                "--base-url",
                server.base_url,
                "--history",
                str(tmp_path / "h"),
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = chat.communicate("first\nsecond\n\nthird\n/exit\nnever asked\n", timeout=300)
    assert chat.returncode == 0, stderr
    assert stdout.split() == ["41", "42", "43"]
    assert "3 queries, 6 model calls" in stderr
    created = docker_client.api.events(
        since=since,
        until=time.time(),
        filters={"event": "create", "label": f"{LABEL_OWNER_PID}={chat.pid}"},
        decode=True,
    )
    assert sum(1 for _ in created) == 1, "one container served the three queries"
    assert not containers_of(docker_client, chat.pid), "the chat left a container"
