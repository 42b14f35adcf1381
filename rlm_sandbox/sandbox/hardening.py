"""Check, from inside a running sandbox, that the hardening actually took effect.

`PROBE_CODE` runs in the sandbox like any model-written code and prints one JSON line
of raw observations; `probe_hardening` compares them with what the SandboxConfig
asked for. The observations come from inside the sandbox, so they are validated like
any other sandbox output before use.

Under gVisor (runtime "runsc") the sandbox sees gVisor's kernel, not the host's: it
has no cgroup files, no seccomp or no_new_privs status (gVisor itself is the syscall
filter, and the host's limits apply to the whole gVisor sandbox from outside). Those
checks are reported as informational there, and never fail the probe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import SandboxError
from .config import SandboxConfig

# Runs inside the sandbox: standard library only, never raises (a missing file is
# reported as null), prints exactly one JSON line, and leaves no new global behind.
PROBE_CODE = r"""
def _rlm_probe():
    import errno, json, os, resource

    def read(path):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None

    def table_ifaces(path, column):
        text = read(path)
        if text is None:
            return None
        rows = [line.split() for line in text.splitlines()[1:] if line.strip()]
        return [row[column] for row in rows if len(row) > abs(column)]

    status = {}
    for line in (read("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
            status[key] = value.strip()

    mounts = {}
    for line in (read("/proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts[fields[1]] = {"fstype": fields[2], "options": fields[3].split(",")}

    dev = read("/proc/net/dev")
    interfaces = None if dev is None else [
        line.split(":")[0].strip() for line in dev.splitlines()[2:] if ":" in line
    ]

    try:
        with open("/var/tmp/.rlm-probe", "w"):
            pass
        os.unlink("/var/tmp/.rlm-probe")
        root_write = "ok"
    except OSError as exc:
        root_write = errno.errorcode.get(exc.errno, str(exc.errno))

    def first(*paths):
        for path in paths:
            text = read(path)
            if text is not None:
                return text.strip()
        return None

    try:
        tmp = os.statvfs("/tmp")
        tmp_size = tmp.f_blocks * tmp.f_frsize
    except OSError:
        tmp_size = None

    report = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "status": status,
        "interfaces": interfaces,
        "routes": table_ifaces("/proc/net/route", 0),
        "routes6": table_ifaces("/proc/net/ipv6_route", -1),
        "root_mount": mounts.get("/"),
        "root_statvfs_ro": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
        "root_write": root_write,
        "tmp_mount": mounts.get("/tmp"),
        "tmp_size": tmp_size,
        "pids_max": first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
        "memory_max": first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "fsize": list(resource.getrlimit(resource.RLIMIT_FSIZE)),
        "env": dict(os.environ),
    }
    print("RLM_PROBE " + json.dumps(report))

_rlm_probe()
del _rlm_probe
"""
_MARKER = "RLM_PROBE "

UNAVAILABLE = "unavailable"
# Checks that read files gVisor does not provide (see the module docstring).
RUNSC_INFORMATIONAL = frozenset({"no_new_privs", "seccomp", "pids_limit", "memory_limit"})
# Variables the sandbox has for its own reasons (Docker, the image, Python's locale
# coercion), which may equal the host's value by coincidence.
_BENIGN_ENV = frozenset({"PATH", "HOME", "HOSTNAME", "PWD", "LANG", "LC_CTYPE", "LC_ALL", "TERM"})
_SECRET_NAME = re.compile(r"API_KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class _Mount(BaseModel):
    fstype: str
    options: list[str]


class _ProbeReport(BaseModel):
    """The probe's JSON line; every field optional where a kernel may not provide it."""

    model_config = ConfigDict(extra="ignore")

    uid: int
    gid: int
    status: dict[str, str]
    interfaces: list[str] | None
    routes: list[str] | None
    routes6: list[str] | None
    root_mount: _Mount | None
    root_statvfs_ro: bool
    root_write: str
    tmp_mount: _Mount | None
    tmp_size: int | None
    pids_max: str | None
    memory_max: str | None
    nofile: tuple[int, int]
    fsize: tuple[int, int]
    env: dict[str, str]


class HardeningCheck(BaseModel):
    name: str
    expected: str
    observed: str
    ok: bool
    informational: bool = False

    @property
    def failed(self) -> bool:
        """A real failure: informational checks never fail the probe."""
        return not self.ok and not self.informational


def _parse_size(size: str) -> int:
    """Docker's size notation ("512m", "64m", "1g") in bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmg]?)b?\s*", size.lower())
    if match is None:
        raise ValueError(f"not a size: {size!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _show_bytes(value: str | None) -> str:
    """A cgroup limit as read: a byte count, "max", or nothing at all."""
    if value is None:
        return UNAVAILABLE
    return _mib(int(value)) if value.isdigit() else value


def _limit_pair(pair: tuple[int, int], show: Callable[[int], str] = str) -> str:
    return "/".join("unlimited" if value < 0 else show(value) for value in pair)


def _leaked_env(env: dict[str, str], config: SandboxConfig) -> list[str]:
    """Variables that look like they came from the host, or carry a secret."""
    leaked = []
    for key, value in env.items():
        if key in config.environment or key in _BENIGN_ENV:
            continue
        if os.environ.get(key) == value or _SECRET_NAME.search(key):
            leaked.append(key)
    return sorted(leaked)


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text is not None else None
    except ValueError:
        return None


def _identity_checks(report: _ProbeReport, config: SandboxConfig) -> list[HardeningCheck]:
    cap_eff = report.status.get("CapEff", UNAVAILABLE)
    want_no_caps = "ALL" in config.cap_drop and not config.cap_add
    want_nnp = "1" if "no-new-privileges" in config.security_opt else "0"
    nnp = report.status.get("NoNewPrivs", UNAVAILABLE)
    seccomp = report.status.get("Seccomp", UNAVAILABLE)
    # 2 is filter mode: Docker's default seccomp profile is loaded.
    want_seccomp = "0" if "seccomp=unconfined" in config.security_opt else "2"
    return [
        HardeningCheck(
            name="user",
            expected=config.user,
            observed=f"{report.uid}:{report.gid}",
            ok=f"{report.uid}:{report.gid}" == config.user,
        ),
        HardeningCheck(
            name="capabilities",
            expected="CapEff 0" if want_no_caps else "some",
            observed=f"CapEff {cap_eff}" if _hex(cap_eff) is None else f"CapEff {_hex(cap_eff):#x}",
            ok=_hex(cap_eff) is not None and (_hex(cap_eff) == 0) == want_no_caps,
        ),
        HardeningCheck(name="no_new_privs", expected=want_nnp, observed=nnp, ok=nnp == want_nnp),
        HardeningCheck(name="seccomp", expected=want_seccomp, observed=seccomp, ok=seccomp == want_seccomp),
    ]


def _network_checks(report: _ProbeReport, config: SandboxConfig) -> list[HardeningCheck]:
    isolated = config.network_mode == "none"
    interfaces = UNAVAILABLE if report.interfaces is None else ",".join(report.interfaces) or "none"
    # The loopback device carries local routes (and IPv6's unreachable default);
    # a route through any other device is a way out.
    routes = [iface for iface in (report.routes or []) + (report.routes6 or []) if iface != "lo"]
    route_view = UNAVAILABLE if report.routes is None and report.routes6 is None else ",".join(routes) or "none"
    return [
        HardeningCheck(
            name="network_interfaces",
            expected="lo" if isolated else "any",
            observed=interfaces,
            ok=not isolated or report.interfaces == ["lo"],
        ),
        HardeningCheck(
            name="routes",
            expected="none but lo" if isolated else "any",
            observed=route_view,
            ok=not isolated or route_view == "none",
        ),
    ]


def _filesystem_checks(report: _ProbeReport, config: SandboxConfig) -> list[HardeningCheck]:
    # gVisor leaves the statvfs flag unset but lists the mount as ro. A successful
    # write into the image's world-writable /var/tmp disproves either.
    root_ro = report.root_statvfs_ro or (report.root_mount is not None and "ro" in report.root_mount.options)
    root_observed = ("ro" if root_ro else "rw") + f", write {report.root_write}"
    tmp = report.tmp_mount
    tmp_observed = UNAVAILABLE if tmp is None else f"{tmp.fstype} {','.join(tmp.options)}"
    want_tmp_options = set(config.tmpfs_options.split(","))
    if config.runtime == "runsc":
        # gVisor's /proc/mounts shows noexec but not nosuid or nodev, so only noexec
        # can be seen from inside.
        want_tmp_options &= {"noexec"}
    want_size = _parse_size(config.tmpfs_size)
    return [
        HardeningCheck(
            name="rootfs_read_only",
            expected="ro" if config.read_only else "rw",
            observed=root_observed,
            ok=(root_ro and report.root_write != "ok") == config.read_only,
        ),
        HardeningCheck(
            name="tmp_mount",
            expected=f"tmpfs {','.join(sorted(want_tmp_options))}",
            observed=tmp_observed,
            ok=tmp is not None and tmp.fstype == "tmpfs" and want_tmp_options <= set(tmp.options),
        ),
        HardeningCheck(
            name="tmp_size",
            expected=_mib(want_size),
            observed=UNAVAILABLE if report.tmp_size is None else _mib(report.tmp_size),
            # Filesystems round to their block size; a few percent is that, not a leak.
            ok=report.tmp_size is not None and abs(report.tmp_size - want_size) <= want_size // 20,
        ),
    ]


def _limit_checks(report: _ProbeReport, config: SandboxConfig) -> list[HardeningCheck]:
    memory = _parse_size(config.mem_limit or "512m")  # a probe loads no context: the base size
    fsize = (config.fsize_bytes, config.fsize_bytes)
    nofile = (config.nofile, config.nofile)
    return [
        HardeningCheck(
            name="pids_limit",
            expected=str(config.pids_limit),
            observed=report.pids_max or UNAVAILABLE,
            ok=report.pids_max == str(config.pids_limit),
        ),
        HardeningCheck(
            name="memory_limit",
            expected=_mib(memory),
            observed=_show_bytes(report.memory_max),
            ok=report.memory_max == str(memory),
        ),
        HardeningCheck(
            name="nofile", expected=_limit_pair(nofile), observed=_limit_pair(report.nofile), ok=report.nofile == nofile
        ),
        HardeningCheck(
            name="fsize",
            expected=_limit_pair(fsize, _mib),
            observed=_limit_pair(report.fsize, _mib),
            ok=report.fsize == fsize,
        ),
    ]


def _environment_check(report: _ProbeReport, config: SandboxConfig) -> HardeningCheck:
    leaked = _leaked_env(report.env, config)
    return HardeningCheck(
        name="environment",
        expected="no host variable",
        observed=("leaked: " + ", ".join(leaked)) if leaked else ", ".join(sorted(report.env)) or "empty",
        ok=not leaked,
    )


def _parse_report(stdout: str) -> _ProbeReport:
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARKER):
            try:
                return _ProbeReport.model_validate_json(line[len(_MARKER) :])
            except ValidationError as exc:
                raise SandboxError(f"the hardening probe printed an invalid report: {exc.errors()[0]['msg']}") from None
    raise SandboxError(f"the hardening probe printed no report; its output began {stdout[:200]!r}")


def probe_hardening(sandbox, config: SandboxConfig | None = None, *, timeout_s: float = 30.0) -> list[HardeningCheck]:
    """Run PROBE_CODE in `sandbox` and compare what it saw with `config`.

    `sandbox` is anything with `.execute(code, timeout_s=...)` returning an object
    with `.stdout` and `.error`; `config` is what it was started with (default: the
    hardened defaults).
    """
    config = config or SandboxConfig()
    result = sandbox.execute(PROBE_CODE, timeout_s=timeout_s)
    if result.error:
        raise SandboxError(f"the hardening probe failed in the sandbox: {result.error}")
    report = _parse_report(result.stdout)
    checks = [
        *_identity_checks(report, config),
        *_network_checks(report, config),
        *_filesystem_checks(report, config),
        *_limit_checks(report, config),
        _environment_check(report, config),
    ]
    if config.runtime == "runsc":
        checks = [
            check.model_copy(update={"informational": True}) if check.name in RUNSC_INFORMATIONAL else check
            for check in checks
        ]
    return checks
