"""scripts/setup-host, the set-up `make` and CI share, on a fresh Debian without root:
it stops with the exact command to run. (As root it installs; CI's .ci/run covers that.)"""

from __future__ import annotations

from pathlib import Path

import docker.errors
import pytest

from rlm_sandbox.sandbox.image import BOOTSTRAP_BASE, image_exists

from .conftest import missing_runtime

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_setup_host(client, *args: str, user: str = "65534:65534") -> tuple[int, str]:
    """The script in a bare Debian bookworm (python3, no venv module, no Docker)."""
    if not image_exists(client, BOOTSTRAP_BASE):
        pytest.skip(f"{BOOTSTRAP_BASE} is not here to stand in for a fresh Debian")
    container = client.containers.run(
        BOOTSTRAP_BASE,
        ["bash", "/scripts/setup-host", *args],
        user=user,
        volumes={str(SCRIPTS): {"bind": "/scripts", "mode": "ro"}},
        network_mode="none",
        detach=True,
    )
    try:
        status = container.wait(timeout=60)["StatusCode"]
        output = container.logs().decode()
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    return status, output


def test_without_root_a_missing_package_stops_with_the_command_to_run(docker_client):
    status, output = run_setup_host(docker_client)
    assert status == 1
    assert "sudo apt-get update && sudo apt-get install -y python3-venv" in output, output


def test_registering_gvisor_without_root_says_how(docker_client):
    status, output = run_setup_host(docker_client, "--gvisor")
    assert status == 1
    assert "sudo apt-get install -y python3-venv runsc" in output, output


def test_the_gvisor_skip_reason_names_the_command_that_enables_it():
    reason = missing_runtime("runsc")
    assert "sudo scripts/setup-host --gvisor" in reason
    assert "--gvisor)" in (SCRIPTS / "setup-host").read_text(), "the command the reason names exists"
