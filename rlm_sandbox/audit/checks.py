"""What every check shares: the observation line, the audit's bounds, small verdict helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..sandbox.base import ExecResult
from .registry import Observation

# The prefix of the one line of observations an attack prints (attacks/_prelude.py).
MARKER = "AUDIT "
# How a replaced sandbox may explain itself: anything else is not a clear error.
CLEAR_ERRORS = frozenset({"SandboxDied", "ProtocolError", "TimeoutError"})
# Model calls the host allows per case: the flood cases must stop exactly here.
LLM_CALLS_PER_CASE = 20
# Beyond timeout + interrupt grace: a restart, and a loaded 2-core machine.
HANG_SLACK_S = 20.0
# How long a closed sandbox may take to vanish from Docker and the host's process table.
GONE_WITHIN_S = 20.0


def parse_observation(result: ExecResult) -> Observation | None:
    """The last `AUDIT {json}` line the code printed (stdout, else stderr), or None."""
    for stream in (result.stdout, result.stderr):
        for line in reversed(stream.splitlines()):
            if line.startswith(MARKER):
                try:
                    value = json.loads(line[len(MARKER) :])
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def errno_names(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values})) or "nothing"


def succeeded(values: dict[str, Any]) -> list[str]:
    return sorted(key for key, value in values.items() if value in ("ok", "written", "connected", "sent", "opened"))


def all_failed(obs: Observation | None, key: str, what: str) -> tuple[bool, str]:
    if not obs or not isinstance(obs.get(key), dict) or not obs[key]:
        return False, f"no observation of {what}"
    won = succeeded(obs[key])
    if won:
        return False, f"{what} succeeded: {', '.join(won)}"
    return True, f"{len(obs[key])} {what} attempts all failed ({errno_names(obs[key].values())})"


def replaced(result: ExecResult, *types: str) -> bool:
    return result.restarted and result.error_type in types


def is_gvisor(obs: Observation) -> bool:
    return "gVisor" in str(obs.get("kernel_log", ""))
