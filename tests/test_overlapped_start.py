"""A node starts its sandbox during its first model call (#16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from rlm_sandbox import DockerSandbox, Limits, SandboxConfig
from rlm_sandbox.errors import SandboxStartError
from rlm_sandbox.rlm import RLM
from rlm_sandbox.sandbox.local import IsolationWarning, LocalSandbox
from rlm_sandbox.trajectory import read_trajectory
from tests.fakes.fake_openai import FakeOpenAIServer, Reply
from tests.reliability.test_host_process import containers_of, wait_for

from .test_rlm import fake_openai, is_root, make_rlm, program, repl, turn_of  # noqa: F401


class GatedDockerSandbox(DockerSandbox):
    """A DockerSandbox whose start waits for the test to open a gate."""

    gate = threading.Event()
    made: list[GatedDockerSandbox] = []

    def start(self):
        self.made.append(self)
        assert self.gate.wait(60), "the test never opened the gate"
        return super().start()


def test_a_final_without_code_neither_waits_for_nor_uses_the_sandbox(fake_openai, docker_client, tmp_path):
    GatedDockerSandbox.gate.clear()
    GatedDockerSandbox.made.clear()
    fake_openai.set_responder(program(lambda body: "I know this one.\nFINAL(forty-two)"))
    rlm = RLM(
        model="fake-root",
        base_url=fake_openai.base_url,
        api_key="k",
        sandbox=lambda **handlers: GatedDockerSandbox(SandboxConfig(), **handlers),
        log_dir=tmp_path,
    )
    result = rlm.completion("ctx", "q")
    # The answer came back while the sandbox's start was still held at the gate.
    assert not GatedDockerSandbox.gate.is_set()
    assert (result.stop_reason, result.answer) == ("final", "forty-two")
    assert result.sandboxes_started == 0
    assert result.timings.sandbox_wait_s == 0
    events = read_trajectory(result.trajectory_path)
    assert not [e for e in events if e["type"] == "exec"], "no exec was started"
    assert len(GatedDockerSandbox.made) == 1
    GatedDockerSandbox.gate.set()  # the start goes on, and tears the unused sandbox down
    assert wait_for(
        lambda: not GatedDockerSandbox.made[0].is_running and not containers_of(docker_client, os.getpid()), 30
    )


def test_code_in_the_first_reply_waits_for_the_start_then_runs(fake_openai, sandbox_image):
    # The first model call takes a while: the start happens under it.
    def respond(body):
        if turn_of(body) == 0:
            return Reply(content=repl("print(len(context))"), delay_s=1.5)
        return Reply.text("FINAL(done)")

    fake_openai.set_responder(respond)
    result = make_rlm(fake_openai, sandbox=True).completion("x" * 5000, "q")
    assert (result.stop_reason, result.answer, result.sandboxes_started) == ("final", "done", 1)
    assert "5000" in fake_openai.requests[-1].body["messages"][-1]["content"]
    # Counted, not timed: the exec waited for less than the whole start took.
    assert result.timings.sandbox_wait_s < result.timings.sandbox_start_s


def test_a_start_that_fails_during_the_first_model_call_gives_todays_error(fake_openai, docker_client):
    config = SandboxConfig(runtime="no-such-runtime")
    with pytest.raises(SandboxStartError) as direct:
        DockerSandbox(config).start()
    fake_openai.set_responder(lambda body: Reply(content=repl("print(1)"), delay_s=0.5))
    result = make_rlm(fake_openai, sandbox=config).completion("ctx", "q")
    assert result.stop_reason == "error"
    assert result.error == f"SandboxStartError: {direct.value}"
    assert "could not" in result.error and "no-such-runtime" in result.error
    assert fake_openai.request_count == 1, "one model call; no turn after the failure"
    assert not containers_of(docker_client, os.getpid())


class KillWaitsLocalSandbox(LocalSandbox):
    """A LocalSandbox whose start is held until it is killed; the kill then waits for the
    start to give up, so the start's own error exists before the node reads anything."""

    def start(self):
        self.starter = threading.current_thread()
        assert self.released.wait(30), "the sandbox was never killed"
        return super().start()

    def kill(self):
        super().kill()
        self.released.set()
        self.starter.join(30)


