"""The `rlm-sandbox` command.

Each subcommand is one `cmd_*` function taking the parsed arguments and returning the
exit code, and one `_add_*` function defining its arguments, both in the module of its
group; `build_parser` here registers them all. Modules that talk to Docker are imported
inside the functions, so `--help` and argument errors stay instant.

    output.py            consoles, exit codes, JSON output
    arguments.py         argument types, the parser and the help layout every subcommand gets
    rlm_options.py       the model/limit/sandbox options of run, chat, niah and eval; the RLM they make
    run.py               run, chat, view
    niah.py              niah (the demo)
    eval_report.py       eval, report
    sandbox_commands.py  exec, image build, gc
    hardening.py         doctor, audit
    (mcp)                defined beside its server, in rlm_sandbox/integrations/mcp.py

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
import os
import sys
import traceback
from collections.abc import Sequence

from rich.markup import escape

from ..errors import InputError, RLMSandboxError
from ..terminal import install
from .arguments import _HelpFormatter, _Parser, _subparsers
from .eval_report import _add_eval, _add_report, cmd_eval, cmd_report
from .hardening import _add_audit, _add_doctor, cmd_audit, cmd_doctor
from .niah import _add_niah, cmd_niah
from .output import EXIT_INTERRUPTED, EXIT_USAGE, _Exit, err
from .rlm_options import _rlm_settings
from .run import _add_chat, _add_run, _add_view, cmd_chat, cmd_run, cmd_view
from .sandbox_commands import _add_exec, _add_gc, _add_image, cmd_exec, cmd_gc, cmd_image_build

# The handlers, and the helpers tests and scripts have imported from `rlm_sandbox.cli`.
__all__ = [
    "_HelpFormatter",
    "_rlm_settings",
    "_subparsers",
    "build_parser",
    "cmd_audit",
    "cmd_chat",
    "cmd_doctor",
    "cmd_eval",
    "cmd_exec",
    "cmd_gc",
    "cmd_image_build",
    "cmd_niah",
    "cmd_report",
    "cmd_run",
    "cmd_view",
    "main",
]


def _add_mcp(commands: argparse._SubParsersAction) -> None:
    from ..integrations.mcp import add_mcp_command  # the MCP SDK itself is imported only when it runs

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
