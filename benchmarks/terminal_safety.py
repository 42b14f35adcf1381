"""`python -m benchmarks.terminal_safety [--quick]`: what showing untrusted text safely costs.

Only terminal output pays for `terminal.visible` (the model and sandbox round trips never
write to a terminal); `contexts.check_context` runs once per context load, beside the
JSON encoding it guards, which is measured alongside for scale. Prints JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import time

from rich.text import Text

from rlm_sandbox.contexts import check_context
from rlm_sandbox.terminal import SafeConsole, visible


def _best(operation, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes: proves it runs, not for quoting")
    quick = parser.parse_args().quick
    scale = 10 if quick else 1
    clean = "lorem ipsum dolor sit amet\n" * (4_000_000 // scale)
    hostile = ("text \x1b]0;title\x07 more \x9b2J\n") * (400_000 // scale)
    lines = [f"line {i} of the context" for i in range(5_000_000 // scale)]
    records = [{"id": i, "text": "abc", "tags": ["x", "y"]} for i in range(1_000_000 // scale)]
    panel_text = Text(hostile[:50_000])
    console = SafeConsole(file=io.StringIO(), force_terminal=True, width=200)
    result = {
        "visible_clean_MB_per_s": len(clean) / 1e6 / _best(lambda: visible(clean)),
        "visible_hostile_MB_per_s": len(hostile) / 1e6 / _best(lambda: visible(hostile)),
        "safe_console_50k_chars_ms": 1000 * _best(lambda: console.print(panel_text)),
        "check_context_list_of_str_s": _best(lambda: check_context(lines)),
        "json_dumps_list_of_str_s": _best(lambda: json.dumps(lines, ensure_ascii=False)),
        "check_context_list_of_dicts_s": _best(lambda: check_context(records)),
        "json_dumps_list_of_dicts_s": _best(lambda: json.dumps(records, ensure_ascii=False)),
        "items": {"str_lines": len(lines), "dict_records": len(records), "clean_chars": len(clean)},
        "quick": quick,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
