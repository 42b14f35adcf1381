"""`python -m benchmarks.page_load [--events N ...] [--repeat R]`

How long the trajectory page takes to open in a real browser (Debian's chromium,
headless), for synthetic trajectories of N events shaped like real runs: a root node
whose code fans out batches of llm_query and rlm_query, child nodes with their own
turns, errors, truncated outputs and an event type the page does not know.

The page stamps `data-ready-ms` on <body> when its first view is drawn: milliseconds
from the start of navigation (reading the file, parsing the HTML and the JSON, running
the script, building the DOM). Prints a table to stderr and JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "of",
    "needle",
    "haystack",
    "line",
    "number",
    "magic",
    "context",
    "chunk",
    "answer",
    "model",
    "found",
    "value",
    "search",
]


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def synthetic_trajectory(n_events: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """About `n_events` events of a depth-2 run with wide batches, in emission order."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = [
        {
            "type": "metadata", "t": 0.0, "run_id": f"synthetic-{n_events}", "model": "gpt-5-mini",
            "sub_model": "gpt-5-nano", "query": "What is the magic number hidden in the context?",
            "context": {"type_name": "str", "total_chars": 48_000_000, "chunk_lengths": [48_000_000]},
            "limits": {"max_depth": 2, "max_iterations": 30},
        }
    ]  # fmt: skip
    clock = [0.0]
    next_node = [0]

    def emit(event: dict[str, Any]) -> None:
        events.append(event)

    def run_node(parent: int | None, depth: int, budget: int) -> None:
        node = next_node[0]
        next_node[0] += 1
        emit({"type": "node_start", "t": round(clock[0], 6), "node": node, "parent": parent, "depth": depth,
              "query": _prose(rng, 30)})  # fmt: skip
        spent = 1
        turn = 0
        while spent < budget - 2:
            turn += 1
            duration = rng.uniform(0.5, 3.0)
            clock[0] += duration
            code = (
                f"chunks = [context[i:i + 100_000] for i in range(0, len(context), 100_000)]\n"
                f"# turn {turn}: ask about each chunk\n"
                f"answers = llm_query_batched([f'Find the magic number in: {{c}}' for c in chunks[:{turn * 8}]])\n"
                f"print(len(answers), answers[:3])"
            )
            emit({"type": "model_call", "t": round(clock[0], 6), "node": node, "depth": depth, "iteration": turn,
                  "model": "gpt-5-mini", "input_tokens": rng.randint(2000, 30000), "output_tokens": rng.randint(100, 900),
                  "cost_usd": rng.uniform(0.001, 0.02), "duration_s": round(duration, 6),
                  "prompt": "Output:\n" + _prose(rng, 60), "response": _prose(rng, 40) + "\n```repl\n" + code + "\n```\n"})  # fmt: skip
            spent += 1
            exec_start = clock[0]
            batch = min(rng.randint(4, 40), max(0, budget - spent - 2))
            ends = []
            for index in range(batch):
                begin = exec_start + rng.uniform(0.0, 0.3) + index * 0.02
                if depth == 0 and index % 10 == 3 and budget - spent > 30:
                    saved = clock[0]
                    clock[0] = begin
                    child_budget = min(40, budget - spent - 3)
                    before = len(events)
                    run_node(node, depth + 1, child_budget)
                    spent += len(events) - before
                    emit({"type": "sub_call", "t": round(clock[0], 6), "kind": "rlm", "node": node, "depth": depth,
                          "stop_reason": "final", "prompt_chars": 100_000, "duration_s": round(clock[0] - begin, 6),
                          "error": None})  # fmt: skip
                    ends.append(clock[0])
                    clock[0] = saved
                else:
                    length = rng.uniform(0.3, 4.0)
                    failed = rng.random() < 0.02
                    emit({"type": "sub_call", "t": round(begin + length, 6), "kind": "llm", "node": node,
                          "depth": depth, "model": "gpt-5-nano", "prompt_chars": 100_000,
                          "duration_s": round(length, 6),
                          "error": "LMError: the API answered 429 five times" if failed else None})  # fmt: skip
                    ends.append(begin + length)
                spent += 1
                if spent >= budget - 3:
                    break
            if rng.random() < 0.1:
                emit({"type": "tool_call", "t": round(exec_start + 0.2, 6), "node": node, "depth": depth,
                      "name": "web_search", "arguments": {"q": _prose(rng, 3)}, "duration_s": 0.15, "error": None})  # fmt: skip
                spent += 1
            clock[0] = max([exec_start + 0.05, *ends]) + 0.01
            error = "NameError: name 'chunk' is not defined" if rng.random() < 0.05 else None
            stdout = "\n".join(f"chunk {i}: {_prose(rng, 8)}" for i in range(rng.randint(1, 30)))
            truncated = rng.random() < 0.05
            if truncated:
                stdout += "[... 120,000 more characters not logged]"
            emit({"type": "exec", "t": round(clock[0], 6), "node": node, "depth": depth, "iteration": turn, "block": 0,
                  "code": code, "stdout": stdout, "stderr": "", "error": error, "final": None, "timed_out": False,
                  "restarted": False, "truncated": truncated, "duration_s": round(clock[0] - exec_start, 6)})  # fmt: skip
            spent += 1
        clock[0] += 0.5
        emit({"type": "node_end", "t": round(clock[0], 6), "node": node, "answer": str(rng.randint(1000, 9999)),
              "stop_reason": "final", "iterations": turn, "error": None})  # fmt: skip

    run_node(None, 0, n_events - 2)
    total = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for event in events:
        if event["type"] == "model_call":
            total["calls"] += 1
            total["input_tokens"] += event["input_tokens"]
            total["output_tokens"] += event["output_tokens"]
            total["cost_usd"] += event["cost_usd"]
    events.append(
        {
            "type": "result", "t": round(clock[0], 6), "answer": "4817", "stop_reason": "final",
            "usage": {"models": {"gpt-5-mini": total}, "total": total}, "iterations": 12,
            "elapsed_s": round(clock[0], 3), "error": None,
            "timings": {"model_s": 0.0, "exec_s": 0.0, "sandbox_start_s": 0.0}, "sandboxes_started": next_node[0],
        }
    )  # fmt: skip
    return events


