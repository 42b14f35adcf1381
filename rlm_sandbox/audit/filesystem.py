"""Filesystem attacks: host sockets and secrets sought in files, mounts, writes to the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sandbox.base import ExecResult
from .checks import all_failed, errno_names
from .registry import Observation, register

if TYPE_CHECKING:
    from .env import AuditEnv


def _check_sockets(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    if obs["socket_files"]:
        return False, f"socket files in the sandbox: {obs['socket_files']}"
    passed, text = all_failed(obs, "attempts", "socket connect")
    if passed and obs["host_sockets_tried"] < 1:
        return False, "no host socket was tried (the host lists none?)"
    return passed, f"no socket file anywhere in the sandbox; {text}, {obs['host_sockets_tried']} of them the host's own"


def _check_secrets(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    if obs["env_has_canary"]:
        return False, "the host's canary variable is in the sandbox's environment"
    reads = obs["canary_reads"]
    opened = [path for path, value in reads.items() if isinstance(value, int)]
    if opened:
        return False, f"the canary path opened via {opened} (content checked separately)"
    # The dump itself was searched for every secret by the generic check.
    return True, (
        f"canary variable absent; canary file unreachable by {len(reads)} paths ({errno_names(reads.values())}); "
        f"{obs['environs_read']} process environments and {obs['bytes_read']:,} bytes of files read hold no secret"
    )


def _check_mount(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    passed, text = all_failed(obs, "attempts", "mount")
    if passed and obs and obs["mounted_now"]:
        return False, f"a mount appeared: {obs['mounted_now']}"
    return passed, text


def _check_rootfs(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    return all_failed(obs, "attempts", "rootfs write")


register(
    "docker-and-host-sockets",
    "filesystem",
    expected="no socket file in the sandbox; every host socket (path or abstract) unreachable",
    check=_check_sockets,
)
register(
    "host-secrets",
    "filesystem",
    expected="canary variable, canary file and API key unreadable; /proc/*/environ holds no host secret",
    check=_check_secrets,
)
register(
    "mount-filesystems",
    "filesystem",
    expected="every mount (tmpfs, proc, cgroup, bind, remount rw, overlay, mount(8)) fails",
    check=_check_mount,
)
register(
    "write-root-filesystem",
    "filesystem",
    expected="every write, chmod, rename or link on the image fails (read-only root)",
    check=_check_rootfs,
)
