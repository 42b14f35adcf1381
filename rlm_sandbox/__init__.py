"""rlm-sandbox: Recursive Language Models with model-written code in a hardened sandbox."""

from .errors import (
    BudgetExceededError,
    CompletionTimeoutError,
    ContextWindowExceededError,
    ContextError,
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
from .tools import Tool
from .sandbox.pool import SandboxPool

__all__ = [
    "RLM",
    "RLMResult",
    "Limits",
    "Usage",
    "SandboxConfig",
    "Sandbox",
    "DockerSandbox",
    "LocalSandbox",
    "SandboxPool",
    "ExecResult",
    "RLMSandboxError",
    "SandboxError",
    "SandboxDiedError",
    "ProtocolError",
    "LMError",
    "MissingAPIKeyError",
    "BudgetExceededError",
    "CompletionTimeoutError",
    "ContextWindowExceededError",
    "SandboxLimitError",
    "Tool",
    "ToolError",
    "InputError",
    "ContextError",
]
