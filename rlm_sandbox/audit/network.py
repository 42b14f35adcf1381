"""Network attacks: out by TCP, UDP, DNS or raw sockets, to cloud metadata, the Docker bridge or the host's loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sandbox.base import ExecResult
from .checks import all_failed, errno_names
from .registry import Check, Observation, register

if TYPE_CHECKING:
    from .env import AuditEnv


def _check_tcp_out(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    return all_failed(obs, "attempts", "TCP connect")


def _check_udp(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    passed, text = all_failed(obs, "attempts", "UDP send")
    if not passed or not obs:
        return passed, text
    # Loopback sends "succeed" into the sandbox's own lo; the host canaries prove nothing arrived.
    sent = [k for k, v in obs["attempts"].items() if str(v).startswith("sent")]
    external = [k for k in sent if not k.startswith("127.")]
    if external:
        return False, f"datagrams left for {external}"
    return True, f"{text}; the host's UDP canaries received {env.udp_received()} datagrams"


def _check_dns(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    if not obs:
        return False, f"no observation ({result.error})"
    resolved = {k: v for k, v in obs["attempts"].items() if v.startswith("resolved") and k != "localhost"}
    if resolved:
        return False, f"names resolved: {resolved}"
    local = obs["attempts"].get("localhost", "")
    return True, (
        f"{len(obs['attempts']) - 1} names fail to resolve ({errno_names(v.split()[0] for k, v in obs['attempts'].items() if k != 'localhost')}); "
        f"nameservers listed {obs['nameservers'] or 'none'} are unreachable; localhost: {local}"
    )


def _check_metadata(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    return all_failed(obs, "attempts", "metadata connect")


def _check_canary_tcp(where: str) -> Check:
    def check(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
        passed, text = all_failed(obs, "attempts", "TCP connect")
        if not passed or not obs:
            return passed, text
        if obs["canaries"] < 1:
            if where == "bridge" and not env.bridge_address:
                return True, f"{text}; this host has no docker0 bridge to plant a canary on"
            return False, "no canary server was planted to try"
        return (
            True,
            f"{text}; the {obs['canaries']} canary server(s) on the host's {where} saw {env.tcp_accepted()} connections",
        )

    return check


def _check_raw(result: ExecResult, obs: Observation | None, env: AuditEnv) -> tuple[bool, str]:
    passed, text = all_failed(obs, "attempts", "raw socket")
    if passed and obs and obs["interfaces"] != ["lo"]:
        return False, f"interfaces {obs['interfaces']}"
    return passed, f"{text} (no CAP_NET_RAW); interfaces: lo only" if passed else text


register(
    "tcp-out",
    "network",
    expected="every outbound TCP connect fails at once (no route)",
    check=_check_tcp_out,
)
register(
    "udp-out",
    "network",
    expected="no datagram leaves; the host's UDP canaries receive nothing",
    check=_check_udp,
)
register("dns-lookup", "network", expected="no name resolves", check=_check_dns)
register(
    "cloud-metadata",
    "network",
    expected="169.254.169.254 and friends unreachable",
    check=_check_metadata,
)
register(
    "docker-bridge-gateway",
    "network",
    expected="the docker0 gateway and a canary server on it unreachable",
    check=_check_canary_tcp("Docker bridge"),
)
register(
    "host-loopback-services",
    "network",
    expected="a canary server on the host's 127.0.0.1 unreachable",
    check=_check_canary_tcp("loopback"),
)
register("raw-sockets", "network", expected="raw and packet sockets refused (no CAP_NET_RAW)", check=_check_raw)
