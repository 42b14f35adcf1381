"""The container fails under the host: killed from outside mid-exec, OOM-killed, paused.

tests/test_lifecycle.py covers a kill between execs; tests/test_hardening.py an OOM of
a bare sandbox. Here the fault strikes while code runs, and inside a whole completion:
the error is clear, nothing waits past the exec timeout plus the interrupt grace plus a
restart, and the run goes on in a fresh sandbox with its context.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from rlm_sandbox import RLM, DockerSandbox, Limits
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID, LABEL_STARTED
from tests.fakes.fake_openai import FakeOpenAIServer, Reply

# A restart on a loaded 2-core machine: create, start, ready, context reloaded.
RESTART_BOUND_S = 8.0


def gone(docker_client, container_id: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not docker_client.api.containers(all=True, filters={"id": container_id}):
            return True
        time.sleep(0.2)
    return False


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def test_killed_from_outside_mid_exec(runtime, docker_client):
    with DockerSandbox(SandboxConfig(runtime=runtime)) as sandbox:
        sandbox.load_context("kept context")
        sandbox.execute("x = 1")
        victim = sandbox.container_id
        later(1.0, lambda: docker_client.api.kill(victim))
        started = time.monotonic()
        result = sandbox.execute("import time\nwhile True: time.sleep(0.1)", timeout_s=60)
        took = time.monotonic() - started
        assert result.restarted and result.error_type == "SandboxDied"
        assert "killed by signal 9" in result.error and "context was reloaded" in result.error
        assert took < 1.0 + RESTART_BOUND_S, f"the kill was noticed after {took:.1f} s, not at once"
        assert sandbox.container_id != victim
        assert sandbox.execute("print(context)").stdout == "kept context\n"
        assert "NameError" in sandbox.execute("x").error
    assert gone(docker_client, victim)


def test_paused_mid_exec_is_bounded_by_timeout_and_grace(runtime, docker_client):
    config = SandboxConfig(runtime=runtime)
    timeout = 3.0
    with DockerSandbox(config) as sandbox:
        sandbox.load_context("kept context")
        victim = sandbox.container_id
        paused = {}

        def pause() -> None:
            docker_client.api.pause(victim)
            paused["state"] = docker_client.api.inspect_container(victim)["State"]["Paused"]

        later(0.5, pause)
        started = time.monotonic()
        result = sandbox.execute("import time\ntime.sleep(100)", timeout_s=timeout)
        took = time.monotonic() - started
        assert paused.get("state") is True, "the container was never paused"
        assert result.timed_out and result.error_type == "TimeoutError"
        bound = timeout + config.interrupt_grace_s + RESTART_BOUND_S
        assert took < bound, f"a paused sandbox held the host {took:.1f} s (bound {bound:.0f} s)"
        # Docker resumes a paused container to deliver the interrupt when it can (runc);
        # when it cannot, the host kills it after the grace and starts a fresh one.
        assert sandbox.execute("print(context)", timeout_s=30).stdout == "kept context\n"
        if result.restarted:
            assert sandbox.container_id != victim
    assert gone(docker_client, victim)


def test_paused_sandbox_is_removed_quickly_on_close(runtime, docker_client):
    """A paused container ignores signals; under gVisor a forced removal then waited out
    Docker's 10 s kill timeout, now it is thawed first."""
    sandbox = DockerSandbox(SandboxConfig(runtime=runtime)).start()
    victim = sandbox.container_id
    docker_client.api.pause(victim)
    started = time.monotonic()
    sandbox.close()
    took = time.monotonic() - started
    assert gone(docker_client, victim, timeout=10)
    assert took < 5, f"closing a paused sandbox took {took:.1f} s"


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def last_user(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


@pytest.mark.parametrize("fault", ["oom", "outside kill"])
def test_completion_goes_on_in_a_fresh_sandbox_after_a_fault(fault, runtime, docker_client):
    """Inside a completion: the model is told what happened and continues, context intact."""
    seen: list[str] = []
    hog = "hog = bytearray(1024 * 1024 * 1024)\nhog[::4096] = b'x' * len(hog[::4096])"
    wait = "import time\ntime.sleep(60)"

    def respond(body: dict) -> Reply:
        turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        if turn == 0:
            return Reply.text("```repl\n" + (hog if fault == "oom" else wait) + "\n```")
        if turn == 1:
            seen.append(last_user(body))
            return Reply.text("```repl\nFINAL(context[::-1])\n```")
        return Reply.text("FINAL(too many turns)")

    killer = None
    with FakeOpenAIServer(respond) as server:
        rlm = RLM(
            model="fake",
            base_url=server.base_url,
            api_key="k",
            sandbox=SandboxConfig(runtime=runtime),
            limits=Limits(timeout_s=120, exec_timeout_s=60),
        )
        if fault == "outside kill":
            since = time.time()

            def kill_when_running() -> None:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and server.request_count < 1:
                    time.sleep(0.05)
                time.sleep(1.0)  # the exec is running now
                for container in docker_client.api.containers(filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"}):
                    if float(container["Labels"].get(LABEL_STARTED, 0)) >= since:
                        docker_client.api.kill(container["Id"])

            killer = threading.Thread(target=kill_when_running, daemon=True)
            killer.start()
        started = time.monotonic()
        result = rlm.completion("abcdef", "q")
        took = time.monotonic() - started
    if killer is not None:
        killer.join(5)
    assert result.stop_reason == "final" and result.answer == "fedcba", result.error
    assert seen, "the model was never told"
    if fault == "oom":
        assert "OOMKilled" in seen[0] and "restarted" in seen[0]
    else:
        assert "SandboxDied" in seen[0] and "killed by signal 9" in seen[0]
    assert took < 60, f"the completion took {took:.1f} s; the faulty exec was not cut short"