# ------------------------------------------------------------------ the browser


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserRun:
    def __init__(self, dom: str, console: list[str]) -> None:
        self.dom = dom
        self.console = console
        """The page's console messages (uncaught errors, CSP violations)."""


def run_chromium(
    page: Path, *, screenshot: Path | None = None, size: str = "1400,1000", budget_ms: int = 5000, fragment: str = ""
) -> BrowserRun:
    """Open `page` headless; return the DOM after its script ran (or save a screenshot)."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("no chromium on PATH: install Debian's `chromium` package")
    with tempfile.TemporaryDirectory(prefix="rlm-chromium-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--window-size={size}", "--enable-logging=stderr", "--v=0",
        ]  # fmt: skip
        if budget_ms:
            # Lets timers (a search from the link) run before the DOM is taken. The page's
            # clock runs on virtual time then, so timing runs pass budget_ms=0.
            command.append(f"--virtual-time-budget={budget_ms}")
        if screenshot is not None:
            command.append(f"--screenshot={screenshot}")
        else:
            command.append("--dump-dom")
        command.append(page.resolve().as_uri() + fragment)
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserRun(done.stdout, console)


def ready_ms(dom: str) -> int | None:
    match = re.search(r'data-ready-ms="(\d+)"', dom)
    return int(match.group(1)) if match else None


def measure(n_events: int, repeat: int) -> dict[str, Any]:
    from rlm_sandbox.pages import trajectory_page

    events = synthetic_trajectory(n_events)
    with tempfile.TemporaryDirectory(prefix="rlm-page-") as folder:
        page = Path(folder) / "page.html"
        page.write_text(trajectory_page(events), encoding="utf-8")
        size = page.stat().st_size
        times = []
        for _ in range(repeat):
            value = ready_ms(run_chromium(page, budget_ms=0).dom)
            if value is None:
                raise RuntimeError("the page never said it was drawn")
            times.append(value)
    return {
        "events": len(events),
        "page_mb": round(size / 1e6, 2),
        "p50_ms": statistics.median(times),
        "max_ms": max(times),
        "runs": repeat,
    }


def rows(sizes: list[int], repeat: int) -> dict[str, Any]:
    """For `python -m benchmarks`: one row per size, or why it could not run."""
    if find_chromium() is None:
        return {"unavailable": "no chromium on PATH: install Debian's `chromium` package"}
    return {f"{n:,} events": measure(n, repeat) for n in sizes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [measure(n, args.repeat) for n in args.events]
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trajectory page: ms from navigation to first view (headless chromium)", title_justify="left")
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console(stderr=True).print(table)
    sys.stdout.write(json.dumps({"page_load": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
