"""The `rlm-sandbox` command.

Each subcommand is one `cmd_*` function taking the parsed arguments and returning the
exit code, registered in `build_parser`. Modules that talk to Docker are imported
inside the functions, so `--help` and argument errors stay instant.

Two rules hold for every subcommand, present and future, without the subcommand
doing anything:

- `main` installs `terminal.install()` first, so text from models, sandboxes,
  contexts and files is shown on a terminal with its control characters escaped.
- `main` turns any exception into one line, `error: <what> (<how to fix>)`: exit 2
  for bad input (`InputError`, a pydantic `ValidationError`), 1 for a failure, 130 for
  Ctrl-C. The traceback is shown only with `--debug` (or RLM_SANDBOX_DEBUG=1), which
  `build_parser` adds to every subcommand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from .errors import InputError, LMError, RLMSandboxError
from .sandbox.config import SandboxConfig
from .terminal import SafeConsole, install

if TYPE_CHECKING:
    from .sandbox.base import Sandbox
    from .sandbox.hardening import HardeningCheck

RUNTIMES = ("runc", "runsc")

# Colour only where it carries meaning (pass/fail/warning): no automatic highlighting.
out = SafeConsole(highlight=False)
err = SafeConsole(stderr=True, highlight=False)

# `eval`'s exit codes (also in the README and `eval --help`).
EXIT_OK, EXIT_UNDER, EXIT_USAGE, EXIT_TASK_ERRORS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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
    if args.images:
        _gc_images(args.dry_run)
    return 0


def _gc_images(dry_run: bool) -> None:
    from .sandbox.docker import docker_client
    from .sandbox.image import image_tag, remove_old_images

    results = remove_old_images(docker_client(), dry_run=dry_run)
    if results:
        table = Table("image of an older server", "removed", "why not")
        for result in results:
            removed = "yes" if result.removed else "no"
            table.add_row(escape(result.tag), removed, escape(result.reason))
        out.print(table)
    verb = "would remove" if dry_run else "removed"
    count = len(results) if dry_run else sum(result.removed for result in results)
    out.print(f"{verb} {count} images of older servers; kept the current one, {escape(image_tag())}, and the bases")


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
        escape(
            f"Docker {version.get('Version')} (API {version.get('ApiVersion')}), {version.get('Os')}/{version.get('Arch')}"
        ),
    )
    tag = image_tag()
    has_image = image_exists(client, tag)
    setup.add_row("sandbox image", _status(has_image), tag if has_image else "missing: run rlm-sandbox image build")
    runtimes = sorted(client.info().get("Runtimes") or {})
    has_runtime = args.runtime in runtimes
    hint = "" if has_runtime else f"; {args.runtime} is not registered in /etc/docker/daemon.json"
    setup.add_row(f"runtime {args.runtime}", _status(has_runtime), escape(", ".join(runtimes) + hint))
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
        _write_json(report.model_dump(mode="json"))
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


def _prices(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    return dict(getattr(args, "price", None) or [])


def _check_prices(args: argparse.Namespace, models: list[str]) -> None:
    """Refuse a --max-cost that could not be enforced; say so when costs will not be counted."""
    from .evals.runner import price_table
    from .lm import lookup_price

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


def _rlm_settings(args: argparse.Namespace, *, demo_without_key: bool = False):
    """(limits, client, model name, sandbox) from the shared model/limit/sandbox flags.

    The scripted demo model runs only with --demo, or, for `niah` (which is the demo),
    when there is no API key; a banner says so.
    """
    from .errors import MissingAPIKeyError
    from .limits import Limits
    from .lm import client_for
    from .scripted import SCRIPTED_MODEL, ScriptedDemoModel

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
        from .evals.runner import price_table

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


class _Exit(Exception):
    """Leave with this exit code; what happened has been said already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


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


def _make_rlm(args: argparse.Namespace, *, demo_without_key: bool = False):
    """An RLM from the shared model/limit/sandbox flags, and the watch on its run."""
    from .rlm import RLM

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
):
    """Run one completion; on Ctrl-C say so, and where the trajectory so far is, then exit 130."""
    rlm, watch = _make_rlm(args, demo_without_key=demo_without_key)
    try:
        return rlm.completion(context, query, output=output), watch
    except KeyboardInterrupt:
        where = watch.trajectory_path
        kept = f"the trajectory so far is in {where}" if where else "no trajectory was kept (--log-dir keeps one)"
        err.print(f"[yellow]interrupted[/yellow]: {escape(kept)}", soft_wrap=True)
        raise _Exit(EXIT_INTERRUPTED) from None


