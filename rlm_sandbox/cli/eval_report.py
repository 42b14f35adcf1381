"""`eval` (run a suite of tasks and score the answers) and `report` (compare the results of runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape

from ..errors import InputError
from .arguments import _fraction, _whole
from .output import EXIT_INTERRUPTED, EXIT_OK, EXIT_TASK_ERRORS, EXIT_UNDER, EXIT_USAGE, _write_json, err, out
from .rlm_options import _add_rlm_options, _prices, _rlm_settings


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evals.config import RunConfig
    from ..evals.junit import write_junit
    from ..evals.progress import RichProgress
    from ..evals.report import failures, summarize, summary_table
    from ..evals.runner import run_eval
    from ..evals.suites import generate_suite, parse_size
    from ..evals.tasks import load_tasks, write_tasks
    from ..scripted import ScriptedDemoModel

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
    from ..evals.report import comparison_table, load_runs, plot_runs, size_table, summarize

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
        from ..pages import write_report_page

        path = write_report_page(runs, args.html)
        err.print(f"page written to {escape(str(path))} (one file; opens offline)")
    return 0


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
