"""The host side of an audit: secrets and canaries planted, and the evidence each case leaves.

For every case `AuditSession.run` checks on the host that no planted secret (an
environment variable, a file, the API key) shows up in anything the sandbox produced, and
that the canaries are untouched: the canary file is unchanged, the canary TCP/UDP servers
on the host's loopback and Docker bridge saw no packet.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import struct
import tempfile
import threading
from typing import Any

from ..sandbox.config import SandboxConfig
from . import sources


class _Canary:
    """A TCP or UDP server on the host that only counts who reached it."""

    def __init__(self, address: str, kind: int) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, kind)
        self.sock.bind((address, 0))
        self.address = address
        self.port = self.sock.getsockname()[1]
        self.kind = kind
        self.hits = 0
        if kind == socket.SOCK_STREAM:
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rlm-audit-canary", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if self.kind == socket.SOCK_STREAM:
                    conn, _ = self.sock.accept()
                    conn.close()
                else:
                    self.sock.recvfrom(65536)
                self.hits += 1
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _interface_address(name: str) -> str | None:
    """The IPv4 address of a host interface (docker0), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def _host_unix_sockets(limit: int = 64) -> list[str]:
    """Unix sockets the host has open, by path or abstract name (the sandbox will try each)."""
    names: list[str] = []
    try:
        with open("/proc/net/unix") as table:
            for line in table.read().splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 8 and parts[7] not in names:
                    names.append(parts[7])
    except OSError:
        pass
    for known in ("/var/run/docker.sock", "/run/containerd/containerd.sock"):
        if known not in names:
            names.insert(0, known)
    return names[:limit]


class AuditEnv:
    """The host side of an audit: secrets and canaries planted, and checked after each case.

    Use as a context manager. Sets a canary variable and OPENAI_API_KEY (to a canary
    key) in this process's environment, writes a canary file, and starts canary TCP and
    UDP servers on 127.0.0.1 (and ::1) and on the docker0 bridge address, if any.
    """

    def __init__(self, runtime: str = "runc", config: SandboxConfig | None = None) -> None:
        self.runtime = runtime
        self.config = (config or SandboxConfig()).model_copy(update={"runtime": runtime})
        self.marker = f"rlm-audit-{secrets.token_hex(8)}"
        self.canary_env = "RLM_AUDIT_CANARY_SECRET"
        self.secrets: dict[str, str] = {
            "canary variable": f"canary-env-{secrets.token_hex(16)}",
            "canary file": f"canary-file-{secrets.token_hex(16)}",
            "API key": f"sk-audit-{secrets.token_hex(20)}",
        }
        self.host_pid = os.getpid()
        self.bridge_address = _interface_address("docker0")
        self.local_daemon = not (self.config.docker_host or os.environ.get("DOCKER_HOST", "")).startswith(
            ("tcp://", "ssh://", "http")
        )
        self.case_host: dict[str, Any] = {}
        self._canaries: list[_Canary] = []
        self._saved_env: dict[str, str | None] = {}
        self._dir: str | None = None
        self.canary_file = ""

    # --- set-up and tear-down

    def __enter__(self) -> AuditEnv:
        real_key = os.environ.get("OPENAI_API_KEY")
        if real_key:
            self.secrets["the real OPENAI_API_KEY"] = real_key
        for name, value in (
            (self.canary_env, self.secrets["canary variable"]),
            ("OPENAI_API_KEY", self.secrets["API key"]),
        ):
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        self._dir = tempfile.mkdtemp(prefix="rlm-audit-")
        os.chmod(self._dir, 0o755)
        self.canary_file = os.path.join(self._dir, "canary-secret.txt")
        with open(self.canary_file, "w") as handle:
            handle.write(self.secrets["canary file"])
        os.chmod(self.canary_file, 0o644)  # readable by anyone on the host: only isolation protects it
        for address in ("127.0.0.1", "::1", self.bridge_address):
            if not address:
                continue
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                try:
                    self._canaries.append(_Canary(address, kind))
                except OSError:
                    pass  # e.g. no IPv6 on this host
        return self

    def __exit__(self, *exc_info: object) -> None:
        for canary in self._canaries:
            canary.close()
        self._canaries.clear()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._dir is not None:
            for name in os.listdir(self._dir):
                os.unlink(os.path.join(self._dir, name))
            os.rmdir(self._dir)
            self._dir = None

    # --- what the sandbox is told (never a secret value)

    def prelude(self) -> str:
        info = {
            "marker": self.marker,
            "canary_env": self.canary_env,
            "canary_file": self.canary_file,
            "host_pid": self.host_pid,
            "bridge": self.bridge_address,
            "tcp": [[c.address, c.port] for c in self._canaries if c.kind == socket.SOCK_STREAM],
            "udp": [
                [c.address, c.port] for c in self._canaries if c.kind == socket.SOCK_DGRAM and ":" not in c.address
            ],
            "host_sockets": _host_unix_sockets(),
        }
        # The values go in as JSON data, never spliced into code.
        return f"_audit = __import__('json').loads({json.dumps(info)!r})\n" + sources.source("_prelude")

    # --- evidence

    def tcp_accepted(self) -> int:
        return sum(c.hits for c in self._canaries if c.kind == socket.SOCK_STREAM)

    def udp_received(self) -> int:
        return sum(c.hits for c in self._canaries if c.kind == socket.SOCK_DGRAM)

    def secrets_in(self, text: str) -> list[str]:
        return [name for name, value in self.secrets.items() if value and value in text]

    def host_violations(self) -> list[str]:
        problems = []
        try:
            with open(self.canary_file) as handle:
                if handle.read() != self.secrets["canary file"]:
                    problems.append("the canary file changed")
        except OSError as exc:
            problems.append(f"the canary file is gone ({exc})")
        if self.tcp_accepted():
            problems.append(f"canary TCP servers accepted {self.tcp_accepted()} connections")
        if self.udp_received():
            problems.append(f"canary UDP servers received {self.udp_received()} datagrams")
        return problems
