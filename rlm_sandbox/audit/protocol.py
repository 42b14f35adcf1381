"""Protocol attacks: forged, oversized, malformed and misaddressed frames; request floods; bytes that are not UTF-8.

The forging cases run attacks/_forge.py first, which finds the server's channel through the
garbage collector, as an attacker would, and writes raw frames on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sandbox.base import ExecResult
from .checks import LLM_CALLS_PER_CASE, replaced
from .registry import Observation, register

if TYPE_CHECKING:
    from .env import AuditEnv


def _check_protocol_violation(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    calls = env.case_host.get("llm_calls", 0)
    if calls:
        return False, f"the forged frame reached the model handler ({calls} calls)"
    if replaced(result, "ProtocolError", "SandboxDied", "TimeoutError"):
        first = (result.error or "").split(". The sandbox")[0]
        return True, f"refused, nothing acted on; sandbox replaced: {first[:160]}"
    return False, f"accepted: restarted={result.restarted} {result.error_type} {result.error}"


def _check_refused_in_sandbox(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    calls = env.case_host.get("llm_calls", 0)
    if calls:
        return False, f"the request reached the model handler ({calls} calls)"
    if result.error_type == "RequestTooLargeError" and not result.restarted:
        return True, "refused inside the sandbox before it was sent; the sandbox kept its state"
    return False, f"restarted={result.restarted} {result.error_type} {(result.error or '')[:200]}"


def _check_flood_requests(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    calls = env.case_host.get("llm_calls")
    if calls != LLM_CALLS_PER_CASE or obs["ok"] != LLM_CALLS_PER_CASE:
        return (
            False,
            f"the host made {calls} model calls and the code got {obs['ok']} answers; the budget is {LLM_CALLS_PER_CASE}",
        )
    if obs["refused"] != 2000 - LLM_CALLS_PER_CASE or obs["batch"] != "refused" or result.restarted:
        return False, f"refused {obs['refused']}, batch {obs['batch']}, restarted {result.restarted}"
    return True, (
        f"2,000 llm_query + a 5,000-prompt batch + 200 forged requests: the host made exactly {calls} model calls "
        f"(the budget), refused the rest with BudgetExceededError; the sandbox stayed up"
    )


def _check_non_utf8(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if result.restarted or result.error:
        return False, f"{result.error_type}: {result.error}"
    if not obs or obs.get("answer") != "echo" or env.case_host.get("llm_calls") != 1:
        return False, f"the llm_query with a lone surrogate did not round-trip: {obs}"
    if "\ufffd" not in result.stdout or "\ufffd" not in result.stderr or result.final is None:
        return False, f"invalid bytes not replaced: {result.stdout[:100]!r} {result.stderr[:100]!r}"
    return True, (
        "invalid UTF-8 on stdout and stderr comes back as U+FFFD; lone surrogates in output, in an llm_query "
        "and in FINAL are replaced, not fatal; no restart"
    )


FORGE = ("_forge",)


def _forged(name: str, expected: str, *, timeout_s: float = 30.0) -> None:
    register(
        name,
        "protocol",
        expected=expected,
        check=_check_protocol_violation,
        preamble=FORGE,
        fresh=True,
        timeout_s=timeout_s,
    )


_forged("frame-oversized", "a 64 MiB frame header is refused before any body is read; replaced (ProtocolError)")
_forged("frame-truncated-then-hang", "half a frame then silence: no hang past timeout + grace; replaced", timeout_s=2)
_forged("frame-malformed-json", "refused (ProtocolError), replaced")
_forged("frame-non-utf8", "refused (ProtocolError), replaced")
_forged("frame-result-for-another-exec", "refused (ProtocolError), replaced; no forged final answer")
_forged("request-for-another-exec", "refused before any model call (ProtocolError), replaced")
_forged("request-claiming-a-depth", "unknown fields refused before any model call (ProtocolError), replaced")
_forged("oversized-batch", "a forged 20,000-prompt request is refused before any model call, replaced")
register(
    "oversized-batch-in-sandbox",
    "protocol",
    expected="llm_query_batched of 20,000 prompts raises RequestTooLargeError in the code; nothing sent, not replaced",
    check=_check_refused_in_sandbox,
)
register(
    "llm-request-flood",
    "protocol",
    expected=f"the host's budget holds: exactly {LLM_CALLS_PER_CASE} model calls, the rest refused",
    check=_check_flood_requests,
    preamble=FORGE,
    timeout_s=60,
)
register(
    "non-utf8-bytes",
    "protocol",
    expected="invalid UTF-8 output and lone surrogates pass without breaking the channel",
    check=_check_non_utf8,
)