def _summary_table(result, extra: dict[str, str] | None = None, restarts: int = 0) -> Table:
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


def _write_json(payload: Any) -> None:
    # ASCII-only: valid JSON whatever the text holds, and nothing a terminal could act on.
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=True, default=str) + "\n")


def _output_schema(path: str | None):
    """The JSON schema of `--output-schema FILE`, or None."""
    if path is None:
        return None
    import json
    from pathlib import Path

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RLMSandboxError(f"--output-schema {path}: cannot read a JSON schema from it ({exc})") from None
    if not isinstance(schema, dict):
        raise RLMSandboxError(f"--output-schema {path}: a JSON schema is an object, not {type(schema).__name__}")
    return schema


def cmd_run(args: argparse.Namespace) -> int:
    from .contexts import read_context

    context = read_context(args.context, args.context_format)
    schema = _output_schema(args.output_schema)
    try:
        result, watch = _complete(args, context, args.query, output=schema)
    except ValueError as exc:  # a schema that is not one
        raise RLMSandboxError(f"--output-schema {args.output_schema}: {exc}") from None
    if args.json:
        _write_json(result.model_dump(mode="json"))
    else:
        err.print(_summary_table(result, restarts=watch.restarts))
        if schema is not None and result.stop_reason == "final":
            import json

            sys.stdout.write(json.dumps(result.parsed, ensure_ascii=False) + "\n")  # validated: canonical JSON
        else:
            # Raw to a pipe or file (that is its point); a terminal sees control characters escaped.
            sys.stdout.write((result.answer or "") + "\n")
    return 0 if result.stop_reason == "final" else 1


def cmd_chat(args: argparse.Namespace) -> int:
    from contextlib import nullcontext
    from pathlib import Path

    from .chat import DEFAULT_HISTORY, chat_loop
    from .contexts import read_context
    from .rlm import RLM
    from .sandbox.pool import SandboxPool

    context = read_context(args.context)
    limits, client, model, sandbox = _rlm_settings(args)
    # The session's own sandbox starts while the user types the first question; a warm
    # pool serves the child RLMs of rlm_query (depth > 1), as many as run at once.
    pooled = isinstance(sandbox, SandboxConfig) and limits.max_depth > 1
    pool = SandboxPool(sandbox, size=min(limits.max_concurrency, 4)) if pooled else None
    with pool or nullcontext():
        rlm = RLM(
            model=model,
            sub_model=args.sub_model,
            client=client,
            sandbox=sandbox,
            limits=limits,
            log_dir=args.log_dir,
            verbose=args.verbose,
            pool=pool,
        )

        def show(result) -> None:
            if args.json:
                sys.stdout.write(result.model_dump_json() + "\n")
                return
            if result.stop_reason != "final":
                err.print(f"[yellow]{result.stop_reason}[/yellow]: {escape(result.error or '')}", soft_wrap=True)
            sys.stdout.write((result.answer or "") + "\n")
            sys.stdout.flush()

        history = None if args.no_history else Path(args.history) if args.history else DEFAULT_HISTORY
        say = lambda text: err.print(escape(text), soft_wrap=True)  # noqa: E731
        return chat_loop(rlm, context, show=show, say=say, history=history)


def cmd_niah(args: argparse.Namespace) -> int:
    from .evals.niah import NIAH_QUERY, make_haystack

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


def cmd_view(args: argparse.Namespace) -> int:
    from .trajectory import load_trajectory, trajectory_tree

    events = load_trajectory(args.file)
    if args.html:
        from .pages import write_trajectory_page

        path = write_trajectory_page(events, args.html, source=args.file)
        err.print(f"page written to {escape(str(path))} (one file; opens offline)")
        return 0
    out.print(trajectory_tree(events))
    return 0


# ------------------------------------------------------------------ eval / report


