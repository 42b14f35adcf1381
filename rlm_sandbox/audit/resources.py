"""Resource and availability attacks: bombs, floods, fills, spins, hangs, ignored signals, orphans, crashes.

The last few (a recursion crash, `os._exit`, killing every process) exhaust nothing; they
attack the sandbox's availability as the rest do, and are here for that.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from ..sandbox.base import ExecResult
from .checks import HANG_SLACK_S, replaced
from .registry import Check, Observation, register

if TYPE_CHECKING:
    from .env import AuditEnv


SIGNALS_TIMEOUT_S = 2.0


def _check_fork_bomb(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if env.runtime == "runsc" and replaced(result, "SandboxDied"):
        return (
            True,
            "the pids limit (which counts gVisor's host threads) took the whole sandbox down; replaced (SandboxDied)",
        )
    if not obs:
        return False, f"no observation ({result.error})"
    if obs["errno"] != errno.EAGAIN or obs["forked"] >= 128:
        return False, f"forked {obs['forked']}, then errno {obs['errno']}"
    peak = env.case_host.get("host_processes_before_close")
    seen = f" ({peak} processes in its cgroup on the host)" if peak else ""
    return (
        True,
        f"fork failed with EAGAIN after {obs['forked']} direct children: the 128-pid limit holds{seen}; the sandbox still answers",
    )


def _check_memory_bomb(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if replaced(result, "SandboxDied") and "OOMKilled" in (result.error or ""):
        return True, "killed at the 512 MiB limit and replaced: 'OOMKilled' named in the error"
    if obs and obs.get("memory_error_at_mib", 10**6) <= 600:
        return True, f"MemoryError at {obs['memory_error_at_mib']} MiB"
    return False, f"no OOM kill or MemoryError: {result.error_type} {result.error}"


def _check_tmpfs_fill(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    parts = []
    for directory, (written, error) in obs["fill"].items():
        if error not in ("ENOSPC", "EFBIG") or written > 66:
            return False, f"{directory}: wrote {written} MiB, then {error}"
        parts.append(f"{directory} full at {written} MiB ({error})")
    return True, "; ".join(parts) + "; files removed, sandbox usable"


def _check_fsize(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    if obs["python_write"] != "EFBIG":
        return False, f"a write at 100 MiB gave {obs['python_write']}"
    if obs["dd_returncode"] != -25:  # killed by SIGXFSZ
        return False, f"dd exited {obs['dd_returncode']}: {obs['dd_says']}"
    return True, "a write past 64 MiB fails with EFBIG; dd is killed by SIGXFSZ"


def _check_flood(minimum: int) -> Check:
    def check(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
        cap = env.config.max_output_bytes
        kept = len(result.stdout.encode("utf-8", "surrogatepass")) + len(result.stderr.encode("utf-8", "surrogatepass"))
        if result.restarted or result.error:
            return False, f"the flood broke the exec: {result.error}"
        if not result.truncated:
            return False, "the result was not marked truncated"
        if kept > cap + 4096:
            return False, f"{kept:,} bytes came back; the cap is {cap:,}"
        if result.stdout_bytes < minimum:
            return False, f"only {result.stdout_bytes:,} bytes reported produced"
        return True, (
            f"{result.stdout_bytes:,} bytes produced, {kept:,} kept (cap {cap:,}), marked truncated; "
            f"exec took {result.duration_s:.1f} s"
        )

    return check


def _check_cpu_spin(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not result.timed_out or result.restarted:
        return False, f"timed_out={result.timed_out} restarted={result.restarted}: {result.error}"
    if not obs:
        return False, "the code did not see the interrupt"
    ratio = env.case_host.get("cpu_ratio")
    if ratio is None:
        if env.local_daemon:
            return False, "the host could not measure the container's CPU"
        return True, "interrupted at the timeout, variables kept (remote daemon: CPU not measured)"
    if not 0.25 <= ratio <= 1.3:  # the floor only shows the spinning was seen (the box may be busy)
        return False, f"{obs['spinners']} spinning processes used {ratio:.2f} CPUs (limit 1)"
    return True, (
        f"interrupted at the {result.duration_s:.1f} s timeout with variables kept; {obs['spinners']} spinning processes "
        f"together got {ratio:.2f} CPUs, measured on the host (limit 1 of {os.cpu_count()})"
    )


def _check_sleep(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if result.timed_out and not result.restarted and obs and obs.get("interrupted"):
        return True, f"interrupted (KeyboardInterrupt) after {result.duration_s:.1f} s, same process: variables kept"
    return False, f"timed_out={result.timed_out} restarted={result.restarted}: {result.error}"


def _check_signals(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    bound = SIGNALS_TIMEOUT_S + env.config.interrupt_grace_s + HANG_SLACK_S
    if replaced(result, "TimeoutError") and result.timed_out and result.duration_s <= bound:
        return (
            True,
            f"SIGINT ignored, so after the grace the container was killed and replaced in {result.duration_s:.1f} s",
        )
    return False, f"restarted={result.restarted} {result.error_type} after {result.duration_s:.1f} s"


def _check_orphans(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs or obs["running"] < 4:
        return False, f"the orphans did not start: {obs} {result.error}"
    seen = env.case_host.get("marked_before_close")
    host = f"; {seen} of them visible on the host before close" if seen else ""
    return (
        True,
        f"{obs['running']} detached processes (setsid, nohup, double fork) outlived the exec{host}; all gone with the sandbox",
    )


def _check_thread_bomb(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if env.runtime == "runsc" and replaced(result, "SandboxDied"):
        return True, "the pids limit (which counts gVisor's host threads) took the sandbox down; replaced (SandboxDied)"
    if not obs:
        return False, f"no observation ({result.error})"
    if not obs["error"] or "thread" not in obs["error"] or obs["threads"] >= 128:
        return False, f"started {obs['threads']} threads, then {obs['error']}"
    return True, f"thread creation failed after {obs['threads']} threads ({obs['error']}): the pids limit holds"


def _check_recursion(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if replaced(result, "SandboxDied") and "signal 11" in (result.error or ""):
        return True, "the server crashed on a C stack overflow (SIGSEGV); replaced with SandboxDied naming signal 11"
    if not result.restarted and result.error_type in ("RecursionError", "MemoryError"):
        return True, f"stopped with {result.error_type}"
    return False, f"{result.error_type}: {result.error}"


def _check_os_exit(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if replaced(result, "SandboxDied") and "code 7" in (result.error or ""):
        return True, "the server exited mid-exec; replaced with SandboxDied naming exit code 7"
    return False, f"{result.error_type}: {result.error}"


def _check_kill_all(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if replaced(result, "SandboxDied"):
        return True, f"everything the sandbox could signal died; replaced ({(result.error or '').split('. ')[0]})"
    return False, f"{result.error_type}: {result.error}"


register(
    "fork-bomb",
    "resources",
    expected="fork stops at the pids limit (runsc: sandbox replaced, SandboxDied)",
    check=_check_fork_bomb,
    fresh=True,
)
register(
    "memory-bomb",
    "resources",
    expected="OOM-killed at 512 MiB and replaced, or MemoryError",
    check=_check_memory_bomb,
    fresh=True,
)
register(
    "tmpfs-and-shm-fill",
    "resources",
    expected="/tmp and /dev/shm full at 64 MiB (ENOSPC)",
    check=_check_tmpfs_fill,
)
register(
    "file-size-limit",
    "resources",
    expected="writes past 64 MiB: EFBIG, children SIGXFSZ",
    check=_check_fsize,
)
register(
    "output-flood-lines",
    "resources",
    expected="260,000 lines (16 MB): at most 1 MiB kept, marked truncated",
    check=_check_flood(15_000_000),
)
register(
    "output-flood-one-line",
    "resources",
    expected="48 MiB without a newline: at most 1 MiB kept, marked truncated",
    check=_check_flood(48 << 20),
)
register(
    "cpu-spin",
    "resources",
    expected="interrupted at the exec timeout, state kept; 4 spinners get <= 1 CPU",
    check=_check_cpu_spin,
    timeout_s=3,
)
register(
    "sleep-forever",
    "resources",
    expected="interrupted at the exec timeout, state kept",
    check=_check_sleep,
    timeout_s=2,
)
register(
    "signals-ignored",
    "resources",
    expected="SIGINT/SIGTERM ignored and blocked: killed after the grace and replaced (TimeoutError)",
    check=_check_signals,
    fresh=True,
    timeout_s=SIGNALS_TIMEOUT_S,
)
register(
    "setsid-orphans-and-daemons",
    "resources",
    expected="detached processes and daemons die with the sandbox; nothing left on the host",
    check=_check_orphans,
    fresh=True,
)
register(
    "thread-bomb",
    "resources",
    expected="threads stop at the pids limit (runsc: sandbox replaced, SandboxDied)",
    check=_check_thread_bomb,
    fresh=True,
)
register(
    "deep-recursion-crash",
    "resources",
    expected="SIGSEGV of the server: replaced with SandboxDied (signal 11)",
    check=_check_recursion,
    fresh=True,
)
register(
    "os-exit-mid-exec",
    "resources",
    expected="replaced with SandboxDied (exit code 7)",
    check=_check_os_exit,
    fresh=True,
)
register(
    "kill-every-process",
    "resources",
    expected="kill(-1), kill(1), kill(self): replaced with SandboxDied",
    check=_check_kill_all,
    fresh=True,
)
