"""The Docker daemon goes away for a while, and comes back.

Restarting the real dockerd would kill every container on the machine, other people's
included, so the outage is staged in front of it: the sandboxes talk to the daemon
through a socket proxy (SandboxConfig(docker_host=...)) that the test stops and starts.
Stopping it is what a daemon restart looks like from the client: the API socket is
gone, and every open connection, the sandbox's attach stream included, is cut; the
containers behind it lose their host and exit. What must hold: a clear error, no hang
past the completion's deadline, and a new sandbox on the next completion once the
daemon answers again.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from rlm_sandbox import RLM, DockerSandbox, Limits
from rlm_sandbox.errors import DockerUnavailableError
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID
from tests.fakes.fake_openai import FakeOpenAIServer, Reply

from .docker_proxy import DockerSocketProxy

DEADLINE_S = 30


@pytest.fixture
def proxy(tmp_path, sandbox_image):
    proxy = DockerSocketProxy(os.path.join(tmp_path, "docker.sock")).start()
    yield proxy
    proxy.stop()


def ours(docker_client) -> list[str]:
    return [
        c["Id"] for c in docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})
    ]


def wait_until_none_of(docker_client, ids: set[str], timeout: float = 30) -> dict[str, str]:
    """Wait for the containers to go; returns the state of any that did not."""
    deadline = time.monotonic() + timeout
    while True:
        left = ids & set(ours(docker_client))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    states = {}
    for container_id in left:
        try:
            state = docker_client.api.inspect_container(container_id)["State"]
            states[container_id[:12]] = f"{state['Status']} (pid {state.get('Pid')}, exit {state.get('ExitCode')})"
        except Exception as exc:
            states[container_id[:12]] = repr(exc)
    return states


@pytest.fixture
def own_containers(docker_client):
    """Whatever this test's sandboxes leave, it removes (and the assertions report)."""
    before = set(ours(docker_client))
    yield
    for container_id in set(ours(docker_client)) - before:
        try:
            docker_client.api.remove_container(container_id, force=True)
        except Exception:
            pass


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def test_outage_mid_run_then_a_new_sandbox_on_the_next_completion(proxy, docker_client, own_containers):
    started = threading.Event()

    def respond(body: dict) -> Reply:
        turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        if turn == 0 and not started.is_set():
            started.set()
            return Reply.text("```repl\nimport time\ntime.sleep(20)\n```")
        if turn == 0:
            return Reply.text("```repl\nanswer = 'back' if context == 'ctx' else 'no context'\n```")
        return Reply.text("FINAL_VAR(answer)")

    config = SandboxConfig(docker_host=proxy.url, exec_timeout_s=60)
    with FakeOpenAIServer(respond) as server:
        rlm = RLM(
            model="fake",
            base_url=server.base_url,
            api_key="k",
            sandbox=config,
            limits=Limits(timeout_s=DEADLINE_S, exec_timeout_s=60),
        )
        before = set(ours(docker_client))

        # 1. The daemon goes away while code runs.
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(result=rlm.completion("ctx", "q")))
        t0 = time.monotonic()
        runner.start()
        assert started.wait(20), "the first model turn never came"
        time.sleep(1.0)  # the exec is running now
        victims = set(ours(docker_client)) - before
        assert victims, "no sandbox container was started"
        proxy.stop()
        runner.join(DEADLINE_S + 10)
        elapsed = time.monotonic() - t0
        assert not runner.is_alive(), "the completion hung after the daemon went away"
        result = outcome["result"]
        assert elapsed < DEADLINE_S, f"took {elapsed:.1f} s; the deadline is {DEADLINE_S} s"
        assert result.stop_reason == "error", result
        assert "DockerUnavailableError" in result.error and "daemon did not answer" in result.error, result.error
        # The cut attach stream is end-of-file for the server (StdinOnce): its container goes.
        left = wait_until_none_of(docker_client, victims)
        assert not left, f"the orphaned container did not exit by itself: {left}"

        # 2. While it is away, a new completion fails at once, clearly.
        t0 = time.monotonic()
        result = rlm.completion("ctx", "q")
        assert time.monotonic() - t0 < 10
        assert result.stop_reason == "error" and "DockerUnavailableError" in result.error

        # 3. It is back: the next completion gets a new sandbox and finishes.
        proxy.start()
        result = rlm.completion("ctx", "q")
        assert result.stop_reason == "final", result.error
        assert result.answer == "back" and result.sandboxes_started == 1
    assert not wait_until_none_of(docker_client, set(ours(docker_client)) - before)


def test_sandbox_survives_an_outage_between_execs(proxy, docker_client, own_containers):
    """Used directly: an exec during the outage raises a clear error; after it, the next exec
    runs in a fresh container that has its context again."""
    with DockerSandbox(SandboxConfig(docker_host=proxy.url)) as sandbox:
        sandbox.load_context("the context")
        assert sandbox.execute("x = 1").ok
        first = sandbox.container_id
        proxy.stop()
        t0 = time.monotonic()
        with pytest.raises(DockerUnavailableError, match="daemon did not answer"):
            sandbox.execute("x")
        assert time.monotonic() - t0 < 10
        proxy.start()
        result = sandbox.execute("print(context)")
        assert result.stdout == "the context\n", result
        assert sandbox.container_id != first
        assert "NameError" in sandbox.execute("x").error, "a fresh sandbox: the old variables are gone"
    assert not wait_until_none_of(docker_client, {first})


def test_no_daemon_at_all_is_a_clear_error_at_once(tmp_path, sandbox_image):
    config = SandboxConfig(docker_host=f"unix://{tmp_path}/nothing-listens.sock")
    t0 = time.monotonic()
    with pytest.raises(DockerUnavailableError, match="cannot reach a Docker daemon"):
        DockerSandbox(config).start()
    assert time.monotonic() - t0 < 10
    result = RLM(model="fake", base_url="http://127.0.0.1:9/v1", api_key="k", sandbox=config).completion("ctx", "q")
    assert result.stop_reason == "error" and "DockerUnavailableError" in result.error


def test_outage_between_create_and_start_leaves_nothing_once_the_daemon_is_back(
    proxy, docker_client, own_containers, monkeypatch
):
    """The worst moment: the container exists but was never started, so it cannot exit by
    itself, and the daemon is gone so it cannot be removed. The next start removes it."""
    from rlm_sandbox.sandbox.docker import docker_client as sandbox_client

    config = SandboxConfig(docker_host=proxy.url)
    api = sandbox_client(proxy.url).api
    create = api.create_container
    created: list[str] = []

    def create_then_outage(*args, **kwargs):
        container = create(*args, **kwargs)
        created.append(container["Id"])
        proxy.stop()
        return container

    monkeypatch.setattr(api, "create_container", create_then_outage)
    with pytest.raises(DockerUnavailableError, match="daemon did not answer"):
        DockerSandbox(config).start()
    monkeypatch.setattr(api, "create_container", create)
    assert docker_client.api.inspect_container(created[0])["State"]["Status"] == "created"
    proxy.start()
    with DockerSandbox(config) as sandbox:
        assert sandbox.execute("print('up')").stdout == "up\n"
        assert not docker_client.api.containers(all=True, filters={"id": created[0]}), "the next start removed it"
