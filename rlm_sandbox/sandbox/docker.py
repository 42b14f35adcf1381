"""DockerSandbox: the REPL server in a hardened, network-less container.

The container's only link to the host is its attached stdin/stdout, opened through the
Docker API before the container starts (so the ready frame cannot be missed). Every
hardening default of DESIGN.md is set here from SandboxConfig; loosening one means
changing that field explicitly.

Containers are created with `StdinOnce`: when the host's attach connection closes for
any reason (close(), a crash, kill -9 of the host), the server reads end-of-file and
exits, and `auto_remove` deletes the container. Labels name the owner process so
anything that still slips through is reaped by the next start or `rlm-sandbox gc`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Ulimit

from ..errors import CompletionTimeoutError, DockerUnavailableError, RLMSandboxError, SandboxStartError
from .base import LLMHandler, Sandbox, Transport
from .config import SandboxConfig
from .image import ensure_image
from .memory import (
    BASE_MEMORY,
    ContextFootprint,
    check_host_memory,
    context_footprint,
    docker_size,
    format_size,
    is_local_daemon,
    parse_size,
)
from .protocol import AsciiText
from .transport import AttachSocketTransport

LABEL = "rlm-sandbox"
LABEL_OWNER_PID = "rlm-sandbox.owner-pid"
LABEL_OWNER_HOST = "rlm-sandbox.owner-host"
LABEL_OWNER_START = "rlm-sandbox.owner-start"
LABEL_STARTED = "rlm-sandbox.started"

# The attach connections are hijacked sockets outside the pool; the pool only serves
# short API calls, but 50 concurrent completions make many of those at once.
_API_POOL_SIZE = 64
_API_TIMEOUT_S = 120

log = logging.getLogger(__name__)
T = TypeVar("T")

# What docker-py raises when the daemon cannot be reached at all (socket gone, connection
# refused or reset, no answer in time). These are not DockerException subclasses, so
# without translation they would escape as raw `requests` errors.
_DAEMON_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


@cache
def docker_client(docker_host: str | None = None) -> docker.DockerClient:
    """One client per daemon for the whole process (the SDK's client is thread-safe)."""
    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, max_pool_size=_API_POOL_SIZE, timeout=_API_TIMEOUT_S)
        else:
            client = docker.from_env(max_pool_size=_API_POOL_SIZE, timeout=_API_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailableError(
            f"cannot reach a Docker daemon ({exc}). Is Docker installed and running, and may this user "
            "use it? Try `docker info`; `rlm-sandbox doctor` checks the whole set-up."
        ) from None
    return client


def _process_start_ticks(pid: int) -> str | None:
    """The kernel's start time of `pid`: with the pid it identifies a process even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # Field 22, counted after the parenthesised command name (which may hold spaces).
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _owner_labels() -> dict[str, str]:
    return {
        LABEL: "1",
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_OWNER_START: _process_start_ticks(os.getpid()) or "",
        LABEL_STARTED: f"{time.time():.3f}",
    }


def _owner_is_alive(labels: dict[str, str]) -> bool:
    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        return True  # another host's process: not ours to judge
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return False
    started = _process_start_ticks(pid)
    return started is not None and started == labels.get(LABEL_OWNER_START, started)


def reap_stale_containers(client: docker.DockerClient, *, include_live: bool = False) -> list[str]:
    """Remove sandbox containers whose owner process on this host is gone.

    With include_live, remove every sandbox container, whoever owns it.
    Returns the ids removed.
    """
    removed = []
    for summary in client.api.containers(all=True, filters={"label": LABEL}):
        owned_by_the_living = not include_live and _owner_is_alive(summary.get("Labels") or {})
        if not owned_by_the_living and _remove_container(client, summary["Id"]):
            removed.append(summary["Id"])
    return removed


def _remove_container(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.api.remove_container(container_id, force=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # removal already in progress (auto_remove got there first)
            return False
        raise


def _remove_quietly_now(client: docker.DockerClient, container_id: str) -> None:
    try:
        _remove_container(client, container_id)
    except (docker.errors.APIError, *_DAEMON_UNREACHABLE):
        _remove_later(client, container_id)


def _close_quietly(stream: object) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except OSError:
            pass


def _unpause(client: docker.DockerClient, container_id: str) -> None:
    """Thaw a container paused from outside before it is killed.

    A paused container cannot act on a signal; under gVisor the daemon then waits its
    full 10 s kill timeout before a forced removal goes through.
    """
    try:
        client.api.unpause(container_id)
    except docker.errors.APIError:
        pass  # not paused (409) or already gone (404): the usual case


_reaped_daemons: set[int] = set()
_reap_lock = threading.Lock()
# Containers this process could not remove because the daemon was away (say it went
# down between creating one and starting it): removed at the next sandbox start.
_unremoved: dict[docker.DockerClient, set[str]] = {}


def _remove_later(client: docker.DockerClient, container_id: str) -> None:
    with _reap_lock:
        _unremoved.setdefault(client, set()).add(container_id)


def _retry_removals(client: docker.DockerClient) -> None:
    with _reap_lock:
        pending = _unremoved.pop(client, set())
    for container_id in pending:
        try:
            _remove_container(client, container_id)
        except _DAEMON_UNREACHABLE:
            _remove_later(client, container_id)


def _reap_once(client: docker.DockerClient) -> None:
    with _reap_lock:
        if id(client) in _reaped_daemons:
            return
        _reaped_daemons.add(id(client))
    reap_stale_containers(client)


class DockerSandbox(Sandbox):
    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        llm_handler: LLMHandler | None = None,
        rlm_handler: LLMHandler | None = None,
        client: docker.DockerClient | None = None,
    ) -> None:
        super().__init__(config, llm_handler=llm_handler, rlm_handler=rlm_handler)
        self._client = client
        self.container_id: str | None = None
        self._created_at = 0.0
        self._attach: AttachSocketTransport | None = None
        self._attach_stream = None
        # The memory limit of the next container (and of the running one, once grown):
        # the config's, or BASE_MEMORY until a context says it needs more.
        self._memory_bytes = parse_size(self.config.mem_limit) if self.config.mem_limit else BASE_MEMORY
        self._footprint: ContextFootprint | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._call(docker_client, self.config.docker_host)
        return self._client

    # ------------------------------------------------------------- the deadline

    def _call(
        self, operation: Callable[..., T], *args: Any, on_late: Callable[[T], None] | None = None, **kwargs: Any
    ) -> T:
        """A Docker API call that gives up at this sandbox's deadline.

        A frozen daemon accepts connections and never answers; without this the
        caller would wait the SDK's 120 s timeout per call, several calls in a row.
        The call itself runs on in a daemon thread; `on_late` gets what it returns
        after all (a container created late is removed that way).
        """
        deadline = self.deadline
        if deadline is None:
            return operation(*args, **kwargs)
        # Past the deadline the call is still made (a kill, a removal must happen) but
        # not waited for, and the error is the deadline's, not the daemon's.
        late = deadline <= time.monotonic()
        outcome: dict[str, Any] = {}
        done = threading.Event()
        abandoned = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = operation(*args, **kwargs)
            except BaseException as exc:
                outcome["error"] = exc
            done.set()
            if abandoned.is_set() and on_late is not None and "value" in outcome:
                try:
                    on_late(outcome["value"])
                except Exception:
                    log.debug("cleanup after a late Docker answer failed", exc_info=True)

        threading.Thread(target=run, name="rlm-sandbox-docker-call", daemon=True).start()
        if not done.wait(max(deadline - time.monotonic(), 0.0)):
            abandoned.set()
            if done.is_set() and on_late is not None and "value" in outcome:
                on_late(outcome["value"])  # answered in the instant between the two
            if late:
                raise CompletionTimeoutError(
                    "the completion's deadline passed while the sandbox waited on the Docker daemon"
                )
            raise DockerUnavailableError(
                f"the Docker daemon did not answer {getattr(operation, '__name__', 'a call')} before the "
                "completion's deadline. Is it frozen or overloaded? Try `docker info`."
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _wait_s(self, longest: float) -> float:
        """How long a wait on Docker may last: `longest`, cut at the deadline."""
        if self.deadline is None:
            return longest
        return max(min(longest, self.deadline - time.monotonic()), 0.0)

    # ------------------------------------------------------------- memory

    @property
    def memory_limit_bytes(self) -> int:
        """The memory limit this sandbox's container has (or will be created with)."""
        return self._memory_bytes

    def _memswap(self) -> int | str:
        return self.config.memswap_limit if self.config.memswap_limit is not None else self._memory_bytes

    def _fit_context(self, context: object, payload: bytes | AsciiText) -> None:
        self._fit_footprint(context_footprint(context, payload))

    def _fit_footprint(self, footprint: ContextFootprint) -> None:
        self._footprint = footprint
        if self.config.mem_limit is not None:
            return  # an explicit limit wins; a load it cannot hold says what it needed
        need = footprint.memory_bytes
        if need <= self._memory_bytes:
            return
        try:
            check_host_memory(
                need,
                total=self._call(self.client.info).get("MemTotal"),
                local=is_local_daemon(self.client.api.base_url),
                footprint=footprint,
            )
        except _DAEMON_UNREACHABLE as exc:
            raise DockerUnavailableError(f"the Docker daemon did not answer ({exc}). Is it running?") from None
        self._memory_bytes = need
        if self.container_id is not None and self._transport is not None:
            self._grow(need)

    def _grow(self, need: int) -> None:
        """Raise a running container's limit; where the runtime cannot (gVisor), replace it.

        The sandbox has no context yet when this runs (a warm one from a pool), or is
        about to get a new one, so a replacement loses nothing that is not reloaded.
        """
        assert self.container_id is not None
        try:
            self._call(
                self.client.api.update_container, self.container_id, mem_limit=need, memswap_limit=self._memswap()
            )
            return
        except (docker.errors.APIError, *_DAEMON_UNREACHABLE) as exc:
            log.debug("cannot grow sandbox %s in place (%s); replacing it", self.container_id[:12], exc)
        self._transport = None
        self._terminate()  # load_context() or start() starts the bigger one

    # ------------------------------------------------------------- hooks

    def _launch(self) -> Transport:
        try:
            return self._launch_container()
        except (DockerUnavailableError, CompletionTimeoutError):
            self._terminate()
            raise
        except _DAEMON_UNREACHABLE as exc:
            self._terminate()
            raise DockerUnavailableError(
                f"the Docker daemon did not answer while starting a sandbox ({exc}). Is it running? Try `docker info`."
            ) from None

    def _launch_container(self) -> Transport:
        client = self.client
        self._call(_reap_once, client)
        self._call(_retry_removals, client)
        image = self._call(ensure_image, client, self.config)
        config = self.config
        host_config = client.api.create_host_config(
            network_mode=config.network_mode,
            cap_drop=list(config.cap_drop),
            cap_add=list(config.cap_add) or None,
            security_opt=list(config.security_opt),
            read_only=config.read_only,
            tmpfs={"/tmp": config.tmpfs_mount_options()},
            pids_limit=config.pids_limit,
            init=config.init,
            mem_limit=self._memory_bytes,
            memswap_limit=self._memswap(),
            nano_cpus=config.nano_cpus,
            ulimits=[
                Ulimit(name="nofile", soft=config.nofile, hard=config.nofile),
                Ulimit(name="fsize", soft=config.fsize_bytes, hard=config.fsize_bytes),
            ],
            log_config=LogConfig(type="none"),
            auto_remove=True,
            runtime=config.runtime,
        )
        self._created_at = time.time()
        try:
            created = self._call(
                client.api.create_container,
                image,
                on_late=lambda created: _remove_quietly_now(client, created["Id"]),
                command=["--max-output-bytes", str(config.max_output_bytes)],
                user=config.user,
                # Only what the server needs: no host variable is ever passed through.
                environment={"HOME": "/tmp", "LANG": "C.UTF-8", **config.environment},
                working_dir="/tmp",
                labels=_owner_labels(),
                stdin_open=True,
                detach=False,  # with stdin_open this sets StdinOnce: host gone => stdin EOF
                tty=False,
                network_disabled=config.network_mode == "none",
                host_config=host_config,
            )
        except docker.errors.APIError as exc:
            raise SandboxStartError(f"could not create the sandbox container: {exc.explanation or exc}") from None
        self.container_id = created["Id"]
        try:
            attached = self._call(
                client.api.attach_socket,
                self.container_id,
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
                on_late=_close_quietly,
            )
            transport = AttachSocketTransport(getattr(attached, "_sock", attached))
            # The SDK's socket file object holds the socket open (socket.close() waits for
            # it) inside a reference cycle with the HTTP response: close it explicitly, or
            # each sandbox keeps a descriptor until the cyclic garbage collector runs.
            self._attach, self._attach_stream = transport, attached
            self._call(client.api.start, self.container_id)
        except docker.errors.APIError as exc:
            self._terminate()
            raise SandboxStartError(f"could not start the sandbox container: {exc.explanation or exc}") from None
        return transport

    def _interrupt(self) -> None:
        if self.container_id is None:
            return
        try:
            # tini (init=True) is PID 1 and forwards the signal to the server only.
            self._call(self.client.api.kill, self.container_id, signal="SIGINT")
        except (docker.errors.APIError, RLMSandboxError, *_DAEMON_UNREACHABLE):
            pass  # already gone (the read loop will see end-of-file), or no daemon: the grace runs out

    def _terminate(self) -> None:
        container_id, self.container_id = self.container_id, None
        attach, self._attach = self._attach, None
        stream, self._attach_stream = self._attach_stream, None
        if container_id is None:
            if attach is not None:
                attach.close()
            _close_quietly(stream)
            return
        removal = threading.Thread(
            target=self._remove_quietly, args=(container_id,), name="rlm-sandbox-remove", daemon=True
        )
        removal.start()
        if attach is not None:
            # Read (and drop) whatever the container still writes until it is gone: one
            # blocked writing to its stdout, because the host stopped reading (a protocol
            # violation mid-flood), cannot be killed under gVisor until that write completes,
            # and the removal would hang for minutes.
            until = time.monotonic() + self._wait_s(_API_TIMEOUT_S)
            try:
                while removal.is_alive() and time.monotonic() < until and attach.receive(0.05) != b"":
                    pass
            except Exception:
                pass
            attach.close()
        _close_quietly(stream)
        # Past the deadline the removal goes on in the background: a daemon that comes
        # back removes the container; one that never does took it down anyway.
        removal.join(self._wait_s(_API_TIMEOUT_S))

    def _remove_quietly(self, container_id: str) -> None:
        try:
            _unpause(self.client, container_id)
            _remove_container(self.client, container_id)
        except _DAEMON_UNREACHABLE as exc:
            # The attach connection is closed, so a running server sees end-of-file and
            # exits by itself (StdinOnce); one never started is removed at the next start.
            log.warning("could not remove sandbox container %s, the daemon did not answer: %s", container_id[:12], exc)
            _remove_later(self.client, container_id)
        except docker.errors.APIError as exc:
            log.warning("could not remove sandbox container %s: %s", container_id[:12], exc)

    def _death_cause(self) -> str:
        container_id = self.container_id
        if container_id is None:
            return "the sandbox container is gone"
        client = self.client
        exit_code = None
        oom_killed = False
        try:
            exit_code = self._call(client.api.wait, container_id, timeout=5).get("StatusCode")
            oom_killed = bool(self._call(client.api.inspect_container, container_id)["State"].get("OOMKilled"))
        except (docker.errors.NotFound, docker.errors.APIError):
            pass  # auto_remove was quicker: the daemon's event log still knows
        except Exception:  # a wait that timed out: the container is still running
            pass
        if not oom_killed and self._wait_s(1.0) > 0:
            oom_killed, logged_exit = self._oom_from_events(container_id)
            exit_code = exit_code if exit_code is not None else logged_exit
        if oom_killed:
            return self._oom_explanation()
        if exit_code is None:
            return "the sandbox container stopped for an unknown reason"
        if exit_code > 128:
            return f"the sandbox container was killed by signal {exit_code - 128} (exit code {exit_code})"
        return f"the sandbox container exited with code {exit_code}"

    def _oom_explanation(self) -> str:
        limit = docker_size(self._memory_bytes)
        message = f"the sandbox ran out of memory and was killed (OOMKilled; memory limit {limit})"
        footprint = self._footprint
        if footprint is not None and footprint.memory_bytes > self._memory_bytes:
            return (
                f"{message}: its {footprint.kind} context ({format_size(footprint.payload_bytes)} encoded) needs "
                f"about {format_size(footprint.memory_bytes)}. Set SandboxConfig(mem_limit="
                f"{docker_size(footprint.memory_bytes)!r}) or more, or leave mem_limit unset to size it automatically"
            )
        return f"{message}. Give it more with SandboxConfig(mem_limit=...) above {limit}"

    def _oom_from_events(self, container_id: str) -> tuple[bool, int | None]:
        oom_killed, exit_code = False, None
        try:
            events = self._call(
                self.client.api.events,
                since=int(self._created_at) - 1,
                until=time.time(),
                filters={"container": container_id},
                decode=True,
            )
            for event in events:
                action = event.get("Action") or event.get("status")
                if action == "oom":
                    oom_killed = True
                elif action == "die":
                    code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
                    exit_code = int(code) if code and code.isdigit() else exit_code
        except (docker.errors.DockerException, RLMSandboxError, *_DAEMON_UNREACHABLE):
            pass
        return oom_killed, exit_code
