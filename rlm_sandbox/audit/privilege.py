"""Privilege attacks: set*id, namespaces, ptrace, kernel modules, device nodes, cgroups, the breakout checklist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sandbox.base import ExecResult
from .checks import all_failed, errno_names, is_gvisor, succeeded
from .registry import Observation, register

if TYPE_CHECKING:
    from .env import AuditEnv


def _check_setuid(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    won = succeeded(obs["attempts"])
    if won:
        return False, f"privilege calls succeeded: {won}"
    if obs["ids"] != [65534, 65534, 65534, 65534]:
        return False, f"ids changed to {obs['ids']}"
    if obs["no_new_privs"] != 1:
        return False, f"no_new_privs is {obs['no_new_privs']}"
    if int(obs["CapEff"] or "0", 16) or int(obs["CapBnd"] or "0", 16):
        return False, f"capabilities present: CapEff {obs['CapEff']} CapBnd {obs['CapBnd']}"
    su = ""
    if obs["su"] is not None:
        if obs["su_uids"] is None or "0" in obs["su_uids"]:
            return False, f"setuid su ran with uids {obs['su_uids']}"
        if obs["su"][0] == 0 or obs["su"][1].strip().endswith("\n0") or obs["su"][1].strip() == "0":
            return False, f"su succeeded: {obs['su']}"
        su = f"; setuid su ran with uids {'/'.join(obs['su_uids'])} (bit ignored) and failed"
    return True, (
        f"{len(obs['attempts'])} set*id calls EPERM; no_new_privs=1, no capabilities; "
        f"{len(obs['setuid_binaries'])} setuid binaries in the image gain nothing{su}"
    )


def _check_unshare(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    results = obs["results"]
    for name, seen in results.items():
        # Whatever namespace was made, it must not buy a mount, a device or a secret.
        if seen["mount"] == "ok" or (seen["mknod_mem"] == "ok" and env.runtime == "runc"):
            return False, f"after unshare({name}): mount {seen['mount']}, mknod {seen['mknod_mem']}"
        if isinstance(seen["shadow"], int):
            return False, f"after unshare({name}) /etc/shadow was readable"
    if "MOUNTED" in obs["tool"][1]:
        return False, f"`unshare -rm` mounted a filesystem: {obs['tool']}"
    made = sorted(name for name, seen in results.items() if seen["unshare"] == "ok")
    if env.runtime == "runc":
        if made:
            return False, f"namespaces created under runc: {made}"
        return (
            True,
            f"all {len(results)} unshare() calls and `unshare -rm` fail (EPERM): Docker's seccomp profile and no CAP_SYS_ADMIN",
        )
    # gVisor implements namespaces in its own kernel (the Sentry); nothing reaches the host's.
    if not is_gvisor(obs):
        return False, "runsc, but the kernel log does not show gVisor's kernel"
    return True, (
        f"created inside gVisor's own kernel only ({', '.join(made) or 'none'}); in them mount fails, "
        "/etc/shadow stays unreadable and a /dev/mem node opens nothing (see device-nodes); the host kernel's "
        "namespace code is never reached"
    )


def _check_ptrace(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    privileged = {pid: p for pid, p in obs["visible"].items() if "0" in p["uid"]}
    if privileged:
        return False, f"privileged processes visible to ptrace: {privileged}"
    host_pid = str(env.host_pid)
    # Attaching to that number is only fine if it is one of the sandbox's own processes.
    if obs["attach"].get(host_pid) == "attached" and host_pid not in obs["visible"]:
        return False, f"attached to pid {host_pid}, which the sandbox cannot see"
    pid1 = obs["visible"].get("1", {}).get("cmd", "?")
    return True, (
        f"only the sandbox's own {len(obs['visible'])} processes are visible, all uid 65534 (pid 1 is {pid1}); "
        f"ptrace: {', '.join(f'pid {k} {v}' for k, v in obs['attach'].items())}, so nothing outside or privileged is reachable"
    )


def _check_modules(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if obs and len([k for k in obs["attempts"] if not k.startswith(("write", "modprobe", "insmod"))]) < 5:
        return False, "the module syscalls were not tried (unknown architecture?)"
    return all_failed(obs, "attempts", "module/kexec")


_HOST_DEVICE_NAMES = ("mem", "kmem", "port", "kmsg", "sd", "vd", "xvd", "nvme", "loop", "dm-", "hd", "sg")


def _check_devices(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    host_devices = [n for n, kind in obs["dev"].items() if kind == "block" or n.startswith(_HOST_DEVICE_NAMES)]
    if host_devices:
        return False, f"host devices in /dev: {host_devices}"
    if obs["tun"] == "interface created":
        return False, "a TUN interface was created"
    made = succeeded(obs["made"])
    if env.runtime == "runc":
        if made:
            return False, f"mknod succeeded under runc: {made}"
        return (
            True,
            f"mknod fails for all {len(obs['made'])} nodes ({errno_names(obs['made'].values())}); /dev holds no host device",
        )
    # gVisor: a node is only a name in its own VFS; the device behind it is gVisor's or none.
    reached = [
        name for name, value in obs["opened"].items() if not name.endswith("null c1:3") and value.startswith("read")
    ]
    if reached:
        return False, f"device nodes reached a device: {reached}"
    null = [v for k, v in obs["opened"].items() if k.endswith("null c1:3")]
    return True, (
        f"gVisor lets mknod make {len(made)} names, but every host device behind them is absent "
        f"({errno_names(v for k, v in obs['opened'].items() if not k.endswith('null c1:3'))}); only gVisor's own "
        f"virtual null device works ({', '.join(null) or 'n/a'}); /dev holds no host device; tun: {obs['tun']}"
    )


def _check_release_agent(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    passed, text = all_failed(obs, "attempts", "cgroup write/mount")
    if passed and obs:
        text += f"; release_agent files visible: {len(obs['agents_found'])}; namespace step: {obs['unshare']}"
    return passed, text


_DOCKER_BINDS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/usr/sbin/docker-init", "/sbin/docker-init")


_PSEUDO_FS = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}


def _check_checklist(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    nonzero = {k: v for k, v in obs["caps"].items() if int(v or "0", 16)}
    if nonzero:
        return False, f"capabilities: {nonzero}"
    if obs["no_new_privs"] != 1:
        return False, "no_new_privs is off"
    written = succeeded(obs["writes"])
    if written:
        return False, f"kernel tunables written: {written}"
    if obs["pid1"] not in ("/sbin/docker-init", "/usr/sbin/docker-init", "/dev/init"):
        return False, f"pid 1 is {obs['pid1']}: the host's pid namespace?"
    if obs["interfaces"] != ["lo"]:
        return False, f"interfaces {obs['interfaces']}: the host's network namespace?"
    sensitive = []
    for _source, target, fstype, options in obs["mounts"]:
        if any(word in target for word in ("docker.sock", "containerd", "/var/lib/docker")) or target.split("/")[
            1:2
        ] == ["host"]:
            sensitive.append(target)
        host_backed = fstype not in _PSEUDO_FS and target != "/"
        if host_backed and target not in _DOCKER_BINDS:
            sensitive.append(f"{target} ({fstype})")
        if host_backed and "rw" in options:
            sensitive.append(f"{target} is a writable host mount")
    if sensitive:
        return False, f"sensitive mounts: {sensitive}"
    host = env.case_host.get("processes", [])
    if not host and env.local_daemon:
        return False, "no process of the sandbox found on the host"
    if env.runtime == "runc":
        if obs["seccomp"] != "2":
            return False, f"seccomp mode {obs['seccomp']} (want 2, filter)"
        bad = [
            p for p in host if p["uid"] != "65534" or int(p["cap_eff"], 16) or p["seccomp"] != "2" or p["nnp"] != "1"
        ]
        if bad:
            return False, f"host view: privileged sandbox processes {bad}"
        return True, (
            f"CapEff/Prm/Bnd/Amb 0, seccomp filter, no_new_privs, {len(obs['mounts'])} mounts none sensitive or writable "
            f"from the host, /proc/sys and /sys read-only, own pid and net namespaces; on the host all {len(host)} "
            "processes are uid 65534 with no capabilities and seccomp on"
        )
    if not is_gvisor(obs):
        return False, "runsc, but the kernel log does not show gVisor's kernel"
    # Under gVisor the seccomp filter is on the host side, around the Sentry: show that.
    unfiltered = [p for p in host if p["seccomp"] != "2" or p["nnp"] != "1"]
    root_sentry = [p for p in host if p["uid"] == "0" and not p["gofer"]]
    same_userns = [p for p in host if not p["gofer"] and not p["own_userns"]]
    if unfiltered or root_sentry or same_userns:
        return (
            False,
            f"host view: unfiltered {unfiltered}, root {root_sentry}, in the host's user namespace {same_userns}",
        )
    return True, (
        f"no capabilities, no_new_privs, {len(obs['mounts'])} mounts none sensitive; the kernel seen is gVisor's; "
        f"on the host its {len(host)} processes all run under a seccomp filter with no_new_privs, the Sentry as "
        "uid 65534 in its own user namespace"
    )


register(
    "setuid-to-root",
    "privilege",
    expected="set*id(0) EPERM; setuid binaries gain nothing (no_new_privs); no capabilities",
    check=_check_setuid,
)
register(
    "unshare-namespaces",
    "privilege",
    expected="runc: every unshare fails; runsc: only gVisor-internal namespaces, which grant nothing",
    check=_check_unshare,
)
register(
    "ptrace-processes",
    "privilege",
    expected="no privileged or outside process reachable by ptrace",
    check=_check_ptrace,
    fresh=True,
)
register(
    "load-kernel-modules",
    "privilege",
    expected="init/finit/delete_module, kexec, modprobe/uevent_helper/core_pattern writes all fail",
    check=_check_modules,
)
register(
    "device-nodes",
    "privilege",
    expected="runc: mknod EPERM; runsc: nodes open no host device; no host device in /dev",
    check=_check_devices,
)
register(
    "cgroup-release-agent",
    "privilege",
    expected="no writable release_agent/notify_on_release; cgroup mount in new namespaces fails",
    check=_check_release_agent,
)
register(
    "breakout-checklist",
    "privilege",
    expected="no capabilities, seccomp (runc) or gVisor, no sensitive mount, host sees unprivileged filtered processes",
    check=_check_checklist,
)
