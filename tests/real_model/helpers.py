"""What every real-model run must show, whatever the model wrote."""

from __future__ import annotations

import os
import time
from typing import Any

from rlm_sandbox.limits import Usage

from .conftest import RUNS
from .proxy import RecordingProxy

# A real model may ramble, loop or never answer; the loop must still end in one of these.
ALLOWED_STOPS = {"final", "max_iterations", "budget", "timeout"}


def assert_usage_matches_server(usage: Usage, proxy: RecordingProxy, model: str) -> None:
    """The RLM's usage is exactly what the server said it used, answer by answer.

    Only answers the client received count: a call abandoned at a deadline is
    answered later to nobody, and its tokens were never reported to the RLM.
    """
    proxy.wait_idle(timeout_s=300)
    chat = proxy.chat_exchanges()
    received = [e for e in chat if e.delivered and e.status == 200]
    missing = [e for e in received if e.prompt_tokens is None or e.completion_tokens is None]
    assert not missing, f"the server answered without usage: {missing}"
    server_in = sum(e.prompt_tokens or 0 for e in received)
    server_out = sum(e.completion_tokens or 0 for e in received)
    assert (usage.total.input_tokens, usage.total.output_tokens) == (server_in, server_out), (
        f"usage {usage.total} differs from the server's own count: {server_in} in, {server_out} out "
        f"over {len(received)} answers"
    )
    assert set(usage.models) == {model}
    assert usage.models[model].input_tokens == server_in
    # One recorded call per request, and the SDK's retries are extra requests of the same call.
    assert len(received) <= usage.total.calls <= len(chat), (usage.total.calls, len(received), len(chat))


def assert_no_containers_left(docker_client: Any, timeout_s: float = 20) -> None:
    """A finished node removes its sandbox in the background; give that a moment, no more."""
    from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID

    deadline = time.monotonic() + timeout_s
    while True:
        left = docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"containers left behind: {[c['Id'][:12] for c in left]}"


def record_run(name: str, *, stop_reason: str, iterations: int, usage: Usage, proxy: RecordingProxy,
               events: list[dict[str, Any]], wall_s: float) -> None:  # fmt: skip
    chat = proxy.chat_exchanges()
    RUNS.append(
        {
            "name": name,
            "stop_reason": stop_reason,
            "iterations": iterations,
            "calls": usage.total.calls,
            "input_tokens": usage.total.input_tokens,
            "output_tokens": usage.total.output_tokens,
            "largest_request_tokens": max((e.prompt_tokens or 0 for e in chat), default=0),
            "context_errors": sum(1 for e in chat if e.status == 400 and "context" in (e.error or "").lower()),
            # Whatever the compaction event ends up being called, it names compaction.
            "compactions": sum(1 for e in events if "compact" in str(e.get("type", ""))),
            "finish_reasons": sorted({str(e.finish_reason) for e in chat if e.status == 200}),
            "wall_s": round(wall_s, 1),
        }
    )
