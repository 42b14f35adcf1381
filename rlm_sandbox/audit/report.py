"""What an audit reports: one outcome per case, and the whole run."""

from __future__ import annotations

from pydantic import BaseModel


class CaseOutcome(BaseModel):
    name: str
    category: str
    expected: str
    observed: str
    passed: bool
    duration_s: float
    problems: list[str] = []


class AuditReport(BaseModel):
    runtime: str
    outcomes: list[CaseOutcome]
    duration_s: float

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed

    @property
    def ok(self) -> bool:
        return self.failed == 0 and bool(self.outcomes)
