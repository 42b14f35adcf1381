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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm-sandbox", description="Recursive Language Models with model-written code in a hardened sandbox."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_image, _add_gc, _add_doctor, _add_exec):
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
