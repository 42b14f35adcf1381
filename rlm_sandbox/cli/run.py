"""`run` (one query over a context), `chat` (many, in one session) and `view` (a saved trajectory)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ..errors import RLMSandboxError
from ..sandbox.config import SandboxConfig
from .output import _write_json, err, out
from .rlm_options import _add_rlm_options, _complete, _rlm_settings, _summary_table

if TYPE_CHECKING:
    from ..rlm import RLMResult


def _output_schema(path: str | None) -> dict[str, Any] | None:
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
    from ..contexts import read_context

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

    from ..chat import DEFAULT_HISTORY, chat_loop
    from ..contexts import read_context
    from ..rlm import RLM
    from ..sandbox.pool import SandboxPool

    context = read_context(args.context)
    limits, client, model, sandbox = _rlm_settings(args)
    # The session's own sandbox starts while the user types the first question; a warm
    # pool serves the child RLMs of rlm_query (depth > 1), as many as run at once.
    pool = None
    if isinstance(sandbox, SandboxConfig) and limits.max_depth > 1:
        pool = SandboxPool(sandbox, size=min(limits.max_concurrency, 4))
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

        def show(result: RLMResult) -> None:
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


def cmd_view(args: argparse.Namespace) -> int:
    from ..trajectory import load_trajectory, trajectory_tree

    events = load_trajectory(args.file)
    if args.html:
        from ..pages import write_trajectory_page

        path = write_trajectory_page(events, args.html, source=args.file)
        err.print(f"page written to {escape(str(path))} (one file; opens offline)")
        return 0
    out.print(trajectory_tree(events))
    return 0


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


def _add_view(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser("view", help="render a saved trajectory (JSONL) as a tree")
    view.add_argument("file", help="a trajectory written by run or niah (rlm_logs/rlm-*.jsonl)")
    view.add_argument("--html", metavar="OUT", help="write a self-contained HTML page (tree, timeline, search) instead")
    view.set_defaults(handler=cmd_view)
