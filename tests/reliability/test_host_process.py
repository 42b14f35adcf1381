"""The host process dies or is interrupted during a run.

kill -9 of the orchestrator mid-run: every container whose server can still see its
input close goes by itself (StdinOnce); one that cannot (here: its server stopped
itself with SIGSTOP, so it never reads the end-of-file) is left, and `rlm-sandbox gc`
or the next process's first sandbox start removes it. Ctrl-C during a run: the process stops promptly, whatever it
was waiting on (its own code, a batch of model calls, child RLMs), and takes its
containers with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rlm_sandbox.cli import main
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID, LABEL_STARTED
from tests.fakes.fake_openai import FakeOpenAIServer, Reply

ORCHESTRATOR = textwrap.dedent(
    """
    import sys
    from rlm_sandbox import RLM, Limits, SandboxConfig
    url, runtime = sys.argv[1], sys.argv[2]
    rlm = RLM(model="fake", base_url=url, api_key="k", sandbox=SandboxConfig(runtime=runtime),
              limits=Limits(max_depth=2, exec_timeout_s=600))
    rlm.completion("the context", "q")
    """
)


def is_child(body: dict) -> bool:
    return "written by another model" in json.dumps(body)


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def tree_that_waits(body: dict) -> Reply:
    """The root asks two child RLMs; each child's code sleeps: three containers, busy."""
    if not is_root(body):
        return Reply(content="slow", delay_s=120)
    if is_child(body):
        return Reply.text("```repl\nimport time\ntime.sleep(600)\n```")
    return Reply.text("```repl\nprint(rlm_query_batched(['part a', 'part b']))\n```")


def tree_that_gets_stuck(body: dict) -> Reply:
    """As above, but each child's server stops itself: it will never see its input close."""
    if is_root(body) and is_child(body):
        return Reply.text("```repl\nimport os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n```")
    return tree_that_waits(body)


def containers_of(docker_client, pid: int, *, running_only: bool = False) -> list[dict]:
    return docker_client.api.containers(all=not running_only, filters={"label": f"{LABEL_OWNER_PID}={pid}"})


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def start_orchestrator(url: str, runtime: str, docker_client, wanted: int = 3) -> subprocess.Popen:
    host = subprocess.Popen([sys.executable, "-c", ORCHESTRATOR, url, runtime])
    if not wait_for(lambda: len(containers_of(docker_client, host.pid, running_only=True)) >= wanted, 60):
        host.kill()
        host.wait()
        pytest.fail(f"the orchestrator never had {wanted} sandboxes running")
    time.sleep(1.0)  # every node is inside its exec now
    return host


@pytest.mark.parametrize("reaper", ["rlm-sandbox gc", "the next start"])
def test_kill_9_of_the_orchestrator_leaves_nothing_for_long(reaper, runtime, docker_client, capsys):
    with FakeOpenAIServer(tree_that_gets_stuck) as server:
        host = start_orchestrator(server.base_url, runtime, docker_client)
        containers = {c["Id"] for c in containers_of(docker_client, host.pid)}
        assert len(containers) == 3
        stuck = {
            c["Id"]
            for c in containers_of(docker_client, host.pid)
            if c["Labels"].get(LABEL_STARTED, "")
            > min(d["Labels"].get(LABEL_STARTED, "") for d in containers_of(docker_client, host.pid))
        }
        assert len(stuck) == 2, "the two child sandboxes"
        left = lambda: {c["Id"] for c in containers_of(docker_client, host.pid)}  # noqa: E731
        try:
            os.kill(host.pid, signal.SIGKILL)
            host.wait()
            # The root's server sees its host's connection close, and its container goes.
            assert wait_for(lambda: not left() - stuck, 20), f"left after kill -9: {[i[:12] for i in left()]}"
            time.sleep(2)
            # The stuck ones stay until reaped. (On a shared machine another process's first
            # sandbox start may reap some first: that is the "next start" path at work.)
            present = left()
            assert present <= stuck
            if reaper == "rlm-sandbox gc":
                assert main(["gc"]) == 0
                out = capsys.readouterr().out
                assert all(container_id[:12] in out for container_id in present), out
            else:
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "from rlm_sandbox import DockerSandbox, SandboxConfig\n"
                        f"DockerSandbox(SandboxConfig(runtime={runtime!r})).start().close()",
                    ],
                    check=True,
                    timeout=120,
                )
            assert wait_for(lambda: not containers_of(docker_client, host.pid), 20)
        finally:
            host.kill()
            for container_id in containers & left():  # ours: never leave them behind
                try:
                    docker_client.api.remove_container(container_id, force=True)
                except Exception:
                    pass


def ctrl_c_responder(mode: str):
    def respond(body: dict) -> Reply:
        if not is_root(body):
            return Reply(content="slow", delay_s=120)  # a sub-model that takes its time
        if mode == "own code":
            return Reply.text("```repl\nimport time\ntime.sleep(600)\n```")
        if mode == "batched model calls":
            return Reply.text("```repl\nllm_query_batched(['a', 'b', 'c', 'd'])\n```")
        if mode == "threaded model calls":  # 8 in flight (max_concurrency), 4 waiting for the gate
            return Reply.text(
                "```repl\nimport threading\nts = [threading.Thread(target=llm_query, args=(str(i),)) for i in range(12)]\n"
                "[t.start() for t in ts]; [t.join() for t in ts]\n```"
            )
        return tree_that_waits(body)

    return respond


@pytest.mark.parametrize(
    "mode, wanted", [("own code", 1), ("batched model calls", 1), ("threaded model calls", 1), ("child RLMs", 3)]
)
def test_ctrl_c_stops_the_run_promptly_and_removes_its_containers(mode, wanted, tmp_path, runtime, docker_client):
    context = tmp_path / "context.txt"
    context.write_text("the context")
    with FakeOpenAIServer(ctrl_c_responder(mode)) as server:
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rlm_sandbox.cli",
                "run",
                "--context",
                str(context),
                "--query",
                "q",
                "--base-url",
                server.base_url,
                "--runtime",
                runtime,
                "--max-depth",
                "2" if wanted == 3 else "1",
            ],
            env={**os.environ, "OPENAI_API_KEY": "k"},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_for(lambda: len(containers_of(docker_client, cli.pid, running_only=True)) >= wanted, 60)
            if mode == "batched model calls":
                assert wait_for(lambda: server.request_count >= 5, 20), "the batch never reached the model"
            if mode == "threaded model calls":
                assert wait_for(lambda: server.request_count >= 9, 20), "the threads' calls never reached the model"
            time.sleep(1.0)
            interrupted = time.monotonic()
            cli.send_signal(signal.SIGINT)
            code = cli.wait(timeout=30)
            took = time.monotonic() - interrupted
        finally:
            cli.kill()
            stderr = cli.stderr.read().decode(errors="replace")
            cli.stderr.close()
    assert code == 130, stderr[-2000:]
    assert took < 5, f"Ctrl-C took {took:.1f} s to stop a run waiting on {mode}"
    assert wait_for(lambda: not containers_of(docker_client, cli.pid), 10), "its containers outlived it"
