"""Host-call measurements: threaded fan-out against the ideal, and the tool round trip.

`threaded_fan_out`: sandbox code starts 64 threads, each calling `llm_query` once; the
sub-model takes 0.2 s per call (an in-process client that sleeps, so the number is the
runtime's, not a network's). The ideal wall time is 64 x 0.2 / max_concurrency.

`tool_round_trip`: code -> host tool -> code, measured inside the sandbox, beside the
same loop through `llm_query` with a zero-latency handler. A tool call also binds and
validates its arguments with pydantic and runs the function on its own thread (for
its timeout), which is what the difference pays for.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from rlm_sandbox import RLM, Limits
from rlm_sandbox.lm import LMResponse
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.local import IsolationWarning
from rlm_sandbox.tools import Tool, ToolCalls

_FAN_OUT = """
import threading, time
t = time.perf_counter()
out = [None] * {n}
def ask(i):
    out[i] = llm_query(f"q{{i}}")
threads = [threading.Thread(target=ask, args=(i,)) for i in range({n})]
for th in threads: th.start()
for th in threads: th.join()
print(round(time.perf_counter() - t, 4))
"""


class _Client:
    """Root: one code turn, then FINAL(the measured time). Sub: sleeps `latency_s`."""

    def __init__(self, n: int, latency_s: float) -> None:
        self.model = "bench"
        self.n = n
        self.latency_s = latency_s

    def complete(
        self, messages: list[dict[str, Any]], *, model: str | None = None, timeout_s: float | None = None
    ) -> LMResponse:
        if model == "sub":
            time.sleep(self.latency_s)
            text = "x"
        elif not any(m["role"] == "assistant" for m in messages):
            text = "```repl\n" + _FAN_OUT.format(n=self.n) + "\n```"
        else:
            text = "FINAL(" + messages[-1]["content"].splitlines()[1] + ")"
        return LMResponse(text=text, model=model or self.model, input_tokens=1, output_tokens=1, cost_usd=0.0)


def threaded_fan_out(
    kinds: list[str], n: int = 64, latency_s: float = 0.2, concurrencies: tuple[int, ...] = (4, 8, 16)
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in kinds:
        for concurrency in concurrencies:
            client = _Client(n, latency_s)
            sandbox: Any = False if kind == "local" else SandboxConfig(runtime=kind)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IsolationWarning)
                rlm = RLM(
                    model="bench",
                    sub_model="sub",
                    sandbox=sandbox,
                    client=client,
                    limits=Limits(max_concurrency=concurrency),
                )
                result = rlm.completion("ctx", "q")
            if result.answer is None:
                raise RuntimeError(f"the fan-out run on {kind} gave no answer: {result.stop_reason} {result.error}")
            wall = float(result.answer)
            ideal = n * latency_s / concurrency
            results[f"{kind} c={concurrency}"] = {
                "calls": n,
                "wall_s": wall,
                "ideal_s": round(ideal, 3),
                "overhead_pct": round(100 * (wall - ideal) / ideal, 1),
            }
    return results


_LOOP = """
import time
samples = []
for _ in range({n}):
    t = time.perf_counter()
    {call}
    samples.append(time.perf_counter() - t)
samples.sort()
print(samples[len(samples) // 2], samples[int(0.95 * (len(samples) - 1))])
"""


def tool_round_trip(kinds: list[str], repeat: int) -> dict[str, Any]:
    from .measures import make

    def echo(text: str) -> str:
        return text

    tool = Tool(echo)
    calls = ToolCalls(max_calls=None, deadline_s=lambda: None, on_call=lambda **event: None)
    results: dict[str, Any] = {}
    for kind in kinds:
        sandbox = make(kind, llm_handler=lambda prompts, model: ["pong"] * len(prompts))
        sandbox.tools = [tool.spec()]
        sandbox.tool_handler = lambda name, args, kwargs: calls.call(tool, args, kwargs)
        with sandbox:
            for label, call in (("llm_query", 'llm_query("ping")'), ("tool", 'echo("ping")')):
                sandbox.execute(_LOOP.format(n=10, call=call))
                out = sandbox.execute(_LOOP.format(n=repeat, call=call), timeout_s=300)
                if out.error:
                    raise RuntimeError(f"the {label} loop failed in the {kind} sandbox: {out.error}")
                p50, p95 = (float(v) for v in out.stdout.split())
                results[f"{kind} {label}"] = {
                    "n": repeat,
                    "p50_ms": round(p50 * 1000, 4),
                    "p95_ms": round(p95 * 1000, 4),
                }
    return results
