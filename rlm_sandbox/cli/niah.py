"""`niah`: the demo, a needle in a haystack of about a million lines."""

from __future__ import annotations

import argparse
import time

from rich.markup import escape

from .arguments import _whole
from .output import _write_json, err, out
from .rlm_options import _add_rlm_options, _complete, _summary_table


def cmd_niah(args: argparse.Namespace) -> int:
    from ..evals.niah import NIAH_QUERY, make_haystack

    started = time.monotonic()
    haystack = make_haystack(args.lines, seed=args.seed)
    err.print(
        f"haystack: {haystack.lines:,} lines, {len(haystack.text) / 1e6:.1f} MB, "
        f"made in {time.monotonic() - started:.2f} s; the needle is on line {haystack.needle_line:,}"
    )
    result, watch = _complete(args, haystack.text, NIAH_QUERY, demo_without_key=True)
    found = (result.answer or "").strip() == haystack.magic_number
    mark = "[green]✓ found[/green]" if found else "[red]✗ not found[/red]"
    if args.json:
        _write_json(result.model_dump(mode="json") | {"expected": haystack.magic_number, "found": found})
    else:
        err.print(_summary_table(result, {"expected": haystack.magic_number, "check": mark}, restarts=watch.restarts))
        out.print(f"magic number: [bold]{escape(result.answer or '(none)')}[/bold] {mark}")
    return 0 if found else 1


def _add_niah(commands: argparse._SubParsersAction) -> None:
    niah = commands.add_parser(
        "niah",
        help="needle in a haystack: find a magic number in ~1M lines of noise",
        description="The demo: without an API key it uses the built-in scripted model (as --demo does).",
    )
    niah.add_argument("--lines", type=_whole(1), default=1_000_000, help="lines of noise")
    niah.add_argument("--seed", type=int, default=None, help="seed of the haystack (default: random)")
    _add_rlm_options(niah)
    niah.set_defaults(handler=cmd_niah)
