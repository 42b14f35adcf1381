"""Sandboxes: where model-written code runs."""

from __future__ import annotations

from .base import ExecResult, LLMHandler, Sandbox
from .config import SandboxConfig


def sandbox_for(kind: str, config: SandboxConfig | None = None, **handlers) -> Sandbox:
    """A sandbox by name: "local" (no isolation), or a Docker runtime ("runc", "runsc")."""
    config = config or SandboxConfig()
    if kind == "local":
        from .local import LocalSandbox

        return LocalSandbox(config, **handlers)
    from .docker import DockerSandbox

    return DockerSandbox(config.model_copy(update={"runtime": kind}), **handlers)


__all__ = ["ExecResult", "LLMHandler", "Sandbox", "SandboxConfig", "sandbox_for"]
