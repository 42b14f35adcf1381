"""probe_hardening: it must notice a sandbox that is not what its config promised."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rlm_sandbox.errors import SandboxError
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import DockerSandbox
from rlm_sandbox.sandbox.hardening import probe_hardening


def by_name(checks):
    return {check.name: check for check in checks}


def test_default_sandbox_passes_every_check(runtime):
    config = SandboxConfig(runtime=runtime)
    with DockerSandbox(config) as sandbox:
        checks = probe_hardening(sandbox, config)
    assert [check.name for check in checks if check.failed] == []
    informational = {check.name for check in checks if check.informational}
    assert informational == (set() if runtime == "runc" else {"no_new_privs", "seccomp", "pids_limit", "memory_limit"})


def test_a_looser_sandbox_fails_the_checks_it_loosened(sandbox_image):
    loose = SandboxConfig(pids_limit=100, nofile=2048, environment={"OPENAI_API_KEY": "sk-test"})
    with DockerSandbox(loose) as sandbox:
        checks = by_name(probe_hardening(sandbox, SandboxConfig()))
    assert {name for name, check in checks.items() if check.failed} == {"pids_limit", "nofile", "environment"}
    assert checks["pids_limit"].observed == "100"
    assert "OPENAI_API_KEY" in checks["environment"].observed


@pytest.mark.parametrize(
    "result, message",
    [
        (SimpleNamespace(stdout="", error="NameError: boom"), "probe failed"),
        (SimpleNamespace(stdout="hello\n", error=None), "no report"),
        (SimpleNamespace(stdout='RLM_PROBE {"uid": "x"}\n', error=None), "invalid report"),
    ],
)
def test_a_broken_probe_is_a_sandbox_error(result, message):
    sandbox = SimpleNamespace(execute=lambda code, timeout_s=None: result)
    with pytest.raises(SandboxError, match=message):
        probe_hardening(sandbox)
