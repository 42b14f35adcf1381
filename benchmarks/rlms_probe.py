"""Times rlms' DockerREPL on benchmark items 1-3; prints one JSON object on stdout.

Runs inside .venv-rlms (rlms + stdlib only; rlm_sandbox is not installed there):
`python benchmarks/rlms_probe.py --repeat N --start-repeat M`. The caller sets
RLM_DOCKER_WORKSPACE_DIR to a fresh directory, so every container this starts has a
bind mount from it and can be found and removed even if this process is killed.

The LM behind llm_query is rlms' own LMHandler with a client that answers "pong" at
once, the same zero-latency handler our own measurement uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from rlm.clients.base_lm import BaseLM
from rlm.core.lm_handler import LMHandler
from rlm.core.types import ModelUsageSummary, UsageSummary
from rlm.environments.docker_repl import DockerREPL


def summarize(samples_s: list[float]) -> dict[str, float]:
    """Same as benchmarks.measures.summarize (copied: that package is not importable here)."""
    ordered = sorted(samples_s)
    p95_index = min(len(ordered) - 1, max(0, round(0.95 * (len(ordered) - 1))))
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p95_ms": round(ordered[p95_index] * 1000, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 4),
    }


class PongLM(BaseLM):
    def __init__(self) -> None:
        super().__init__(model_name="pong")
        self.calls = 0

    def completion(self, prompt):
        self.calls += 1
        return "pong"

    async def acompletion(self, prompt):
        return self.completion(prompt)

    def get_usage_summary(self) -> UsageSummary:
        return UsageSummary(model_usage_summaries={self.model_name: self.get_last_usage()})

    def get_last_usage(self) -> ModelUsageSummary:
        return ModelUsageSummary(total_calls=self.calls, total_input_tokens=0, total_output_tokens=0)


def run_cell(repl: DockerREPL, code: str):
    result = repl.execute_code(code)
    if result.stderr.strip():
        raise RuntimeError(f"cell {code[:40]!r} failed in DockerREPL: {result.stderr.strip()[-500:]}")
    return result


# Same loop as our llm_query measurement, timed inside the container; all samples
# are printed so they are summarized here exactly like ours.
LLM_LOOP = """
import time, json
samples = []
for _ in range({n}):
    t = time.perf_counter()
    reply = llm_query("ping")
    samples.append(time.perf_counter() - t)
    if reply != "pong":
        raise RuntimeError("llm_query returned " + repr(reply))
print(json.dumps(samples))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, required=True)
    parser.add_argument("--start-repeat", type=int, required=True)
    parser.add_argument("--image", default="python:3.11-slim")
    args = parser.parse_args()

    results = {}
    with LMHandler(PongLM()) as handler:
        # 3. start (cold): proxy + `docker run` + in-container `pip install` + import check.
        samples = []
        for _ in range(args.start_repeat):
            started = time.perf_counter()
            repl = DockerREPL(image=args.image, lm_handler_address=handler.address)
            samples.append(time.perf_counter() - started)
            repl.cleanup()
        start = summarize(samples)

        with DockerREPL(image=args.image, lm_handler_address=handler.address) as repl:
            # 1. trivial cell round trip, warm-up 3 as in ours.
            for _ in range(3):
                run_cell(repl, "x = 1")
            samples = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                run_cell(repl, "x = 1")
                samples.append(time.perf_counter() - started)
            results["rlms DockerREPL exec"] = summarize(samples)

            # 2. llm_query: sandbox code -> host proxy -> LMHandler -> back.
            run_cell(repl, LLM_LOOP.format(n=10))
            samples = json.loads(run_cell(repl, LLM_LOOP.format(n=args.repeat)).stdout.strip().splitlines()[-1])
            results["rlms DockerREPL llm_query"] = summarize(samples)
        results["rlms DockerREPL start"] = start
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
