"""The runtime's share of a completion (#16): (wall - model wait) / wall.

The 1M-line NIAH completion (41 MB) as issue #16 measured it: two root turns and
eight batched sub-calls. The root's first turn cuts the context in eight, sends a
window around each "magic number" to a sub-model with `llm_query_batched`, and its
second turn answers with FINAL_VAR. Every model call takes a fixed time (0, 200 ms,
1 s). Three arrangements:
- "before": each node waits for its sandbox before its first model call (the order
  before the overlapped start);
- "cold": the sandbox starts and loads the context during the first model call;
- "warm pool": nodes take a started sandbox from a `SandboxPool`.

Model wait is the time at least one model call was in flight (the union of their
intervals), so batched sub-calls count once, as they do on the critical path.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from typing import Any

from rlm_sandbox.lm import LMResponse
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.pool import SandboxPool

SEARCH = """Eight parts, each searched by a sub-model.

```repl
size = len(context) // 8 + 1
prompts = []
for part in (context[i : i + size] for i in range(0, len(context), size)):
    at = part.find("magic number")
    window = part[max(0, at - 300) : at + 300] if at >= 0 else ""
    prompts.append("What is the magic number in this text? Reply with the number or NONE.\\n\\n" + window)
answers = llm_query_batched(prompts)
answer = next((a for a in answers if a.strip().isdigit()), "NONE")
print(answers)
```"""


class NeedleModel:
    """Root: SEARCH, then FINAL_VAR("answer"); sub-model: the number in its window, or NONE."""

    model = "needle-script"

    def complete(self, messages: list[dict[str, Any]], *, model: str | None = None, **_: Any) -> LMResponse:
        root = any(message.get("role") == "system" for message in messages)
        if root:
            turn = sum(1 for message in messages if message.get("role") == "assistant")
            text = SEARCH if turn == 0 else 'Found it.\nFINAL_VAR("answer")'
        else:
            found = re.search(r"magic number is (\d+)", str(messages[-1].get("content", "")))
            text = found.group(1) if found else "NONE"
        return LMResponse(text=text, model=model or self.model, input_tokens=1, output_tokens=1, cost_usd=0.0)


class SlowModel:
    """A model taking `delay_s` per call, timing when calls are in flight."""

    def __init__(self, delay_s: float) -> None:
        self.inner = NeedleModel()
        self.model = self.inner.model
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._in_flight = 0
        self._busy_since = 0.0
        self.wait_s = 0.0

    def complete(self, messages: list[dict[str, Any]], **kwargs: Any) -> LMResponse:
        with self._lock:
            if self._in_flight == 0:
                self._busy_since = time.monotonic()
            self._in_flight += 1
        try:
            time.sleep(self.delay_s)
            return self.inner.complete(messages, **kwargs)
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self.wait_s += time.monotonic() - self._busy_since


def runtime_share(
    runtime: str, lines: int, repeat: int, delays_s: tuple[float, ...] = (0.0, 0.2, 1.0)
) -> dict[str, Any]:
    from rlm_sandbox import RLM
    from rlm_sandbox.evals.niah import NIAH_QUERY, make_haystack

    from .measures import _quiet

    haystack = make_haystack(lines, seed=1)
    results: dict[str, Any] = {}
    config = SandboxConfig(runtime=runtime)
    with SandboxPool(config, size=1) as pool:
        for delay in delays_s:
            for arrangement in ("before", "cold", "warm pool"):
                walls, waits, shares, exposed = [], [], [], []
                for _ in range(repeat):
                    model = SlowModel(delay)
                    with _quiet():
                        if arrangement == "warm pool":
                            pool.wait_until_warm(timeout_s=60)
                        rlm = RLM(
                            model=model.model,
                            client=model,
                            sandbox=config,
                            pool=pool if arrangement == "warm pool" else None,
                        )
                        rlm._overlap_start = arrangement != "before"
                        result = rlm.completion(haystack.text, NIAH_QUERY)
                    if result.answer != haystack.magic_number:
                        raise RuntimeError(
                            f"NIAH ({arrangement}, {delay} s) answered {result.answer!r}: {result.error}"
                        )
                    walls.append(result.elapsed_s)
                    waits.append(model.wait_s)
                    shares.append((result.elapsed_s - model.wait_s) / result.elapsed_s)
                    exposed.append(result.timings.sandbox_wait_s)
                results[f"{runtime}, {delay * 1000:.0f} ms/call, {arrangement}"] = {
                    "wall_s_p50": round(statistics.median(walls), 3),
                    "model_wait_s_p50": round(statistics.median(waits), 3),
                    "runtime_share_p50": round(statistics.median(shares), 3),
                    "runtime_share_max": round(max(shares), 3),
                    "start_waited_s_p50": round(statistics.median(exposed), 3),
                }
    return results
