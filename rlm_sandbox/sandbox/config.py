"""SandboxConfig: every knob of a sandbox, with the hardened values as defaults.

Loosening any control means setting its field explicitly; nothing here is read from
the environment, so a stray variable can never weaken a sandbox.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024


class SandboxConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- what runs
    image: str | None = Field(
        default=None, description="Image to run; None means the built-in image, built on first use."
    )
    runtime: str = Field(default="runc", description='"runc", or "runsc" for gVisor.')
    docker_host: str | None = Field(default=None, description="Daemon URL; None uses DOCKER_HOST or the local socket.")

    # --- hardening (DESIGN.md, "Hardening defaults")
    network_mode: str = "none"
    user: str = "65534:65534"
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    read_only: bool = True
    tmpfs_size: str = "64m"
    tmpfs_options: str = "noexec,nosuid,nodev"
    pids_limit: int = 128
    init: bool = True
    mem_limit: str | None = Field(
        default=None,
        description=(
            "None: sized automatically, 512 MiB plus what loading the context needs (the host's "
            "own figure, never the container's). A value such as '2g' is used as given, whatever the context."
        ),
    )
    memswap_limit: str | None = Field(default=None, description="None: same as the memory limit, i.e. no swap.")
    nano_cpus: int = 1_000_000_000
    nofile: int = 1024
    fsize_bytes: int = 64 * MiB
    environment: dict[str, str] = Field(
        default_factory=dict, description="Extra variables for the sandbox; no host variable passes otherwise."
    )

    # --- protocol and lifetime
    max_output_bytes: int = Field(default=1 * MiB, description="Captured stdout+stderr kept per exec.")
    max_frame_bytes: int = Field(default=16 * MiB, description="Largest frame accepted from the sandbox.")
    interrupt_grace_s: float = Field(
        default=2.0, description="After a timed-out exec is interrupted, how long before the sandbox is killed."
    )
    start_timeout_s: float = 60.0
    exec_timeout_s: float = 60.0

    def tmpfs_mount_options(self) -> str:
        return f"size={self.tmpfs_size},{self.tmpfs_options}"

    def memswap(self) -> str:
        """The swap-inclusive limit for a sandbox without a context (see DockerSandbox for one with)."""
        return self.memswap_limit if self.memswap_limit is not None else (self.mem_limit or "512m")
