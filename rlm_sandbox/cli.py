"""The `rlm-sandbox` command.

Each subcommand is one `cmd_*` function taking the parsed arguments and returning the
exit code, registered in `build_parser`. Modules that talk to Docker are imported
inside the functions, so `--help` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from .errors import LMError, RLMSandboxError
from .sandbox.config import SandboxConfig

if TYPE_CHECKING:
    from .sandbox.base import Sandbox
    from .sandbox.hardening import HardeningCheck

RUNTIMES = ("runc", "runsc")

# Colour only where it carries meaning (pass/fail/warning): no automatic highlighting.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _no_model(prompts: list[str], model: str | None) -> list[str]:
    raise LMError("no model configured: `rlm-sandbox exec` runs code only, so llm_query is unavailable")


def _status(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[red]FAIL[/red]"


# ------------------------------------------------------------------ image build


def cmd_image_build(args: argparse.Namespace) -> int:
    from .sandbox.docker import docker_client
    from .sandbox.image import build_image, image_is_current, image_tag

    client = docker_client()
    if not args.force and image_is_current(client, base_image=args.base, bootstrap=args.bootstrap):
        tag = image_tag()
        err.print(f"{tag} is up to date")
    else:
        tag = build_image(
            client,
            base_image=args.base,
            bootstrap=args.bootstrap,
            fallback_bootstrap=args.fallback_bootstrap,
            console=err,
        )
    # The tag alone on stdout, for scripts.
    out.print(tag)
    return 0


# ------------------------------------------------------------------ gc


def cmd_gc(args: argparse.Namespace) -> int:
    from .sandbox.docker import docker_client, reap_stale_containers

    removed = reap_stale_containers(docker_client(), include_live=args.all)
    if removed:
        table = Table("removed container")
        for container_id in removed:
            table.add_row(container_id[:12])
        out.print(table)
    which = "sandbox containers" if args.all else "stale sandbox containers"
    out.print(f"removed {len(removed)} {which}")
    return 0


# ------------------------------------------------------------------ doctor


def _hardening_table(checks: list[HardeningCheck], runtime: str) -> Table:
    table = Table("control", "expected", "observed", "result", title=f"hardening inside the sandbox ({runtime})")
    for check in checks:
        if check.ok:
            result = _status(True)
        elif check.informational:
            result = "[yellow]n/a[/yellow]"
        else:
            result = _status(False)
        table.add_row(check.name, escape(check.expected), escape(check.observed), result)
    return table


def _probe_sandbox(config: SandboxConfig) -> tuple[list[HardeningCheck], float]:
    from .sandbox.docker import DockerSandbox
    from .sandbox.hardening import probe_hardening

    started = time.monotonic()
    with DockerSandbox(config, llm_handler=_no_model) as sandbox:
        start_s = time.monotonic() - started
        return probe_hardening(sandbox, config), start_s


def cmd_doctor(args: argparse.Namespace) -> int:
    from .sandbox.docker import docker_client
    from .sandbox.image import image_exists, image_tag

    setup = Table("check", "result", "detail", title="rlm-sandbox doctor")
    try:
        client = docker_client()
    except RLMSandboxError as exc:
        setup.add_row("docker daemon", _status(False), escape(str(exc)))
        out.print(setup)
        return 1
    version = client.version()
    setup.add_row(
        "docker daemon",
        _status(True),
        f"Docker {version.get('Version')} (API {version.get('ApiVersion')}), {version.get('Os')}/{version.get('Arch')}",
    )
    tag = image_tag()
    has_image = image_exists(client, tag)
    setup.add_row("sandbox image", _status(has_image), tag if has_image else "missing: run rlm-sandbox image build")
    runtimes = sorted(client.info().get("Runtimes") or {})
    has_runtime = args.runtime in runtimes
    hint = "" if has_runtime else f"; {args.runtime} is not registered in /etc/docker/daemon.json"
    setup.add_row(f"runtime {args.runtime}", _status(has_runtime), ", ".join(runtimes) + hint)
    if not (has_image and has_runtime):
        out.print(setup)
        return 1

    config = SandboxConfig(runtime=args.runtime)
    try:
        checks, start_s = _probe_sandbox(config)
    except RLMSandboxError as exc:
        setup.add_row("sandbox", _status(False), escape(str(exc)))
        out.print(setup)
        return 1
    setup.add_row("sandbox", _status(True), f"started and probed in {start_s:.1f} s")
    out.print(setup)
    out.print(_hardening_table(checks, args.runtime))
    if any(check.informational and not check.ok for check in checks):
        out.print(
            "n/a: gVisor does not show these inside the sandbox; it filters system calls itself, "
            "and the host's cgroup limits apply to the sandbox as a whole"
        )
    failed = [check.name for check in checks if check.failed]
    if failed:
        out.print(f"[red]{len(failed)} control(s) not in effect:[/red] {', '.join(failed)}")
        return 1
    out.print("[green]all hardening controls in effect[/green]")
    return 0


# ------------------------------------------------------------------ audit


def cmd_audit(args: argparse.Namespace) -> int:
    """Run every attack case against a runtime; a table of case, expected, observed, pass; exit 1 on any miss."""
    import logging

    from .audit import run_audit

    # Each protocol attack is logged as a warning when refused; the table says it better.
    logging.getLogger("rlm_sandbox").setLevel(logging.ERROR)
    err.print(f"attacking a {args.runtime} sandbox with model-written code...")
    report = run_audit(args.runtime, console=err)
    if args.json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        table = Table("case", "category", "expected", "observed", "pass", title=f"rlm-sandbox audit ({args.runtime})")
        table.show_lines = True
        for outcome in report.outcomes:
            verdict = "[green]pass[/green]" if outcome.passed else "[red]MISS[/red]"
            table.add_row(outcome.name, outcome.category, escape(outcome.expected), escape(outcome.observed), verdict)
        out.print(table, width=max(out.width, 160))
    colour = "green" if report.ok else "red"
    (err if args.json else out).print(
        f"[{colour}]{report.passed} of {len(report.outcomes)} passed, {report.failed} missed[/{colour}] "
        f"({args.runtime}, {report.duration_s:.0f} s)"
    )
    return 0 if report.ok else 1


# ------------------------------------------------------------------ exec


def _open_sandbox(args: argparse.Namespace) -> Sandbox:
    config = SandboxConfig(runtime=args.runtime)
    if args.no_sandbox:
        from .sandbox.local import IsolationWarning, LocalSandbox

        err.print(
            Panel(
                "--no-sandbox: this code runs as a plain process on this machine, with your "
                "user's rights, files and network. Nothing is isolated.",
                title="WARNING",
                style="bold red",
            )
        )
        # The banner above says it louder than the warning would.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IsolationWarning)
            return LocalSandbox(config, llm_handler=_no_model)
    from .sandbox.docker import DockerSandbox

    return DockerSandbox(config, llm_handler=_no_model)


def cmd_exec(args: argparse.Namespace) -> int:
    with _open_sandbox(args) as sandbox:
        result = sandbox.execute(args.code, timeout_s=args.timeout)
    # The code's own output, byte for byte: no rich markup or wrapping applied.
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if result.truncated:
        err.print("[yellow]output truncated[/yellow]")
    if result.timed_out:
        err.print(f"[red]timed out after {result.duration_s:.1f} s[/red]")
    if result.error:
        err.print(f"[red]{escape(result.error)}[/red]", soft_wrap=True)
    return 1 if result.error or result.timed_out else 0


# ------------------------------------------------------------------ run / niah / view


def _rlm_settings(args: argparse.Namespace):
    """(limits, client, model name, sandbox) from the shared model/limit/sandbox flags.

    Without an API key or --base-url the client is the scripted demo model, and a banner says so.
    """
    from .errors import MissingAPIKeyError
    from .limits import Limits
    from .lm import OpenAIClient
    from .scripted import SCRIPTED_MODEL, ScriptedDemoModel

    limits = Limits(
        max_depth=args.max_depth,
        max_iterations=args.max_iterations,
        max_llm_calls=args.max_llm_calls,
        max_tokens=args.max_tokens,
        max_cost_usd=args.max_cost,
        timeout_s=args.timeout,
        exec_timeout_s=args.exec_timeout,
    )
    try:
        client = OpenAIClient(args.model, base_url=args.base_url, api_key=None)
        model = args.model
    except MissingAPIKeyError:
        err.print(
            Panel(
                "No API key (OPENAI_API_KEY, .env) and no --base-url: using a built-in scripted model that "
                "writes the code a capable model would write. Set a key or --base-url for a real model.",
                title="no model: scripted demo",
                style="yellow",
            )
        )
        client, model = ScriptedDemoModel(), SCRIPTED_MODEL
    if args.no_sandbox:
        err.print(Panel("--no-sandbox: model-written code runs on this machine with no isolation.", style="bold red"))
        warnings.filterwarnings("ignore", message="LocalSandbox runs model-written code")
        sandbox: bool | SandboxConfig = False
    else:
        sandbox = SandboxConfig(runtime=args.runtime, exec_timeout_s=args.exec_timeout)
    return limits, client, model, sandbox


def _make_rlm(args: argparse.Namespace):
    """An RLM from the shared model/limit/sandbox flags; the scripted demo model without a key."""
    from .rlm import RLM

    limits, client, model, sandbox = _rlm_settings(args)
    return RLM(
        model=model,
        sub_model=args.sub_model,
        client=client,
        sandbox=sandbox,
        limits=limits,
        log_dir=args.log_dir,
        verbose=args.verbose,
    )


def _summary_table(result, extra: dict[str, str] | None = None) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    colour = "green" if result.stop_reason == "final" else "yellow"
    rows = {
        "stop reason": f"[{colour}]{result.stop_reason}[/{colour}]",
        "turns": str(result.iterations),
        "wall time": f"{result.elapsed_s:.2f} s",
        "waiting for models": f"{result.timings.model_s:.2f} s",
        "sandbox (start + exec)": f"{result.timings.sandbox_start_s + result.timings.exec_s:.2f} s "
        f"({result.sandboxes_started} sandbox{'es' if result.sandboxes_started != 1 else ''})",
        "model calls": str(result.usage.total.calls),
        "tokens in / out": f"{result.usage.total.input_tokens:,} / {result.usage.total.output_tokens:,}",
        "cost": f"${result.usage.total.cost_usd:.4f}",
    }
    if result.trajectory_path:
        rows["trajectory"] = escape(result.trajectory_path)
    if result.error:
        rows["error"] = f"[red]{escape(result.error)}[/red]"
    rows.update(extra or {})
    for key, value in rows.items():
        table.add_row(f"[bold]{key}[/bold]", value)
    return table


def _read_context(source: str):
    import json
    from pathlib import Path

    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    if source.endswith(".json"):
        return json.loads(text)
    return text


def cmd_run(args: argparse.Namespace) -> int:
    context = _read_context(args.context)
    result = _make_rlm(args).completion(context, args.query)
    if args.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        err.print(_summary_table(result))
        sys.stdout.write((result.answer or "") + "\n")
    return 0 if result.stop_reason == "final" else 1


def cmd_niah(args: argparse.Namespace) -> int:
    from .evals.niah import NIAH_QUERY, make_haystack

    started = time.monotonic()
    haystack = make_haystack(args.lines, seed=args.seed)
    err.print(
        f"haystack: {haystack.lines:,} lines, {len(haystack.text) / 1e6:.1f} MB, "
        f"made in {time.monotonic() - started:.2f} s; the needle is on line {haystack.needle_line:,}"
    )
    result = _make_rlm(args).completion(haystack.text, NIAH_QUERY)
    found = (result.answer or "").strip() == haystack.magic_number
    mark = "[green]✓ found[/green]" if found else "[red]✗ not found[/red]"
    if args.json:
        payload = result.model_dump() | {"expected": haystack.magic_number, "found": found}
        import json

        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        err.print(_summary_table(result, {"expected": haystack.magic_number, "check": mark}))
        out.print(f"magic number: [bold]{escape(result.answer or '(none)')}[/bold] {mark}")
    return 0 if found else 1


def cmd_view(args: argparse.Namespace) -> int:
    from .trajectory import read_trajectory, trajectory_tree

    events = read_trajectory(args.file)
    if not events:
        err.print(f"[red]no events in {escape(args.file)}[/red]")
        return 1
    out.print(trajectory_tree(events))
    return 0


# ------------------------------------------------------------------ eval / report


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evals.junit import write_junit
    from .evals.progress import RichProgress
    from .evals.report import summarize, summary_table
    from .evals.runner import RunConfig, run_eval
    from .evals.suites import generate_suite, parse_size
    from .evals.tasks import load_tasks, write_tasks
    from .scripted import ScriptedDemoModel

    if args.tasks:
        tasks = load_tasks(args.tasks)
    else:
        sizes = [parse_size(size) for size in args.size.split(",") if size.strip()]
        names = [name.strip() for name in args.suite.split(",") if name.strip()]
        tasks = [task for name in names for task in generate_suite(name, args.n, sizes, seed=args.seed)]
    if args.write_tasks:
        count = write_tasks(tasks, args.write_tasks)
        err.print(f"wrote {count} task(s) to {escape(args.write_tasks)}")
        return 0
    limits, client, _, sandbox = _rlm_settings(args)
    scripted = isinstance(client, ScriptedDemoModel)
    if hasattr(client, "close"):
        client.close()  # each worker makes its own: on Ray they are other processes
    config = RunConfig(
        model=args.model,
        sub_model=args.sub_model,
        base_url=args.base_url,
        scripted=scripted,
        limits=limits,
        sandbox="local" if sandbox is False else "docker",
        runtime=args.runtime,
        log_dir=args.log_dir,
        verbose=args.verbose,
    )
    outcome = run_eval(
        tasks,
        config,
        out=args.out,
        concurrency=args.concurrency,
        retry_errors=args.retry_errors,
        progress=RichProgress(err, concurrency=args.concurrency),
        ray=args.ray is not None,
        ray_address=args.ray or None,
    )
    summary = summarize(outcome.results, total=outcome.total)
    if args.junit:
        write_junit(
            outcome.results,
            args.junit,
            unfinished=outcome.unfinished,
            properties={
                "fingerprint": outcome.fingerprint,
                **{k: json.dumps(v) if isinstance(v, dict) else v for k, v in config.identity().items()},
                "accuracy": f"{summary.accuracy:.4f}",
            },
        )
    if args.json:
        payload = summary.model_dump() | outcome.model_dump(exclude={"results"})
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        out.print(summary_table(summary, title=f"eval summary ({outcome.ran} run now, {outcome.resumed} resumed)"))
    if outcome.interrupted:
        where = (
            f"results are in {escape(args.out)}; run the same command again to resume"
            if args.out
            else "no --out was given, so nothing was kept"
        )
        err.print(
            f"[yellow]interrupted:[/yellow] {len(outcome.results)} of {outcome.total} tasks finished "
            f"({outcome.ran} in this run); {where}",
            soft_wrap=True,
        )
        if args.ray is not None:
            err.print("what the interrupted tasks had spent on their Ray workers is not known here")
        elif outcome.interrupted_calls:
            err.print(
                f"the interrupted tasks had made {outcome.interrupted_calls} model call(s) costing "
                f"${outcome.interrupted_cost_usd:.4f}; no result records them"
            )
        if outcome.stragglers:
            err.print(f"{outcome.stragglers} task(s) did not stop in time; their sandboxes end with this process")
        return 130
    if args.fail_under is not None and summary.accuracy < args.fail_under:
        err.print(f"[red]accuracy {summary.accuracy:.1%} is under --fail-under {args.fail_under:.1%}[/red]")
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from .evals.report import comparison_table, load_runs, plot_runs, size_table, summarize

    runs = load_runs(args.results)
    if args.json:
        payload = [summarize(run.records, label=run.label).model_dump() | {"source": run.source} for run in runs]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        out.print(comparison_table(runs))
        out.print(size_table(runs))
    if args.plot:
        path = plot_runs(runs, args.plot)
        err.print(f"plot written to {escape(str(path))}")
    return 0


# ------------------------------------------------------------------ parser


def _add_image(commands: argparse._SubParsersAction) -> None:
    image = commands.add_parser("image", help="manage the sandbox image")
    image_commands = image.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    build = image_commands.add_parser("build", help="build the sandbox image (a no-op when it is up to date)")
    base = build.add_mutually_exclusive_group()
    base.add_argument(
        "--bootstrap", action="store_true", help="build FROM a Debian base made with debootstrap (no registry needed)"
    )
    base.add_argument(
        "--fallback-bootstrap", action="store_true", help="use python:3.12-slim, or --bootstrap if it cannot be pulled"
    )
    base.add_argument("--base", metavar="IMAGE", help="build FROM this image (needs python3 on PATH)")
    build.add_argument("--force", action="store_true", help="rebuild even if the image is up to date")
    build.set_defaults(handler=cmd_image_build)


def _add_gc(commands: argparse._SubParsersAction) -> None:
    gc = commands.add_parser("gc", help="remove sandbox containers left behind by dead processes")
    gc.add_argument("--all", action="store_true", help="remove every sandbox container, including live ones")
    gc.set_defaults(handler=cmd_gc)


def _add_audit(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="attack a sandbox with hostile code and show that every attack fails")
    audit.add_argument("--runtime", choices=RUNTIMES, default="runc")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.set_defaults(handler=cmd_audit)


def _add_doctor(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check Docker, the image, and the hardening inside a sandbox")
    doctor.add_argument("--runtime", choices=RUNTIMES, default="runc")
    doctor.set_defaults(handler=cmd_doctor)


def _add_exec(commands: argparse._SubParsersAction) -> None:
    exec_ = commands.add_parser("exec", help="run Python code in a sandbox and print what it printed")
    exec_.add_argument("-c", dest="code", required=True, metavar="CODE", help="the Python source to run")
    exec_.add_argument(
        "--no-sandbox", action="store_true", help="run in a plain local process instead (isolates nothing)"
    )
    exec_.add_argument("--runtime", choices=RUNTIMES, default="runc")
    exec_.add_argument("--timeout", type=float, default=None, metavar="S", help="exec timeout in seconds")
    exec_.set_defaults(handler=cmd_exec)


def _add_rlm_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="gpt-5-mini", help="root model (default: %(default)s)")
    model.add_argument("--sub-model", default=None, help="model for llm_query (default: --model)")
    model.add_argument("--base-url", default=None, help="any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama...)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-depth", type=int, default=1, help="1: llm_query only; N: rlm_query nests N-1 levels")
    limits.add_argument("--max-iterations", type=int, default=20)
    limits.add_argument("--max-llm-calls", type=int, default=None)
    limits.add_argument("--max-tokens", type=int, default=None)
    limits.add_argument("--max-cost", type=float, default=None, metavar="USD")
    limits.add_argument("--timeout", type=float, default=None, metavar="S", help="wall clock for the whole run")
    limits.add_argument("--exec-timeout", type=float, default=60, metavar="S", help="per code block")
    sandbox = parser.add_argument_group("sandbox")
    sandbox.add_argument("--runtime", choices=RUNTIMES, default="runc")
    sandbox.add_argument("--no-sandbox", action="store_true", help="run model code as a local process (isolates nothing)")
    output = parser.add_argument_group("output")
    output.add_argument("--log-dir", default=None, help="write the trajectory as JSONL here")
    output.add_argument("-v", "--verbose", action="store_true", help="show every turn live")
    output.add_argument("--json", action="store_true", help="print the whole result as JSON")


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="answer a query over a context of any size")
    run.add_argument("--context", required=True, metavar="FILE", help="text file, .json file, or - for stdin")
    run.add_argument("--query", required=True)
    _add_rlm_options(run)
    run.set_defaults(handler=cmd_run)


def _add_niah(commands: argparse._SubParsersAction) -> None:
    niah = commands.add_parser("niah", help="needle in a haystack: find a magic number in ~1M lines of noise")
    niah.add_argument("--lines", type=int, default=1_000_000)
    niah.add_argument("--seed", type=int, default=None)
    _add_rlm_options(niah)
    niah.set_defaults(handler=cmd_niah)


def _add_view(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser("view", help="render a saved trajectory (JSONL) as a tree")
    view.add_argument("file")
    view.set_defaults(handler=cmd_view)


def _add_eval(commands: argparse._SubParsersAction) -> None:
    eval_ = commands.add_parser(
        "eval",
        help="run a suite of tasks (a JSONL file or a built-in suite) and score the answers",
        description="Run each task in its own RLM and sandboxes; results are appended to --out as tasks "
        "finish, and running the same command again resumes. Exit codes: 0 done, 1 accuracy under "
        "--fail-under, 130 interrupted.",
    )
    source = eval_.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "tasks",
        nargs="?",
        metavar="TASKS.jsonl",
        help="one task per line: id, context (text, path or paths), query, expected, scorer",
    )
    source.add_argument(
        "--suite", metavar="NAME", help="built-in synthetic suite(s): niah, aggregation, pairs (comma-separated)"
    )
    suite = eval_.add_argument_group("built-in suites")
    suite.add_argument("--n", type=int, default=20, help="tasks per suite and size (default: %(default)s)")
    suite.add_argument(
        "--size", default="8k", help="context size(s) in tokens: 8k, 128k, 1M, 10M (comma-separated; default: %(default)s)"
    )
    suite.add_argument("--seed", type=int, default=0)
    suite.add_argument("--write-tasks", metavar="FILE", help="write the tasks as JSONL and exit, without running them")
    run = eval_.add_argument_group("run")
    run.add_argument("--concurrency", type=int, default=4, metavar="N", help="tasks at once (default: %(default)s)")
    run.add_argument("--out", metavar="FILE", help="append results here as JSONL; re-running resumes from it")
    run.add_argument("--retry-errors", action="store_true", help="on resume, run again the tasks that ended in an error")
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--fail-under", type=float, metavar="ACC", help="exit 1 when accuracy (0..1) is below this")
    run.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run tasks on a Ray cluster (pip install 'rlm-sandbox[ray]'); without ADDRESS, RAY_ADDRESS or a local one",
    )
    _add_rlm_options(eval_)
    eval_.set_defaults(handler=cmd_eval)


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="compare eval results files side by side; plot accuracy and cost")
    report.add_argument("results", nargs="+", metavar="RESULTS.jsonl")
    report.add_argument("--plot", metavar="PNG", help="write accuracy and cost against context size (needs rlm-sandbox[plot])")
    report.add_argument("--json", action="store_true", help="print the summaries as JSON")
    report.set_defaults(handler=cmd_report)


def _add_mcp(commands: argparse._SubParsersAction) -> None:
    from .integrations.mcp import add_mcp_command  # the MCP SDK itself is imported only when it runs

    add_mcp_command(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm-sandbox", description="Recursive Language Models with model-written code in a hardened sandbox."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_run, _add_niah, _add_view, _add_eval, _add_report, _add_exec, _add_image, _add_gc, _add_doctor, _add_audit,
        _add_mcp,
    ):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RLMSandboxError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
