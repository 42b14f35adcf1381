"""The attack cases, and the registry each category module adds its own to.

A case is a name, the area of the package it belongs to, what must happen, the in-sandbox
code (a file under attacks/, read at run time), and a check over what did happen. The
areas are the package's modules; the table reports the coarser category of the issue's
list each area falls under (privilege and filesystem attacks are both "escape").

Files under attacks/ whose names start with "_" are not cases: `_prelude.py` runs before
every case, `_forge.py` before the ones that forge raw frames, `_inside_probe.py` lists
what a case left running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..sandbox.base import ExecResult
from . import sources

if TYPE_CHECKING:
    from .env import AuditEnv

Area = Literal["network", "privilege", "filesystem", "resources", "protocol", "injection"]
AREAS: tuple[Area, ...] = ("network", "privilege", "filesystem", "resources", "protocol", "injection")
Category = Literal["escape", "network", "dos", "channel", "injection"]
CATEGORIES: tuple[Category, ...] = ("escape", "network", "dos", "channel", "injection")
_CATEGORY_OF: dict[Area, Category] = {
    "network": "network",
    "privilege": "escape",
    "filesystem": "escape",
    "resources": "dos",
    "protocol": "channel",
    "injection": "injection",
}

Observation = dict[str, Any]
Check = Callable[[ExecResult, Observation | None, "AuditEnv"], tuple[bool, str]]


@dataclass(frozen=True)
class AttackCase:
    """One attack. `check(result, observation, env)` returns (passed, what was observed)."""

    name: str
    area: Area
    expected: str
    check: Check
    attack: str
    """The file of in-sandbox code: attacks/<attack>.py."""
    preamble: tuple[str, ...] = ()
    """Files of attacks/ run before it, in order (e.g. "_forge")."""
    fresh: bool = False
    """Destructive: runs in a sandbox of its own, closed and checked for leftovers after."""
    timeout_s: float = 30.0
    kind: Literal["exec", "rlm"] = "exec"
    """"rlm": the code is what an obedient model writes inside a whole RLM completion."""

    @property
    def category(self) -> Category:
        """The category the table and the JSON report show."""
        return _CATEGORY_OF[self.area]

    @property
    def code(self) -> str:
        """The code the sandbox runs (after the audit's prelude)."""
        return "".join(sources.source(stem) for stem in (*self.preamble, self.attack))


_registered: dict[str, AttackCase] = {}


def register(
    name: str,
    area: Area,
    *,
    expected: str,
    check: Check,
    attack: str | None = None,
    preamble: tuple[str, ...] = (),
    fresh: bool = False,
    timeout_s: float = 30.0,
    kind: Literal["exec", "rlm"] = "exec",
) -> AttackCase:
    """Add a case; its code is attacks/<attack>.py, by default the name with "_" for "-"."""
    if name in _registered:
        raise ValueError(f"attack case {name!r} is registered twice")
    case = AttackCase(
        name=name,
        area=area,
        expected=expected,
        check=check,
        attack=attack or name.replace("-", "_"),
        preamble=preamble,
        fresh=fresh,
        timeout_s=timeout_s,
        kind=kind,
    )
    for stem in (*case.preamble, case.attack):
        if not sources.exists(stem):
            raise ValueError(f"attack case {name!r}: there is no attacks/{stem}.py")
    _registered[name] = case
    return case


def registered() -> dict[str, AttackCase]:
    """Every case registered so far, by name."""
    return dict(_registered)


def in_order(names: Iterable[str]) -> tuple[AttackCase, ...]:
    """The registered cases in the order given, which must name each of them exactly once."""
    names = list(names)
    missing = [name for name in names if name not in _registered]
    unordered = sorted(set(_registered) - set(names))
    if missing or unordered or len(set(names)) != len(names):
        raise ValueError(f"the run order and the registry disagree: unknown {missing}, not ordered {unordered}")
    return tuple(_registered[name] for name in names)