def cmd_eval(args: argparse.Namespace) -> int:
    from .evals.junit import write_junit
    from .evals.progress import RichProgress
    from .evals.report import failures, summarize, summary_table
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
    if args.concurrency < 1:
        raise InputError("--concurrency must be at least 1", "give a whole number such as 4")
    scripted = isinstance(client, ScriptedDemoModel)
    if hasattr(client, "close"):
        client.close()  # each worker makes its own: on Ray they are other processes
    config = RunConfig(
        model=args.model,
        sub_model=args.sub_model,
        base_url=args.base_url,
        provider=args.provider,
        scripted=scripted,
        limits=limits,
        sandbox="local" if sandbox is False else "docker",
        runtime=args.runtime,
        log_dir=args.log_dir,
        verbose=args.verbose,
        prices=_prices(args),
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
    failed = failures(outcome.results)
    if args.json:
        payload = summary.model_dump() | outcome.model_dump(exclude={"results"}) | {"failed_tasks": failed}
        _write_json(payload)
    else:
        out.print(summary_table(summary, title=f"eval summary ({outcome.ran} run now, {outcome.resumed} resumed)"))
        if failed:
            out.print("[bold]tasks that did not pass[/bold]")
            for line in failed:
                out.print(f"  {escape(line)}", soft_wrap=True)
    if outcome.interrupted:
        if not args.out:
            where = "no --out was given, so nothing was kept"
        elif Path(args.out).exists():
            where = f"results are in {escape(args.out)}; run the same command again to resume"
        else:
            where = f"no task finished, so {escape(args.out)} was not written; run the same command again to start over"
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
        return EXIT_INTERRUPTED
    if summary.errors and not args.allow_errors:
        err.print(
            f"[red]{summary.errors} task(s) ended in an error[/red] (listed above); exit {EXIT_TASK_ERRORS}. "
            "--allow-errors counts them as wrong answers instead",
            soft_wrap=True,
        )
        return EXIT_TASK_ERRORS
    if args.fail_under is not None and summary.accuracy < args.fail_under:
        err.print(f"[red]accuracy {summary.accuracy:.1%} is under --fail-under {args.fail_under:.1%}[/red]")
        return EXIT_UNDER
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .evals.report import comparison_table, load_runs, plot_runs, size_table, summarize

    runs = load_runs(args.results)
    if args.json:
        _write_json([summarize(run.records, label=run.label).model_dump() | {"source": run.source} for run in runs])
    else:
        out.print(comparison_table(runs))
        out.print(size_table(runs))
    if args.plot:
        path = plot_runs(runs, args.plot)
        err.print(f"plot written to {escape(str(path))}")
    if args.html:
        from .pages import write_report_page

        path = write_report_page(runs, args.html)
        err.print(f"page written to {escape(str(path))} (one file; opens offline)")
    return 0


# ------------------------------------------------------------------ parser


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum} (give a whole number of at least {minimum})")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed (give a number of seconds above 0)")
    return value


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed (give an amount in USD above 0, such as 0.50)")
    return value


