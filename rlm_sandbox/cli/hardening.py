"""`doctor` (is everything in place, and is the hardening in effect?) and `audit` (attack it)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from ..errors import RLMSandboxError
from ..sandbox.config import SandboxConfig
from .arguments import _add_runtime
from .output import _status, _write_json, err, out
from .sandbox_commands import _no_model

if TYPE_CHECKING:
    from ..sandbox.hardening import HardeningCheck


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
    from ..sandbox.docker import DockerSandbox
    from ..sandbox.hardening import probe_hardening

    started = time.monotonic()
    with DockerSandbox(config, llm_handler=_no_model) as sandbox:
        start_s = time.monotonic() - started
        return probe_hardening(sandbox, config), start_s


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..sandbox.docker import docker_client
    from ..sandbox.image import image_exists, image_tag

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


def cmd_audit(args: argparse.Namespace) -> int:
    """Run every attack case against a runtime; a table of case, expected, observed, pass; exit 1 on any miss."""
    import logging

    from ..audit import run_audit

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


def _add_doctor(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check Docker, the image, and the hardening inside a sandbox")
    _add_runtime(doctor)
    doctor.set_defaults(handler=cmd_doctor)


def _add_audit(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="attack a sandbox with hostile code and show that every attack fails")
    _add_runtime(audit)
    audit.add_argument("--json", action="store_true", help="print the report as JSON (ASCII only, always valid JSON)")
    audit.set_defaults(handler=cmd_audit)
