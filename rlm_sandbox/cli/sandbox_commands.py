"""The commands that work on a sandbox or its image directly: `exec`, `image build` and `gc`."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..errors import LMError
from ..sandbox.config import SandboxConfig
from .arguments import _add_runtime, _seconds
from .output import err, out

if TYPE_CHECKING:
    from ..sandbox.base import Sandbox


def _no_model(prompts: list[str], model: str | None) -> list[str]:
    raise LMError("no model configured: `rlm-sandbox exec` runs code only, so llm_query is unavailable")


def _open_sandbox(args: argparse.Namespace) -> Sandbox:
    config = SandboxConfig(runtime=args.runtime)
    if args.no_sandbox:
        from ..sandbox.local import IsolationWarning, LocalSandbox

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
    from ..sandbox.docker import DockerSandbox

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


def cmd_image_build(args: argparse.Namespace) -> int:
    from ..sandbox.docker import docker_client
    from ..sandbox.image import build_image, image_is_current, image_tag

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


def cmd_gc(args: argparse.Namespace) -> int:
    from ..sandbox.docker import docker_client, reap_stale_containers

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
    from ..sandbox.docker import docker_client
    from ..sandbox.image import image_tag, remove_old_images

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
