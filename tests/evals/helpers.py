"""Shared pieces of the eval tests: the scripted model behind the fake OpenAI server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlm_sandbox.scripted import ScriptedDemoModel

from ..fakes.fake_openai import Reply

DEMO = ScriptedDemoModel()


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def turn_of(body: dict) -> int:
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


def question_of(body: dict) -> str | None:
    """The query of a root (RLM node) request; None for a plain sub-call."""
    if not is_root(body):
        return None
    first_user = next(m["content"] for m in body["messages"] if m.get("role") == "user")
    return first_user.splitlines()[0].removeprefix("Question: ")


def last_user_message(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def scripted(body: dict) -> Reply:
    """What the scripted demo model says, served over HTTP."""
    return Reply.text(DEMO.complete(body["messages"]).text)


def repl(code: str) -> str:
    return f"Running some code.\n```repl\n{code}\n```"


def root_questions(server) -> list[str]:
    """The distinct queries the server saw root requests for, in order of first sight."""
    seen: list[str] = []
    for request in server.requests:
        question = question_of(request.body or {})
        if question is not None and question not in seen:
            seen.append(question)
    return seen


def needle_task(task_id: str, number: int, *, query: str = "What is the magic number?", **extra: Any) -> dict:
    lines = [f"filler line {i} about nothing" for i in range(50)]
    lines[17] = f"The magic number is {number}."
    return {"id": task_id, "context": "\n".join(lines), "query": query, "expected": str(number), **extra}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k != "RAY_ADDRESS"}
    env.update(extra or {})
    return env


def _default_sigint() -> None:
    # A parent that ignores SIGINT (a background job) would pass that on; the CLI must get it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlm_sandbox.cli", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_default_sigint,
    )


def cli_popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlm_sandbox.cli", *args],
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def wait_until_no_containers(docker_client, owner_pids: set[int] | set[str], timeout_s: float = 15) -> list[str]:
    """Containers still owned by these pids once `timeout_s` passed (removal can lag a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [
            c["Id"][:12]
            for pid in owner_pids
            for c in docker_client.api.containers(all=True, filters={"label": f"rlm-sandbox.owner-pid={pid}"})
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


Responder = Callable[[dict], Reply]
