"""Every error this package raises on purpose, in one hierarchy.

Callers catch `RLMSandboxError` for "anything from us", or a specific class when they
can do something about that one case.
"""

from __future__ import annotations


class RLMSandboxError(Exception):
    """Base class of all errors raised by rlm_sandbox."""


class SandboxError(RLMSandboxError):
    """The sandbox could not be started, used or kept alive."""


class DockerUnavailableError(SandboxError):
    """No Docker daemon answers (not installed, not running, or no permission)."""


class ImageError(SandboxError):
    """The sandbox image is missing and could not be built."""


class SandboxStartError(SandboxError):
    """A sandbox was created but never said it was ready."""


class SandboxDiedError(SandboxError):
    """The sandbox process or container ended while the host still needed it."""

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class ProtocolError(SandboxError):
    """A frame from the sandbox was oversized, malformed or out of place.

    Everything the sandbox sends is untrusted: this is raised instead of acting on it.
    """


class SandboxClosedError(SandboxError):
    """The sandbox was used after `close()`."""


class LMError(RLMSandboxError):
    """The language-model API failed after retries, or answered with garbage."""


class MissingAPIKeyError(LMError):
    """No API key was given and none was found in the environment or `.env`."""


class BudgetExceededError(RLMSandboxError):
    """A limit of the completion (calls, tokens, cost) would be exceeded."""


class CompletionTimeoutError(BudgetExceededError):
    """The wall-clock deadline of the completion has passed."""


class PathNotAllowedError(RLMSandboxError):
    """A path handed to a server (e.g. `rlm-sandbox mcp`) lies outside the directories it may read."""


class ContextTooLargeError(RLMSandboxError):
    """A context handed to a server is larger than the server accepts."""
