"""Every error this package raises on purpose, in one hierarchy.

Callers catch `RLMSandboxError` for "anything from us", or a specific class when they
can do something about that one case.
"""

from __future__ import annotations


class RLMSandboxError(Exception):
    """Base class of all errors raised by rlm_sandbox."""


class InputError(RLMSandboxError):
    """What the user gave (an argument, a file, a context) is unusable as given.

    The message says what is wrong and, in parentheses, how to fix it; the CLI prints
    it as one line and exits 2.
    """

    def __init__(self, what: str, fix: str | None = None) -> None:
        super().__init__(f"{what} ({fix})" if fix else what)
        self.what = what
        self.fix = fix


class ContextError(InputError, TypeError):
    """A context holds something the sandbox cannot receive faithfully (a non-str dict key, a set...)."""


class EvalError(InputError):
    """A tasks file, a task or an eval run is unusable as given."""


class SandboxError(RLMSandboxError):
    """The sandbox could not be started, used or kept alive."""


class DockerUnavailableError(SandboxError):
    """No Docker daemon answers (not installed, not running, or no permission)."""


class ImageError(SandboxError):
    """The sandbox image is missing and could not be built."""


class SandboxStartError(SandboxError):
    """A sandbox was created but never said it was ready."""


class SandboxMemoryError(SandboxError):
    """The Docker host cannot give a sandbox the memory its context needs.

    Raised before any container starts; the message says how much is needed.
    """


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


class ContextWindowExceededError(LMError):
    """A request does not fit the model's context window.

    Raised before sending when the estimate already shows it (no call is spent), or
    from the server's own context-length error. `window` is the limit in tokens when
    known, `tokens` the request's (estimated or reported) size.
    """

    def __init__(self, message: str, *, window: int | None = None, tokens: int | None = None) -> None:
        super().__init__(message)
        self.window = window
        self.tokens = tokens


class BudgetExceededError(RLMSandboxError):
    """A limit of the completion (calls, tokens, cost) would be exceeded."""


class CompletionTimeoutError(BudgetExceededError):
    """The wall-clock deadline of the completion has passed."""


class RepeatedFailureError(RLMSandboxError):
    """The model made the same failing step several turns in a row; the node stopped
    rather than spend its remaining turns and budget on it."""


class SandboxLimitError(SandboxError):
    """A child RLM could not get a sandbox: `Limits.max_sandboxes` are alive and none can be freed."""


class ToolError(RLMSandboxError):
    """A host tool failed, timed out, or was called with arguments it does not accept.

    Inside the sandbox, code sees a `ToolError` of its own carrying this message.
    """


class ToolDefinitionError(RLMSandboxError, ValueError):
    """A tool given to `RLM(tools=...)` cannot be offered (bad name, no callable)."""


class MissingExtraError(RLMSandboxError, ImportError):
    """An optional feature was used without its extra installed; the message names the pip command."""


class UnknownProviderError(InputError, ValueError):
    """`RLM(provider=...)` or `--provider` names a provider this package has no client for."""


class PathNotAllowedError(RLMSandboxError):
    """A path handed to a server (e.g. `rlm-sandbox mcp`) lies outside the directories it may read."""


class ContextTooLargeError(RLMSandboxError):
    """A context handed to a server is larger than the server accepts."""
