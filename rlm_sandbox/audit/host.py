"""What the host sees of a sandbox: its processes (by cgroup or command line) and its CPU time."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import Any


def host_processes(needles: Iterable[str]) -> list[dict[str, Any]]:
    """Host processes in a cgroup, or with a command line, naming one of `needles`."""
    needles = [n for n in needles if n]
    if not needles:
        return []
    host_userns = _readlink("/proc/self/ns/user")
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as handle:
                cgroup = handle.read()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        in_cgroup = any(n in cgroup for n in needles)
        if not in_cgroup and not any(n in cmdline for n in needles):
            continue
        status = _status(pid)
        found.append(
            {
                "pid": int(pid),
                "cmd": cmdline[:80],
                "in_cgroup": in_cgroup,
                "uid": (status.get("Uid") or "?").split()[0],
                "cap_eff": status.get("CapEff", "0"),
                "seccomp": status.get("Seccomp", "?"),
                "nnp": status.get("NoNewPrivs", "?"),
                "gofer": "runsc-gofer" in cmdline,
                "own_userns": _readlink(f"/proc/{pid}/ns/user") != host_userns,
            }
        )
    return found


def _status(pid: str) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return {k: v.strip() for k, _, v in (line.partition(":") for line in handle)}
    except OSError:
        return {}


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def container_cpu_ns(container_id: str) -> int | None:
    """CPU time the container's cgroup has used, from the host (cgroup v1 or v2)."""
    for pattern in (
        f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
        f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage",
        f"/sys/fs/cgroup/cpuacct/*/docker-{container_id}.scope/cpuacct.usage",
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat",
        f"/sys/fs/cgroup/docker/{container_id}/cpu.stat",
    ):
        for path in glob.glob(pattern):
            try:
                with open(path) as handle:
                    text = handle.read()
            except OSError:
                continue
            if path.endswith("cpu.stat"):
                for line in text.splitlines():
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) * 1000
            else:
                return int(text.strip())
    return None
