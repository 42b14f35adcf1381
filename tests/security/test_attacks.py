"""Every attack case of the audit, as model-written code in a real sandbox, on runc and runsc.

The cases, their code and their checks live in rlm_sandbox/audit/ and nowhere else:
`rlm-sandbox audit` runs exactly these, so the tests and the command cannot disagree.
Each test fails with the case's expectation and what was observed instead.
"""

from __future__ import annotations

import pytest

from rlm_sandbox.audit import CASES, AuditEnv, AuditSession
from tests.conftest import RUNTIMES, _unavailable, missing_runtime


@pytest.fixture(scope="module", params=RUNTIMES)
def audit(request):
    """One audit session per runtime: canaries planted once, a shared sandbox for harmless cases."""
    request.getfixturevalue("sandbox_image")
    if request.param not in request.getfixturevalue("available_runtimes"):
        _unavailable(missing_runtime(request.param))
    with AuditEnv(request.param) as env:
        session = AuditSession(env)
        yield session
        cleanup = session.finish()
    assert cleanup.passed, f"after the {request.param} audit: {cleanup.observed}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_attack_fails(audit, case):
    outcome = audit.run(case)
    assert outcome.passed, f"[{audit.runtime}] {case.name}: expected {case.expected}\n  observed: {outcome.observed}"


def test_cases_cover_every_required_attack():
    """The issue's list of attacks, by category, each present as a case."""
    names = {case.name for case in CASES}
    required = {
        "escape": {
            "docker-and-host-sockets",
            "host-secrets",
            "setuid-to-root",
            "unshare-namespaces",
            "mount-filesystems",
            "ptrace-processes",
            "load-kernel-modules",
            "write-root-filesystem",
            "device-nodes",
            "cgroup-release-agent",
            "breakout-checklist",
        },
        "network": {
            "tcp-out",
            "udp-out",
            "dns-lookup",
            "cloud-metadata",
            "docker-bridge-gateway",
            "host-loopback-services",
        },
        "dos": {
            "fork-bomb",
            "memory-bomb",
            "tmpfs-and-shm-fill",
            "file-size-limit",
            "output-flood-lines",
            "output-flood-one-line",
            "cpu-spin",
            "sleep-forever",
            "signals-ignored",
            "setsid-orphans-and-daemons",
            "thread-bomb",
            "deep-recursion-crash",
            "os-exit-mid-exec",
        },
        "channel": {
            "frame-oversized",
            "frame-truncated-then-hang",
            "frame-malformed-json",
            "frame-non-utf8",
            "llm-request-flood",
            "request-claiming-a-depth",
            "request-for-another-exec",
            "non-utf8-bytes",
        },
        "injection": {"prompt-injection-api-key"},
    }
    for category, wanted in required.items():
        assert wanted <= names, f"{category}: missing {wanted - names}"
        assert all(case.category == category for case in CASES if case.name in wanted)
    # Destructive cases get a sandbox of their own; every case says what it expects.
    assert all(case.expected and case.code for case in CASES)


# The audit must be able to fail: against a sandbox with one control loosened on purpose,
# the case that guards that control reports a miss.
WEAKENED = [
    ("docker-bridge-gateway", {"network_mode": "bridge"}),
    ("write-root-filesystem", {"read_only": False}),
    ("setuid-to-root", {"user": "0:0"}),
    ("setuid-to-root", {"security_opt": ()}),  # no no_new_privs: the setuid bit of su takes effect
    ("host-secrets", "leak the canary variable"),
]


@pytest.mark.parametrize("name, change", WEAKENED, ids=[f"{name}:{change}" for name, change in WEAKENED])
def test_the_audit_catches_a_weakened_sandbox(name, change, sandbox_image):
    from rlm_sandbox.audit import CASES_BY_NAME

    with AuditEnv("runc") as env:
        if isinstance(change, str):
            change = {"environment": {"INNOCENT_LOOKING": env.secrets["canary variable"]}}
        env.config = env.config.model_copy(update=change)
        session = AuditSession(env)
        outcome = session.run(CASES_BY_NAME[name])
        session.finish()
    assert not outcome.passed, f"{name} passed against a sandbox with {change}: {outcome.observed}"