def _fraction(text: str) -> float:
    """0..1, or a percentage written with %: 0.8 and 80% are the same; a bare 80 is refused."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction (give 0.8, or 80%)") from None
    if not 0 <= value <= 1:
        hint = (
            f"give {value / 100:g}, or {raw}% for a percentage"
            if 1 < value <= 100 and not raw.endswith("%")
            else "give a fraction such as 0.8, or a percentage such as 80%"
        )
        raise argparse.ArgumentTypeError(f"{text} is not from 0 to 1 ({hint})")
    return value


def _price(text: str) -> tuple[str, tuple[float, float]]:
    model, _, amounts = text.partition("=")
    try:
        low, high = (float(part) for part in amounts.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODEL=IN,OUT (USD per million input and output tokens, e.g. my-model=0.5,2)"
        ) from None
    if not model or low < 0 or high < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=IN,OUT with prices of 0 or more")
    return model, (low, high)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line, like every other error: `error: <what> (see ... --help)`, exit 2."""

    def error(self, message: str) -> Any:
        sys.stderr.write(f"error: {self.prog.removeprefix('rlm-sandbox ')}: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if (
            "default" in help_text
            or not action.option_strings
            or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
            or action.required
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


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
    base.add_argument(
        "--base", metavar="IMAGE", help="build FROM this image (needs python3 on PATH; default: python:3.12-slim)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if the image is up to date")
    build.set_defaults(handler=cmd_image_build)


def _add_gc(commands: argparse._SubParsersAction) -> None:
    gc = commands.add_parser(
        "gc", help="remove sandbox containers left behind by dead processes (and, with --images, old images)"
    )
    gc.add_argument("--all", action="store_true", help="remove every sandbox container, including live ones")
    gc.add_argument(
        "--images",
        action="store_true",
        help=(
            "also remove rlm-sandbox:<hash> images of older servers (never the current one, never a base; "
            "on a daemon shared with other checkouts, their images count as older)"
        ),
    )
    gc.add_argument("--dry-run", action="store_true", help="with --images: list the images, remove none")
    gc.set_defaults(handler=cmd_gc)


def _add_runtime(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--runtime", choices=RUNTIMES, default="runc", help="container runtime: runc, or runsc for gVisor"
    )


def _add_audit(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="attack a sandbox with hostile code and show that every attack fails")
    _add_runtime(audit)
    audit.add_argument("--json", action="store_true", help="print the report as JSON (ASCII only, always valid JSON)")
    audit.set_defaults(handler=cmd_audit)


def _add_doctor(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check Docker, the image, and the hardening inside a sandbox")
    _add_runtime(doctor)
    doctor.set_defaults(handler=cmd_doctor)


def _add_exec(commands: argparse._SubParsersAction) -> None:
    exec_ = commands.add_parser(
        "exec",
        help="run Python code in a sandbox and print what it printed",
        description="Run one cell of Python in a fresh sandbox. Its output goes to a pipe or file byte for byte; "
        "on a terminal, control characters are shown as escapes (\\x1b), never interpreted.",
    )
    exec_.add_argument("-c", dest="code", required=True, metavar="CODE", help="the Python source to run")
    exec_.add_argument(
        "--no-sandbox", action="store_true", help="run in a plain local process instead (isolates nothing)"
    )
    _add_runtime(exec_)
    exec_.add_argument(
        "--timeout", type=_seconds, default=None, metavar="S", help="exec timeout in seconds (default: 60)"
    )
    exec_.set_defaults(handler=cmd_exec)


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


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="answer a query over a context of any size",
        description="Answer a query over a context. The answer goes to stdout: to a pipe or file as the model "
        "wrote it; on a terminal, control characters are shown as escapes (\\x1b), never interpreted. "
        "Exit codes: 0 a final answer, 1 no final answer (limits, errors), 2 bad input, 130 interrupted.",
    )
    run.add_argument("--context", required=True, metavar="FILE", help="a text file, a .json file, or - for stdin")
    run.add_argument(
        "--context-format",
        choices=("text", "json", "auto"),
        default="auto",
        help="text: as is; json: parsed; auto: JSON for a .json file or stdin that starts with [ or {, else text",
    )
    run.add_argument("--query", required=True, help="the question to answer")
    run.add_argument(
        "--output-schema", metavar="FILE", help="a JSON schema the answer must match; the model retries until it does"
    )
    _add_rlm_options(run)
    run.set_defaults(handler=cmd_run)


def _add_chat(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser("chat", help="ask many questions over one context in one session (one sandbox)")
    chat.add_argument("--context", required=True, metavar="FILE", help="a text file or a .json file")
    chat.add_argument(
        "--history", metavar="FILE", help="readline history file (default: ~/.local/state/rlm-sandbox/chat_history)"
    )
    chat.add_argument("--no-history", action="store_true", help="keep no history file")
    _add_rlm_options(chat)
    chat.set_defaults(handler=cmd_chat)


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


def _add_view(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser("view", help="render a saved trajectory (JSONL) as a tree")
    view.add_argument("file", help="a trajectory written by run or niah (rlm_logs/rlm-*.jsonl)")
    view.add_argument("--html", metavar="OUT", help="write a self-contained HTML page (tree, timeline, search) instead")
    view.set_defaults(handler=cmd_view)


def _add_eval(commands: argparse._SubParsersAction) -> None:
    eval_ = commands.add_parser(
        "eval",
        help="run a suite of tasks (a JSONL file or a built-in suite) and score the answers",
        description="Run each task in its own RLM and sandboxes; results are appended to --out as tasks "
        "finish, and running the same command again resumes: tasks already finished with the same models, "
        "endpoint, limits, scorer and context are skipped, tasks that ended in an error run again. "
        f"Exit codes: {EXIT_OK} passed (no errors, accuracy at least --fail-under), "
        f"{EXIT_UNDER} accuracy under --fail-under, {EXIT_USAGE} bad input, "
        f"{EXIT_TASK_ERRORS} some tasks ended in an error (unless --allow-errors), {EXIT_INTERRUPTED} interrupted.",
    )
    source = eval_.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "tasks",
        nargs="?",
        metavar="TASKS.jsonl",
        help="one task per line: id, context (text, path or paths) or context_text, query, expected, scorer",
    )
    source.add_argument(
        "--suite", metavar="NAME", help="built-in synthetic suite(s): niah, aggregation, pairs (comma-separated)"
    )
    suite = eval_.add_argument_group("built-in suites")
    suite.add_argument("--n", type=_whole(1), default=20, help="tasks per suite and size")
    suite.add_argument("--size", default="8k", help="context size(s) in tokens: 8k, 128k, 1M, 10M (comma-separated)")
    suite.add_argument("--seed", type=int, default=0, help="seed of the generated tasks")
    suite.add_argument("--write-tasks", metavar="FILE", help="write the tasks as JSONL and exit, without running them")
    run = eval_.add_argument_group("run")
    run.add_argument("--concurrency", type=_whole(1), default=4, metavar="N", help="tasks at once")
    run.add_argument("--out", metavar="FILE", help="append results here as JSONL; re-running resumes from it")
    run.add_argument(
        "--retry-errors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on resume, run again the tasks whose last result was an error",
    )
    run.add_argument(
        "--allow-errors",
        action="store_true",
        help=f"tasks that end in an error count as wrong answers instead of failing the run with exit {EXIT_TASK_ERRORS}",
    )
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument(
        "--fail-under",
        type=_fraction,
        metavar="ACC",
        help="exit 1 when accuracy is below this: a fraction (0.8) or a percentage (80%%); a bare 80 is refused",
    )
    run.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run tasks on a Ray cluster (pip install 'rlm-sandbox[ray]'); without ADDRESS, RAY_ADDRESS or a local one",
    )
    _add_rlm_options(eval_, per="task", log_dir=None)
    eval_.set_defaults(handler=cmd_eval)


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="compare eval results files side by side; plot accuracy and cost")
    report.add_argument("results", nargs="+", metavar="RESULTS.jsonl", help="the --out files of eval runs")
    report.add_argument(
        "--plot", metavar="PNG", help="write accuracy and cost against context size (needs rlm-sandbox[plot])"
    )
    report.add_argument(
        "--json", action="store_true", help="print the summaries as JSON (ASCII only, always valid JSON)"
    )
    report.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page of the runs and tasks")
    report.set_defaults(handler=cmd_report)


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand's parser, nested ones (`image build`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _subparsers(sub)


