"""The RLM loop against a real model behind a real OpenAI-compatible server (issue #9).

SmolLM2-135M writes whatever it writes: rambles, broken code, no FINAL, replies as
long as the window allows. Whatever it does, every run must end with final,
max_iterations, budget or timeout (never error), the usage must be what the server
reported, and no container may be left.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rlm_sandbox import RLM, Limits

from .helpers import ALLOWED_STOPS, assert_no_containers_left, assert_usage_matches_server, record_run
from .proxy import RecordingProxy

pytestmark = [pytest.mark.real_model, pytest.mark.docker]

NEEDLE_LINES = [f"line {i}: the weather report says nothing of note today." for i in range(3000)]
NEEDLE_LINES[1789] = "line 1789: the magic number is 48213."

CASES: dict[str, tuple[Any, str]] = {
    "short-text": (
        "The red house on Elm Street has a green door. The blue house next to it has a yellow door.",
        "What colour is the door of the blue house?",
    ),
    "list-of-records": (
        [f"order {i}: {n} apples" for i, n in enumerate([3, 7, 2, 9, 4, 6], start=1)],
        "How many apples were ordered in total?",
    ),
    "nested-dict": (
        {"team": "falcons", "players": [{"name": "Ada", "goals": 4}, {"name": "Ben", "goals": 1}], "coach": "Cy"},
        "Which player scored the most goals?",
    ),
    "needle-in-120k-chars": ("\n".join(NEEDLE_LINES), "What is the magic number? Answer with the number only."),
}

# Cases whose Limits name the window; the others leave it unknown, so the loop must
# learn it (llama-cpp-python's /v1/models does not report n_ctx) or recover from the
# server's context-length error.
WINDOW_GIVEN = {"short-text", "needle-in-120k-chars"}


def _limits(case: str, n_ctx: int) -> Limits:
    """Small, so the whole set takes minutes on 2 cores whatever the model writes."""
    extra: dict[str, Any] = {"max_output_tokens": 384}
    if case in WINDOW_GIVEN:
        extra["context_window"] = n_ctx
    return Limits(
        max_iterations=4,
        max_llm_calls=12,
        timeout_s=240,
        llm_timeout_s=120,
        exec_timeout_s=20,
        max_concurrency=2,
        **extra,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_real_model_run_ends_cleanly(case, real_model_server, sandbox_image, docker_client):
    context, query = CASES[case]
    events: list[dict[str, Any]] = []
    with RecordingProxy(real_model_server.origin) as proxy:
        rlm = RLM(
            model=real_model_server.model,
            base_url=proxy.base_url,
            api_key="not-needed",
            sandbox=True,
            limits=_limits(case, real_model_server.n_ctx),
            listeners=[events.append],
        )
        started = time.monotonic()
        result = rlm.completion(context, query)
        wall_s = time.monotonic() - started
        record_run(case, stop_reason=result.stop_reason, iterations=result.iterations, usage=result.usage,
                   proxy=proxy, events=events, wall_s=wall_s)  # fmt: skip

        # The invariants that hold however a run ends come first, so a bad stop still shows them.
        assert_usage_matches_server(result.usage, proxy, real_model_server.model)
    assert_no_containers_left(docker_client)
    assert result.iterations >= 1
    assert result.stop_reason in ALLOWED_STOPS, (
        f"stopped with {result.stop_reason!r}: {result.error}\nserver log:\n{real_model_server.log_tail(10)}"
    )
