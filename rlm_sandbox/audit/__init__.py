"""The attack audit: model-written attacks run in a real sandbox, with the evidence that each fails.

Every case is data: the code a hostile model (or a prompt injection) would write, kept as a
Python file under attacks/, what must happen, and a check over what did happen. The same
cases drive the test suite (tests/security) and the `rlm-sandbox audit` command, so the
two cannot disagree.

    registry.py     AttackCase and register(): how a case is declared
    network.py, privilege.py, filesystem.py, resources.py, protocol.py, injection.py
                    the cases of each area, with their checks
    attacks/        the in-sandbox code, one file per case (read at run time, never imported)
    catalog.py      CASES, in the order the audit runs them
    env.py          AuditEnv: the secrets and canaries planted on the host
    session.py      AuditSession and run_audit: running cases and the generic evidence
    checks.py, host.py, sources.py, report.py   what those share

Case code runs after a prelude (attacks/_prelude.py) that defines `_audit` (the canaries'
names, paths and ports, never their secret values) and `_report(obs)`, which prints the one
`AUDIT {json}` line of observations the check reads.
"""

from __future__ import annotations

from .catalog import CASES, CASES_BY_NAME, RUN_ORDER
from .checks import CLEAR_ERRORS, GONE_WITHIN_S, HANG_SLACK_S, LLM_CALLS_PER_CASE, parse_observation
from .env import AuditEnv
from .injection import INJECTED_CONTEXT
from .registry import AREAS, CATEGORIES, Area, AttackCase, Category, Check, register
from .report import AuditReport, CaseOutcome
from .session import AuditSession, run_audit

__all__ = [
    "AREAS",
    "CASES",
    "CASES_BY_NAME",
    "CATEGORIES",
    "CLEAR_ERRORS",
    "GONE_WITHIN_S",
    "HANG_SLACK_S",
    "INJECTED_CONTEXT",
    "LLM_CALLS_PER_CASE",
    "RUN_ORDER",
    "Area",
    "AttackCase",
    "AuditEnv",
    "AuditReport",
    "AuditSession",
    "CaseOutcome",
    "Category",
    "Check",
    "parse_observation",
    "register",
    "run_audit",
]
