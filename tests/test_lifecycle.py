"""Containers come and go cleanly: outside kills, a host killed with -9, stale reaping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import (
    LABEL,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    DockerSandbox,
    reap_stale_containers,
)
from rlm_sandbox.sandbox.local import IsolationWarning, LocalSandbox


def wait_until_gone(client, container_id: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not client.api.containers(all=True, filters={"id": container_id}):
            return True
        time.sleep(0.2)
    return False


def test_container_killed_from_outside_gives_a_clear_error(runtime, docker_client):
    with DockerSandbox(SandboxConfig(runtime=runtime)) as sandbox:
        sandbox.execute("x = 1")
        victim = sandbox.container_id
        docker_client.api.kill(victim)
        result = sandbox.execute("x")
        assert result.restarted and result.error_type == "SandboxDied"
        assert "killed by signal 9" in result.error
        assert sandbox.container_id != victim
        assert sandbox.execute("'fresh'").stdout == "'fresh'\n"
    assert wait_until_gone(docker_client, victim)


def test_close_removes_the_container(runtime, docker_client):
    sandbox = DockerSandbox(SandboxConfig(runtime=runtime)).start()
    container_id = sandbox.container_id
    sandbox.close()
    assert wait_until_gone(docker_client, container_id, timeout=5)


HOST_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from rlm_sandbox.sandbox.config import SandboxConfig
    from rlm_sandbox.sandbox.docker import DockerSandbox
    sandbox = DockerSandbox(SandboxConfig(runtime=sys.argv[1])).start()
    print(sandbox.container_id, flush=True)
    sandbox.execute("import time; time.sleep(600)", timeout_s=600)
    """
)


def test_host_killed_with_sigkill_leaves_no_container(runtime, docker_client):
    """StdinOnce: the attach connection dies with the host, the server sees EOF and exits."""
    host = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, runtime], stdout=subprocess.PIPE, text=True)
    try:
        container_id = host.stdout.readline().strip()
        assert container_id, "the host process did not start a sandbox"
        time.sleep(0.5)  # let it get into the long exec
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        # The exec is still sleeping; the server's reader thread sees EOF and exits.
        assert wait_until_gone(docker_client, container_id, timeout=10)
    finally:
        host.kill()


def test_gc_reaps_containers_of_dead_owners_only(docker_client, sandbox_image):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = dead.stdout.strip()

    def labelled_container(pid: str, start: str) -> str:
        labels = {LABEL: "1", LABEL_OWNER_PID: pid, LABEL_OWNER_HOST: os.uname().nodename, LABEL_OWNER_START: start}
        return docker_client.api.create_container(sandbox_image, labels=labels, network_disabled=True)["Id"]

    from rlm_sandbox.sandbox.docker import _process_start_ticks

    orphan = labelled_container(dead_pid, "1")
    reused_pid = labelled_container(str(os.getpid()), "1")  # our pid, but another process's start time
    alive = labelled_container(str(os.getpid()), _process_start_ticks(os.getpid()))
    try:
        removed = reap_stale_containers(docker_client)
        assert orphan in removed and reused_pid in removed
        assert alive not in removed
        assert docker_client.api.containers(all=True, filters={"id": alive})
    finally:
        for container_id in (orphan, reused_pid, alive):
            try:
                docker_client.api.remove_container(container_id, force=True)
            except Exception:
                pass


def test_local_sandbox_warns_that_it_isolates_nothing():
    with pytest.warns(IsolationWarning, match="no isolation"):
        sandbox = LocalSandbox()
    sandbox.close()


def test_local_sandbox_does_not_inherit_host_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)
        with LocalSandbox() as sandbox:
            assert sandbox.execute("import os; 'OPENAI_API_KEY' in os.environ").stdout == "False\n"
