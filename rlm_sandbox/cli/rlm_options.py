"""The options of the commands that run an RLM (run, chat, niah, eval), and the RLM they make.

`_add_rlm_options` defines the model, limit, sandbox and output options; `_rlm_settings`
turns them into limits, a model client and a sandbox; `_complete` runs one completion
with them, and `_summary_table` shows how it went.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..errors import InputError
from ..sandbox.config import SandboxConfig
from .arguments import _add_runtime, _price, _seconds, _usd, _whole
from .output import EXIT_INTERRUPTED, _Exit, err

if TYPE_CHECKING:
    from ..limits import Limits
    from ..rlm import RLM, RLMResult


def _add_rlm_options(parser: argparse.ArgumentParser, *, per: str = "run", log_dir: str | None = "rlm_logs") -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="gpt-5-mini", help="root model")
    model.add_argument("--sub-model", default=None, help="model for llm_query (default: --model)")
    model.add_argument(
        "--base-url",
        default=None,
        help="any OpenAI-compatible endpoint: vLLM, llama.cpp, Ollama... (default: OPENAI_BASE_URL, else OpenAI)",
    )
    model.add_argument(
        "--provider",
        choices=("openai", "litellm"),
        default="openai",
        help="openai: the openai SDK, any OpenAI-compatible endpoint; litellm: providers' native APIs through "
        "LiteLLM, --model as LiteLLM names it (anthropic/claude-sonnet-4-5); needs rlm-sandbox[litellm]",
    )
    model.add_argument(
        "--demo",
        action="store_true",
        help="use the built-in scripted demo model instead of an API (it knows the demo tasks only)",
    )
    model.add_argument(
        "--price",
        type=_price,
        action="append",
        metavar="MODEL=IN,OUT",
        help="a model's price in USD per million input and output tokens; repeat for more models "
        "(default: the built-in price list)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-depth", type=_whole(1), default=1, help="1: llm_query only; N: rlm_query nests N-1 levels"
    )
    limits.add_argument("--max-iterations", type=_whole(1), default=20, help="root-model turns per RLM node")
    limits.add_argument(
        "--max-llm-calls",
        type=_whole(1),
        default=None,
        help=f"model calls in the whole {per}, every node and sub-call included (default: unlimited)",
    )
    limits.add_argument(
        "--max-tokens",
        type=_whole(1),
        default=None,
        help=f"input + output tokens summed over the whole {per}: a total, not a per-call cap (default: unlimited)",
    )
    limits.add_argument(
        "--max-output-tokens",
        type=_whole(0),
        default=8192,
        metavar="N",
        help="cap on every model reply, root turns and sub-calls (0: the server's default)",
    )
    limits.add_argument(
        "--max-cost",
        type=_usd,
        default=None,
        metavar="USD",
        help=f"dollars for the whole {per}; refused for a model without a known price unless --price gives one "
        "(default: unlimited)",
    )
    limits.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help=f"wall clock for the whole {per} (default: none)",
    )
    limits.add_argument("--exec-timeout", type=_seconds, default=60, metavar="S", help="per code block")
    sandbox = parser.add_argument_group("sandbox")
    _add_runtime(sandbox)
    sandbox.add_argument(
        "--no-sandbox", action="store_true", help="run model code as a local process (isolates nothing)"
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--log-dir",
        default=log_dir,
        metavar="DIR",
        help="write trajectories (JSONL, for `rlm-sandbox view`) here" + ("" if log_dir else " (default: none kept)"),
    )
    output.add_argument("-v", "--verbose", action="store_true", help="show every turn live")
    output.add_argument(
        "--json",
        action="store_true",
        help="print the whole result as JSON on stdout (ASCII only, so it stays valid JSON whatever the text holds)",
    )


def _prices(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    return dict(getattr(args, "price", None) or [])


def _check_prices(args: argparse.Namespace, models: list[str]) -> None:
    """Refuse a --max-cost that could not be enforced; say so when costs will not be counted."""
    from ..evals.config import price_table
    from ..lm import lookup_price

    table = price_table(_prices(args))
    unpriced = sorted({model for model in models if lookup_price(model, table) is None})
    if not unpriced:
        return
    names = ", ".join(unpriced)
    if args.max_cost is not None:
        raise InputError(
            f"--max-cost cannot be enforced: no price is known for {names}",
            f"give its prices with --price {unpriced[0]}=IN,OUT in USD per million input and output tokens, "
            "or drop --max-cost",
        )
    err.print(
        f"[yellow]note:[/yellow] no price is known for {escape(names)}, so its cost is not counted "
        f"(--price {escape(unpriced[0])}=IN,OUT adds one)",
        soft_wrap=True,
    )


def _rlm_settings(
    args: argparse.Namespace, *, demo_without_key: bool = False
) -> tuple[Limits, Any, str, bool | SandboxConfig]:
    """(limits, client, model name, sandbox) from the shared model/limit/sandbox flags.

    The scripted demo model runs only with --demo, or, for `niah` (which is the demo),
    when there is no API key; a banner says so.
    """
    from ..errors import MissingAPIKeyError
    from ..limits import Limits
    from ..providers import client_for
    from ..scripted import SCRIPTED_MODEL, ScriptedDemoModel

    if args.demo and args.base_url:
        raise InputError(
            "--demo and --base-url contradict each other", "--demo uses the built-in scripted model; drop one"
        )
    limits = Limits(
        max_depth=args.max_depth,
        max_iterations=args.max_iterations,
        max_llm_calls=args.max_llm_calls,
        max_tokens=args.max_tokens,
        max_cost_usd=args.max_cost,
        timeout_s=args.timeout,
        exec_timeout_s=args.exec_timeout,
        max_output_tokens=args.max_output_tokens or None,
    )
    client: Any = None
    if not args.demo:
        from ..evals.config import price_table

        try:
            client = client_for(
                args.provider, args.model, base_url=args.base_url, api_key=None, prices=price_table(_prices(args))
            )
            model = args.model
        except MissingAPIKeyError:
            if not demo_without_key:
                raise InputError(
                    "no API key for the model",
                    "set OPENAI_API_KEY (with --provider litellm: the provider's own, e.g. ANTHROPIC_API_KEY) or put "
                    "it in .env, give --base-url for a local OpenAI-compatible server, "
                    "or pass --demo for the built-in scripted model",
                ) from None
    if client is None:
        reason = "--demo" if args.demo else "No API key (OPENAI_API_KEY, .env) and no --base-url"
        err.print(
            Panel(
                f"{reason}: using a built-in scripted model that writes the code a capable model would write. "
                "Set a key or --base-url for a real model.",
                title="no model: scripted demo",
                style="yellow",
            )
        )
        client, model = ScriptedDemoModel(), SCRIPTED_MODEL
    else:
        _check_prices(args, [model, args.sub_model or model])
    if args.no_sandbox:
        err.print(Panel("--no-sandbox: model-written code runs on this machine with no isolation.", style="bold red"))
        warnings.filterwarnings("ignore", message="LocalSandbox runs model-written code")
        sandbox: bool | SandboxConfig = False
    else:
        sandbox = SandboxConfig(runtime=args.runtime, exec_timeout_s=args.exec_timeout)
    return limits, client, model, sandbox


class _RunWatch:
    """A trajectory listener: which file the run logs to, and how many sandboxes were restarted."""

    def __init__(self, log_dir: str | None) -> None:
        self.log_dir = log_dir
        self.run_id: str | None = None
        self.restarts = 0

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") == "metadata" and self.run_id is None:
            self.run_id = event.get("run_id")
        elif event.get("type") == "exec" and event.get("restarted"):
            self.restarts += 1

    @property
    def trajectory_path(self) -> str | None:
        if self.log_dir is None or self.run_id is None:
            return None
        return str(Path(self.log_dir) / f"rlm-{self.run_id}.jsonl")


def _make_rlm(args: argparse.Namespace, *, demo_without_key: bool = False) -> tuple[RLM, _RunWatch]:
    """An RLM from the shared model/limit/sandbox flags, and the watch on its run."""
    from ..rlm import RLM

    limits, client, model, sandbox = _rlm_settings(args, demo_without_key=demo_without_key)
    watch = _RunWatch(args.log_dir)
    rlm = RLM(
        model=model,
        sub_model=args.sub_model,
        client=client,
        sandbox=sandbox,
        limits=limits,
        log_dir=args.log_dir,
        verbose=args.verbose,
        listeners=[watch],
    )
    return rlm, watch


def _complete(
    args: argparse.Namespace, context: Any, query: str, *, demo_without_key: bool = False, output: Any = None
) -> tuple[RLMResult, _RunWatch]:
    """Run one completion; on Ctrl-C say so, and where the trajectory so far is, then exit 130."""
    rlm, watch = _make_rlm(args, demo_without_key=demo_without_key)
    try:
        return rlm.completion(context, query, output=output), watch
    except KeyboardInterrupt:
        where = watch.trajectory_path
        kept = f"the trajectory so far is in {where}" if where else "no trajectory was kept (--log-dir keeps one)"
        err.print(f"[yellow]interrupted[/yellow]: {escape(kept)}", soft_wrap=True)
        raise _Exit(EXIT_INTERRUPTED) from None


def _summary_table(result: RLMResult, extra: dict[str, str] | None = None, restarts: int = 0) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    colour = "green" if result.stop_reason == "final" else "yellow"
    rows = {
        "stop reason": f"[{colour}]{result.stop_reason}[/{colour}]",
        "turns": str(result.iterations),
        "wall time": f"{result.elapsed_s:.2f} s",
        "waiting for models": f"{result.timings.model_s:.2f} s",
        "sandbox (start + exec)": f"{result.timings.sandbox_start_s + result.timings.exec_s:.2f} s "
        f"({result.sandboxes_started} sandbox{'es' if result.sandboxes_started != 1 else ''}"
        + (f", {restarts} restarted" if restarts else "")
        + ")",
        "model calls": str(result.usage.total.calls),
        "tokens in / out": f"{result.usage.total.input_tokens:,} / {result.usage.total.output_tokens:,}",
        "cost": f"${result.usage.total.cost_usd:.4f}",
    }
    total = result.usage.total
    if total.cached_input_tokens or total.reasoning_tokens:
        rows["cached in / reasoning out"] = f"{total.cached_input_tokens:,} / {total.reasoning_tokens:,}"
    if result.trajectory_path:
        rows["trajectory"] = escape(result.trajectory_path)
    if result.error:
        rows["error"] = f"[red]{escape(result.error)}[/red]"
    rows.update(extra or {})
    for key, value in rows.items():
        table.add_row(f"[bold]{key}[/bold]", value)
    return table
