"""`rlm-sandbox audit`: its arguments, its table and its exit code.

The command runs `run_audit`, whose cases are the ones tests/security/test_attacks.py
runs against both runtimes; CI runs the command itself for runc and runsc. Here a
canned report stands in for a real run, so the output and the exit code are checked
in a second, for a clean run and for one with a miss.
"""

from __future__ import annotations

import json

import pytest

from rlm_sandbox import audit, cli
from rlm_sandbox.audit import AuditReport, CaseOutcome
from rlm_sandbox.cli import build_parser, main


def report(runtime: str, *, miss: bool) -> AuditReport:
    outcomes = [
        CaseOutcome(
            name="tcp-out",
            category="network",
            expected="no connection",
            observed="ENETUNREACH",
            passed=True,
            duration_s=0.1,
        ),
        CaseOutcome(
            name="fork-bomb",
            category="dos",
            expected="pids limit",
            observed="EAGAIN after 40",
            passed=not miss,
            duration_s=0.5,
        ),
        CaseOutcome(
            name="cleanup", category="cleanup", expected="nothing left", observed="gone", passed=True, duration_s=0.2
        ),
    ]
    return AuditReport(runtime=runtime, outcomes=outcomes, duration_s=1.0)


@pytest.fixture
def canned(monkeypatch):
    calls = []

    def fake_run_audit(runtime, *, console=None, **kwargs):
        calls.append(runtime)
        return report(runtime, miss=fake_run_audit.miss)

    fake_run_audit.miss = False
    monkeypatch.setattr(audit, "run_audit", fake_run_audit)
    return fake_run_audit, calls


def test_arguments():
    args = build_parser().parse_args(["audit"])
    assert args.handler is cli.cmd_audit and (args.runtime, args.json) == ("runc", False)
    args = build_parser().parse_args(["audit", "--runtime", "runsc", "--json"])
    assert (args.runtime, args.json) == ("runsc", True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audit", "--runtime", "kata"])


def test_table_and_totals_for_a_clean_run(canned, capsys):
    _, calls = canned
    assert main(["audit", "--runtime", "runsc"]) == 0
    assert calls == ["runsc"]
    out = capsys.readouterr().out
    for word in ("case", "category", "expected", "observed", "pass", "tcp-out", "fork-bomb", "cleanup"):
        assert word in out
    assert "3 of 3 passed, 0 missed" in out


def test_a_miss_exits_1_and_is_shown(canned, capsys):
    fake, _ = canned
    fake.miss = True
    assert main(["audit"]) == 1
    out = capsys.readouterr().out
    assert "MISS" in out and "2 of 3 passed, 1 missed" in out


def test_json_output(canned, capsys):
    assert main(["audit", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runtime"] == "runc" and [o["name"] for o in data["outcomes"]] == ["tcp-out", "fork-bomb", "cleanup"]


def test_no_daemon_is_a_clear_error(monkeypatch, capsys):
    from rlm_sandbox.errors import DockerUnavailableError

    def no_daemon(runtime, **kwargs):
        raise DockerUnavailableError("cannot reach a Docker daemon")

    monkeypatch.setattr(audit, "run_audit", no_daemon)
    assert main(["audit"]) == 1
    assert "cannot reach a Docker daemon" in capsys.readouterr().err