def test_a_model_error_is_not_hidden_by_the_kill_of_the_start_it_interrupted(fake_openai):
    made = []

    def factory(**handlers):
        sandbox = KillWaitsLocalSandbox(SandboxConfig(), **handlers)
        sandbox.released = threading.Event()
        made.append(sandbox)
        return sandbox

    fake_openai.set_responder(lambda body: Reply.error(400, message="bad request"))
    with pytest.warns(IsolationWarning):
        result = make_rlm(fake_openai, sandbox=factory).completion("ctx", "q")
    assert result.stop_reason == "error"
    assert result.error.startswith("LMError: ") and "HTTP 400" in result.error, result.error
    assert len(made) == 1 and not made[0].starter.is_alive() and not made[0].is_running


def test_the_deadline_covers_the_overlapped_start(fake_openai, sandbox_image):
    GatedDockerSandbox.gate.clear()
    fake_openai.set_responder(program(lambda body: repl("print(1)")))
    rlm = RLM(
        model="fake-root",
        base_url=fake_openai.base_url,
        api_key="k",
        sandbox=lambda **handlers: GatedDockerSandbox(SandboxConfig(), **handlers),
        limits=Limits(timeout_s=1.0),
    )
    try:
        result = rlm.completion("ctx", "q")
    finally:
        GatedDockerSandbox.gate.set()
    assert result.stop_reason == "timeout", result.error
    assert fake_openai.request_count == 1


INTERRUPTED = textwrap.dedent(
    """
    import sys
    from rlm_sandbox import RLM
    rlm = RLM(model="fake", base_url=sys.argv[1], api_key="k")
    rlm.completion("the context", "q")
    """
)


@pytest.mark.parametrize("when", ["container created", "container running"])
def test_ctrl_c_during_the_overlapped_start_leaves_no_container(when, docker_client, sandbox_image):
    # The root model never answers in time: Ctrl-C lands during the first model call,
    # while the sandbox is starting (or has just started) beside it.
    with FakeOpenAIServer(lambda body: Reply(content="late", delay_s=120)) as server:
        host = subprocess.Popen(
            [sys.executable, "-c", INTERRUPTED, server.base_url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            running = when == "container running"
            assert wait_for(lambda: containers_of(docker_client, host.pid, running_only=running), 60)
            assert wait_for(lambda: server.request_count >= 1, 20), "the model call and the start overlap"
            host.send_signal(signal.SIGINT)
            host.wait(timeout=30)
        finally:
            host.kill()
            stderr = host.stderr.read().decode(errors="replace")
            host.stderr.close()
    assert "KeyboardInterrupt" in stderr, stderr[-2000:]
    assert wait_for(lambda: not containers_of(docker_client, host.pid), 10), "a container outlived the run"


def test_children_overlap_too_and_share_a_pool(fake_openai, docker_client):
    from rlm_sandbox.sandbox.pool import SandboxPool

    from .test_rlm import recursive_program

    fake_openai.set_responder(recursive_program(fan_out=2))
    with SandboxPool(SandboxConfig(), size=3) as pool:
        assert pool.wait_until_warm(3, timeout_s=120)
        rlm = RLM(
            model="fake-root",
            sub_model="fake-sub",
            base_url=fake_openai.base_url,
            api_key="k",
            limits=Limits(max_depth=2),
            pool=pool,
        )
        result = rlm.completion("root context", "combine")
        assert result.stop_reason == "final", result.error
        assert result.sandboxes_started == 3
        assert pool.warm_hits == 3, "root and both children took warm sandboxes"
    assert is_root(fake_openai.requests[0].body)
