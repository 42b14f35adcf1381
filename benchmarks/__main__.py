"""`python -m benchmarks [--quick] [--out FILE] [--only NAME ...]`

Runs each measurement side by side on this machine, prints a rich table per
measurement to stderr and the whole result as JSON to stdout (or --out).
--quick takes few samples and small sizes: it proves the benchmark works (CI), the
numbers it prints are not for quoting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from . import hostcalls, measures, page_load
from .big_context import big_context_load
from .runtime_share import runtime_share

console = Console(stderr=True, highlight=False)

FULL = {
    "repeat": 200,
    "docker_exec_repeat": 30,
    "start_repeat": 10,
    "sizes_mb": [1, 100, 1024],
    "idle": 32,
    "niah_lines": 1_000_000,
    "niah_repeat": 3,
    "rlms_repeat": 100,
    "rlms_start_repeat": 10,
    "big_sizes_mb": [1024, 2048],
    "page_events": [1000, 10_000, 50_000],
    "page_repeat": 5,
}
QUICK = {
    "repeat": 20,
    "docker_exec_repeat": 3,
    "start_repeat": 2,
    "sizes_mb": [1, 10],
    "idle": 2,
    "niah_lines": 20_000,
    "niah_repeat": 1,
    "rlms_repeat": 10,
    "rlms_start_repeat": 2,
    "big_sizes_mb": [16],
    "page_events": [1000],
    "page_repeat": 1,
}


def plan(settings: dict, runtimes: list[str]) -> dict:
    kinds = [*runtimes, "local"]
    return {
        "exec_round_trip": lambda: measures.exec_round_trip(kinds, settings["repeat"], settings["docker_exec_repeat"]),
        "llm_query_round_trip": lambda: measures.llm_round_trip(kinds, settings["repeat"]),
        "sandbox_start": lambda: measures.sandbox_start(kinds, settings["start_repeat"]),
        "context_load": lambda: measures.context_load(kinds, settings["sizes_mb"]),
        "big_context_load": lambda: big_context_load(runtimes, settings["big_sizes_mb"]),
        "idle_memory": lambda: measures.idle_memory(runtimes, settings["idle"]),
        "niah_end_to_end": lambda: measures.niah_end_to_end(kinds, settings["niah_lines"], settings["niah_repeat"]),
        "runtime_share": lambda: runtime_share(
            runtimes[0] if runtimes else "runc", settings["niah_lines"], settings["niah_repeat"]
        ),
        # rlms' DockerREPL runs a fresh interpreter per cell (~0.3 s), hence its own, smaller counts.
        "threaded_fan_out": lambda: hostcalls.threaded_fan_out(
            kinds, concurrencies=(8,) if settings is QUICK else (4, 8, 16)
        ),
        "tool_round_trip": lambda: hostcalls.tool_round_trip(kinds, settings["repeat"]),
        "rlms_comparison": lambda: measures.rlms_docker_repl(settings["rlms_repeat"], settings["rlms_start_repeat"]),
        "trajectory_page": lambda: page_load.rows(settings["page_events"], settings["page_repeat"]),
    }


def show(name: str, rows: dict, seconds: float) -> None:
    if isinstance(rows.get("unavailable"), str):
        console.print(f"{name}: [yellow]unavailable[/yellow]: {rows['unavailable']}", soft_wrap=True)
        return
    # Rows carrying text (e.g. "rlms setup") are notes: printed under the table, not as columns.
    notes = {variant: values for variant, values in rows.items() if any(isinstance(v, str) for v in values.values())}
    rows = {variant: values for variant, values in rows.items() if variant not in notes}
    columns: list[str] = []
    for values in rows.values():
        for key in values:
            if key not in columns:
                columns.append(key)
    table = Table(title=f"{name}  ({seconds:.1f} s)", title_justify="left")
    table.add_column("variant")
    for column in columns:
        table.add_column(column, justify="right")
    # Any table of latencies with our runc sandbox in it gets ratios against it.
    floor = rows.get("runc sandbox", {}).get("p50_ms")
    if floor:
        table.add_column("p50 vs runc", justify="right")
    for variant, values in rows.items():
        cells = [str(values.get(column, "")) for column in columns]
        if floor:
            cells.append(f"{values['p50_ms'] / floor:.2f}x" if "p50_ms" in values else "")
        table.add_row(variant, *cells)
    console.print(table)
    for variant, values in notes.items():
        console.print(f"  {variant}: " + "; ".join(f"{key}={value}" for key, value in values.items()), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples, small sizes (for CI)")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    parser.add_argument("--only", nargs="*", help="run only these measurements")
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else FULL
    runtimes = measures.available_runtimes()
    steps = plan(settings, runtimes)
    chosen = args.only or list(steps)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": measures.machine(),
        "settings": settings,
        "results": {},
    }
    for name in chosen:
        started = time.monotonic()
        with console.status(f"measuring {name}…"):
            rows = steps[name]()
        report["results"][name] = rows
        show(name, rows, time.monotonic() - started)
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