def _add_mcp(commands: argparse._SubParsersAction) -> None:
    from .integrations.mcp import add_mcp_command  # the MCP SDK itself is imported only when it runs

    add_mcp_command(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlm-sandbox",
        description="Recursive Language Models with model-written code in a hardened sandbox. "
        "On a terminal, text from models, sandboxes and files is shown with control characters escaped.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_run,
        _add_chat,
        _add_niah,
        _add_view,
        _add_eval,
        _add_report,
        _add_exec,
        _add_image,
        _add_gc,
        _add_doctor,
        _add_audit,
        _add_mcp,
    ):
        add(commands)
    # Every subcommand, including ones added later, gets the same help layout and --debug.
    for sub in _subparsers(parser):
        sub.formatter_class = _HelpFormatter
        if "--debug" not in sub._option_string_actions:
            sub.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
            )
    return parser


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The message and exit code for an exception that ended a command."""
    from pydantic import ValidationError

    if isinstance(exc, InputError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        return f"invalid {exc.title}: {problems} (check the matching option in --help)", EXIT_USAGE
    if isinstance(exc, RLMSandboxError):
        return str(exc), 1
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename} (check the path and its permissions)", 1
    return f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback, and report it)", 1


def main(argv: Sequence[str] | None = None) -> int:
    install()
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False) or os.environ.get("RLM_SANDBOX_DEBUG"))
    try:
        return args.handler(args)
    except _Exit as stop:
        return stop.code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`| head`): not an error worth a message.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message, code = _one_line(exc)
        # One line: a multi-line message (a daemon's answer) is joined.
        message = " ".join(part.strip() for part in message.splitlines() if part.strip())
        err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
