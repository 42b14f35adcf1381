"""A frozen Docker daemon: it accepts connections and never answers.

Every Docker API call would wait out the SDK's 120 s timeout, several in a row; the
completion's deadline must bound the whole run instead. The freeze is staged in a
socket proxy in front of the real daemon (other processes keep using that one).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from rlm_sandbox import RLM, Limits
from rlm_sandbox.sandbox.config import SandboxConfig
from tests.fakes.fake_openai import FakeOpenAIServer, Reply

from .docker_proxy import DockerSocketProxy
from .test_daemon_outage import ours, wait_until_none_of

DEADLINE_S = 10
# What the run may take beyond its deadline: the close grace and a little slack, far
# below one 120 s API timeout.
SLACK_S = 8


@pytest.fixture
def proxy(tmp_path, sandbox_image):
    proxy = DockerSocketProxy(os.path.join(tmp_path, "docker.sock")).start()
    yield proxy
    proxy.thaw()
    proxy.stop()


def make_rlm(server: FakeOpenAIServer, proxy: DockerSocketProxy) -> RLM:
    return RLM(
        model="fake",
        base_url=server.base_url,
        api_key="k",
        sandbox=SandboxConfig(docker_host=proxy.url),
        limits=Limits(timeout_s=DEADLINE_S, exec_timeout_s=60),
    )


def test_a_daemon_frozen_before_the_start_is_bounded_by_the_deadline(proxy, docker_client):
    proxy.freeze()
    # Code, so the node must wait for its sandbox: a reply without code never does.
    with FakeOpenAIServer(lambda body: Reply.text("```repl\nprint(len(context))\n```")) as server:
        started = time.monotonic()
        result = make_rlm(server, proxy).completion("ctx", "q")
        elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S + SLACK_S, f"took {elapsed:.1f} s with a {DEADLINE_S} s deadline"
    assert result.stop_reason == "error"
    assert "DockerUnavailableError" in result.error and "deadline" in result.error, result.error


def test_a_daemon_frozen_mid_exec_is_bounded_by_the_deadline(proxy, docker_client):
    running = threading.Event()

    def respond(body: dict) -> Reply:
        running.set()
        return Reply.text("```repl\nimport time\ntime.sleep(60)\n```")

    before = set(ours(docker_client))
    with FakeOpenAIServer(respond) as server:
        outcome: dict = {}
        rlm = make_rlm(server, proxy)
        runner = threading.Thread(target=lambda: outcome.update(result=rlm.completion("ctx", "q")))
        started = time.monotonic()
        runner.start()
        assert running.wait(DEADLINE_S), "the first model turn never came"
        time.sleep(1.0)  # the exec is running now
        proxy.freeze()
        runner.join(DEADLINE_S + SLACK_S + 30)
        elapsed = time.monotonic() - started
        assert not runner.is_alive(), "the completion hung on the frozen daemon"
    result = outcome["result"]
    assert elapsed < DEADLINE_S + SLACK_S, f"took {elapsed:.1f} s with a {DEADLINE_S} s deadline"
    assert result.stop_reason in ("error", "timeout"), result
    # The daemon thaws: whatever the run could not remove while it was frozen goes now.
    proxy.thaw()
    left = wait_until_none_of(docker_client, set(ours(docker_client)) - before, timeout=60)
    assert not left, f"containers left after the daemon thawed: {left}"


def test_a_healthy_daemon_past_the_deadline_is_a_timeout_not_a_daemon_error(sandbox_image):
    """Code that ignores the interrupt at the deadline loses its sandbox; the restart
    is not waited for, and the run ends as a timeout (the daemon did nothing wrong)."""
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    with FakeOpenAIServer(lambda body: Reply.text(f"```repl\n{code}\n```")) as server:
        rlm = RLM(
            model="fake",
            base_url=server.base_url,
            api_key="k",
            sandbox=True,
            limits=Limits(timeout_s=4, exec_timeout_s=60),
        )
        started = time.monotonic()
        result = rlm.completion("ctx", "q")
    assert time.monotonic() - started < 4 + SLACK_S
    assert result.stop_reason == "timeout", result.error
