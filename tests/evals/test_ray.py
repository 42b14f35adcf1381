"""The Ray path on a local cluster: a head node started with `ray start`, reached by ADDRESS.

Its workers are other processes: they build the RLMs, make the contexts and start the
sandboxes on this machine's Docker; the driver (the CLI) writes the results file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from rlm_sandbox.evals.results import read_results

from ..conftest import _unavailable
from ..fakes.fake_openai import FakeOpenAIServer, Reply
from .helpers import (
    cli,
    cli_env,
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(self, address: str, env: dict[str, str]) -> None:
        self.address = address
        self.env = env


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster (2 CPUs) in its own process group, stopped by SIGINT to that group only.

    It asks for a token of its own (RAY_AUTH_MODE=token), so neither a token left in
    ~/.ray by another Ray nor its absence changes how the driver must connect.
    """
    try:
        import ray  # noqa: F401
    except ImportError:
        _unavailable("ray is not installed: pip install -e '.[dev]' (or '.[ray]')")
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    # Short: Ray's unix socket paths live under it and must stay under 108 bytes.
    temp_dir = tempfile.mkdtemp(prefix="rlmray-", dir="/tmp")
    auth = cli_env({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    started = time.monotonic()
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=auth,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ready = threading.Event()
    log: list[str] = []

    def follow() -> None:
        for line in head.stdout:
            log.append(line)
            if "Ray runtime started" in line or "This command will now block" in line:
                ready.set()
        ready.set()  # it exited

    threading.Thread(target=follow, daemon=True).start()
    try:
        if not ready.wait(90) or head.poll() is not None:
            pytest.fail("ray start --head did not come up:\n" + "".join(log[-40:]))
        print(f"ray head up in {time.monotonic() - started:.1f} s")
        yield Cluster(f"127.0.0.1:{port}", auth)
    finally:
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            if head.poll() is not None:
                break
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp_dir, ignore_errors=True)


def _workers(results: list[dict]) -> set[str]:
    return {r["worker"].rsplit(":", 1)[1] for r in results}


def test_eval_on_a_ray_cluster_by_address_then_resume(ray_cluster, tmp_path, docker_client, sandbox_image):
    (tmp_path / "notes.txt").write_text("alpha\nThe magic number is 7654321.\nomega\n")
    rows = [
        {"id": "from-a-file", "context": "notes.txt", "query": "What is the magic number?", "expected": "7654321"},
        {
            "id": "niah",
            "generator": {"suite": "niah", "seed": 3, "index": 0, "size": 16384},
            "query": "placeholder",
            "expected": "x",
        },
        needle_task("inline", 1212121),
    ]
    # The generated task's query and answer, as the suite makes them:
    from rlm_sandbox.evals.suites import generate_suite

    (generated,) = generate_suite("niah", 1, [16384], seed=3)
    rows[1].update(query=generated.query, expected=generated.expected)
    write_jsonl(tmp_path / "tasks.jsonl", rows)
    with FakeOpenAIServer(scripted) as server:
        args = (
            "eval",
            "tasks.jsonl",
            "--base-url",
            server.base_url,
            "--out",
            "r.jsonl",
            "--concurrency",
            "2",
            f"--ray={ray_cluster.address}",
        )
        process = cli_popen(*args, cwd=tmp_path, env=ray_cluster.env)
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
        results = read_results(tmp_path / "r.jsonl")
        assert sorted(r["id"] for r in results) == ["from-a-file", "inline", "niah"]
        assert all(r["correct"] for r in results), [(r["id"], r["answer"], r["error"]) for r in results]
        workers = _workers(results)
        assert str(process.pid) not in workers, "tasks ran in Ray workers, not in the driver"
        assert sum(r["model_calls"] for r in results) == server.request_count
        assert "100.0% (3/3)" in stdout

        requests = server.request_count
        again = cli(*args, cwd=tmp_path, env=ray_cluster.env)
        assert again.returncode == 0, again.stderr
        assert "3 task(s) already finished" in again.stderr
        assert server.request_count == requests
    assert wait_until_no_containers(docker_client, workers) == []


def test_ctrl_c_on_the_ray_driver_cancels_the_running_tasks(ray_cluster, tmp_path, docker_client, sandbox_image):
    slow_running = threading.Event()

    def respond(body):
        if "(slow)" in (question_of(body) or "") and turn_of(body) == 0 and is_root(body):
            slow_running.set()
            return Reply.text(repl("import os, time\nprint(os.getpid())\ntime.sleep(120)"))
        return scripted(body)

    rows = [needle_task("fast", 3141592), needle_task("slow", 2718281, query="What is the magic number? (slow)")]
    write_jsonl(tmp_path / "tasks.jsonl", rows)
    with FakeOpenAIServer(respond) as server:
        # One at a time: "fast" is written before "slow" starts.
        args = (
            "eval",
            "tasks.jsonl",
            "--base-url",
            server.base_url,
            "--out",
            "r.jsonl",
            "--concurrency",
            "1",
            f"--ray={ray_cluster.address}",
        )
        process = cli_popen(*args, cwd=tmp_path, env=ray_cluster.env)
        try:
            assert slow_running.wait(120), "the slow task never started"
            interrupted_at = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
        took = time.monotonic() - interrupted_at
        assert process.returncode == 130, stderr
        assert took < 12, f"the Ray task was not interrupted: exit took {took:.1f} s"
        assert "interrupted: 1 of 2 tasks finished" in stderr
        results = read_results(tmp_path / "r.jsonl")
        assert [r["id"] for r in results] == ["fast"]
    # The slow task's sandbox was closed by the worker as the cancel unwound.
    assert wait_until_no_containers(docker_client, _workers(results)) == []


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path):
    from rlm_sandbox.evals.runner import RunConfig, run_eval
    from rlm_sandbox.evals.tasks import EvalError, Task

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    task = Task.model_validate(needle_task("t", 1234567))
    with pytest.raises(EvalError, match=r"pip install 'rlm-sandbox\[ray\]'"):
        run_eval([task], RunConfig(scripted=True, sandbox="local"), ray=True)
