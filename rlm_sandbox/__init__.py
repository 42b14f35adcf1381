"""rlm-sandbox: Recursive Language Models with model-written code in a hardened sandbox."""

from .errors import (
    BudgetExceededError,
    CompletionTimeoutError,
    ContextError,
    ContextWindowExceededError,
    InputError,
    LMError,
    MissingAPIKeyError,
    ProtocolError,
    RLMSandboxError,
    SandboxDiedError,
    SandboxError,
    SandboxLimitError,
    ToolError,
)
from .limits import Limits, Usage
from .rlm import RLM, RLMResult
from .sandbox.base import ExecResult, Sandbox
from .sandbox.config import SandboxConfig
from .sandbox.docker import DockerSandbox
from .sandbox.local import LocalSandbox
from .sandbox.pool import SandboxPool
from .tools import Tool

__all__ = [
    "RLM",
    "BudgetExceededError",
    "CompletionTimeoutError",
    "ContextError",
    "ContextWindowExceededError",
    "DockerSandbox",
    "ExecResult",
    "InputError",
    "LMError",
    "Limits",
    "LocalSandbox",
    "MissingAPIKeyError",
    "ProtocolError",
    "RLMResult",
    "RLMSandboxError",
    "Sandbox",
    "SandboxConfig",
    "SandboxDiedError",
    "SandboxError",
    "SandboxLimitError",
    "SandboxPool",
    "Tool",
    "ToolError",
    "Usage",
]
