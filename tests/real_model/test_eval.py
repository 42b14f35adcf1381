"""`rlm-sandbox eval --suite niah --n 3` against the real small model (issue #9).

Accuracy is expected to be low with a 135M model: the point is the whole path (the
CLI, the eval runner, sandboxes, a real server) ending every task without an error,
and counting exactly what the server reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import RUNS
from .helpers import ALLOWED_STOPS
from .proxy import RecordingProxy

pytestmark = [pytest.mark.real_model, pytest.mark.docker]


def test_eval_niah_suite_on_the_real_model(real_model_server, sandbox_image, docker_client, tmp_path):
    from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID

    out = tmp_path / "results.jsonl"
    with RecordingProxy(real_model_server.origin) as proxy:
        command = [
            sys.executable, "-m", "rlm_sandbox.cli", "eval",
            "--suite", "niah", "--n", "3", "--size", "8k",
            "--model", real_model_server.model, "--base-url", proxy.base_url,
            "--max-iterations", "4", "--max-llm-calls", "12", "--timeout", "240", "--exec-timeout", "20",
            "--concurrency", "1", "--max-output-tokens", "384", "--out", str(out), "--json",
        ]  # fmt: skip
        # The server's environment must not lend it a real key or another endpoint.
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        stdout, stderr = process.communicate(timeout=1200)
        wall_s = time.monotonic() - started
        assert process.returncode == 0, f"exit {process.returncode}\n{stderr[-3000:]}"
        summary = json.loads(stdout)
        records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        proxy.wait_idle(timeout_s=300)
        received = [e for e in proxy.chat_exchanges() if e.delivered and e.status == 200]

    RUNS.append(
        {
            "name": "eval niah n=3 (8k)",
            "stop_reason": ",".join(f"{k}:{v}" for k, v in summary["stop_reasons"].items()),
            "iterations": sum(r["iterations"] for r in records),
            "calls": summary["model_calls"],
            "input_tokens": summary["input_tokens"],
            "output_tokens": summary["output_tokens"],
            "largest_request_tokens": max((e.prompt_tokens or 0 for e in proxy.chat_exchanges()), default=0),
            "context_errors": sum(1 for e in proxy.chat_exchanges() if e.status == 400),
            "compactions": 0,  # the CLI's events are in its own process
            "accuracy": summary["accuracy"],
            "wall_s": round(wall_s, 1),
        }
    )
    assert summary["tasks"] == summary["finished"] == len(records) == 3
    assert (summary["input_tokens"], summary["output_tokens"]) == (
        sum(e.prompt_tokens or 0 for e in received),
        sum(e.completion_tokens or 0 for e in received),
    )
    left = docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={process.pid}"})
    assert not left, f"the eval left containers: {[c['Id'][:12] for c in left]}"
    stops = {r["id"]: (r["stop_reason"], r.get("error")) for r in records}
    assert all(stop in ALLOWED_STOPS for stop, _ in stops.values()), stops
    assert summary["errors"] == 0
