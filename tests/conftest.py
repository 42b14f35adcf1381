"""Shared fixtures: real Docker, real runtimes, and a check that nothing is left behind.

In CI (CI=true) a missing Docker daemon or a missing gVisor runtime fails the run;
on a developer machine those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import time
import warnings

import pytest

from rlm_sandbox.sandbox.config import SandboxConfig

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RUNTIMES = ("runc", "runsc")


def missing_runtime(name: str) -> str:
    """Why a runtime's tests are skipped, and how to enable them."""
    if name == "runsc":
        return (
            "the Docker daemon has no 'runsc' (gVisor) runtime; to run these tests, install and register it "
            "with `sudo scripts/setup-host --gvisor` (apt-get install runsc, add it to /etc/docker/daemon.json, "
            "reload dockerd)"
        )
    return f"the Docker daemon has no {name!r} runtime; check `docker info --format '{{{{.Runtimes}}}}'`"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs this, and it is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    from rlm_sandbox.errors import DockerUnavailableError
    from rlm_sandbox.sandbox.docker import docker_client as make_client

    try:
        return make_client()
    except DockerUnavailableError as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The sandbox image, built once per session if the sources changed."""
    from rlm_sandbox.sandbox.image import ensure_image

    return ensure_image(docker_client, SandboxConfig())


@pytest.fixture(scope="session")
def available_runtimes(docker_client) -> set[str]:
    return set((docker_client.info().get("Runtimes") or {}).keys())


@pytest.fixture(params=RUNTIMES)
def runtime(request, available_runtimes, sandbox_image) -> str:
    if request.param not in available_runtimes:
        _unavailable(missing_runtime(request.param))
    return request.param


@pytest.fixture(params=("local", *RUNTIMES))
def sandbox_kind(request) -> str:
    """Every way to run the server: behaviour must be the same in all of them."""
    if request.param != "local":
        request.getfixturevalue("sandbox_image")
        if request.param not in request.getfixturevalue("available_runtimes"):
            _unavailable(missing_runtime(request.param))
    return request.param


def make_sandbox(kind: str, config: SandboxConfig | None = None, **handlers):
    from rlm_sandbox.sandbox import sandbox_for
    from rlm_sandbox.sandbox.local import IsolationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)  # tests and benchmarks know it isolates nothing
        return sandbox_for(kind, config, **handlers)


@pytest.fixture(scope="session", autouse=True)
def no_containers_left_behind():
    """After the whole session, this process owns no sandbox container."""
    yield
    try:
        from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID, docker_client

        client = docker_client()
    except Exception:
        return  # no daemon: nothing can be left
    # A removal the daemon already had in progress may take a moment to finish.
    deadline = time.monotonic() + 10
    while True:
        leftovers = client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not leftovers, f"containers left behind: {[c['Id'][:12] for c in leftovers]}"
