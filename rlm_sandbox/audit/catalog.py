"""Every attack case, in the order the audit runs and reports them.

Importing the category modules registers their cases; the order below is the table's,
unchanged since the cases were first grouped by the issue's categories (escape, network,
denial of service, channel, injection). Each registered case is named here exactly once.
"""

from __future__ import annotations

from . import filesystem, injection, network, privilege, protocol, resources
from .registry import AttackCase, in_order

CATEGORY_MODULES = (network, privilege, filesystem, resources, protocol, injection)

RUN_ORDER = (
    # escape: the filesystem and privilege areas
    "docker-and-host-sockets",
    "host-secrets",
    "setuid-to-root",
    "unshare-namespaces",
    "mount-filesystems",
    "ptrace-processes",
    "load-kernel-modules",
    "write-root-filesystem",
    "device-nodes",
    "cgroup-release-agent",
    "breakout-checklist",
    # network
    "tcp-out",
    "udp-out",
    "dns-lookup",
    "cloud-metadata",
    "docker-bridge-gateway",
    "host-loopback-services",
    "raw-sockets",
    # denial of service: the resources area
    "fork-bomb",
    "memory-bomb",
    "tmpfs-and-shm-fill",
    "file-size-limit",
    "output-flood-lines",
    "output-flood-one-line",
    "cpu-spin",
    "sleep-forever",
    "signals-ignored",
    "setsid-orphans-and-daemons",
    "thread-bomb",
    "deep-recursion-crash",
    "os-exit-mid-exec",
    "kill-every-process",
    # channel: the protocol area
    "frame-oversized",
    "frame-truncated-then-hang",
    "frame-malformed-json",
    "frame-non-utf8",
    "frame-result-for-another-exec",
    "request-for-another-exec",
    "request-claiming-a-depth",
    "oversized-batch",
    "oversized-batch-in-sandbox",
    "llm-request-flood",
    "non-utf8-bytes",
    # injection
    "prompt-injection-api-key",
)

CASES: tuple[AttackCase, ...] = in_order(RUN_ORDER)
CASES_BY_NAME: dict[str, AttackCase] = {case.name: case for case in CASES}
