"""`rlm-sandbox mcp`: the RLM as one tool, `rlm_complete`, for any MCP client.

Built on the official `mcp` SDK (`pip install 'rlm-sandbox[mcp]'`), over stdio, or
streamable HTTP with `--http` (bound to 127.0.0.1 unless `--host` says otherwise).

Whoever calls the tool is usually another model's agent, so every argument is
untrusted, like a context is:
- files are read only from under the `--root` directories, judged on the fully
  resolved path (symlinks included) and checked again on the file actually opened;
- the caller may ask for limits, but each is clamped to the server's own maxima (the
  `--max-*` / `--timeout` flags), and a maximum the server left unset cannot be
  raised past the library's default either;
- the model, endpoint and API key are the server's (flags and its own environment);
  no argument can name another endpoint or carry a key;
- every failure comes back as a tool error (`isError: true`) whose text says what to
  do, never as a crash of the server.

The SDK is imported only when the server is built, so `rlm-sandbox --help` works
without the extra. This module avoids `from __future__ import annotations`: the SDK
reads the tool's parameter annotations at registration, so they must be real types.
"""

import argparse
import asyncio
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ContextTooLargeError, PathNotAllowedError, RLMSandboxError
from ..limits import Limits, Usage
from ..sandbox.config import SandboxConfig

__all__ = [
    "CompletionSummary",
    "ContextRoots",
    "MCPServerConfig",
    "ToolLimits",
    "add_mcp_command",
    "build_server",
    "clamp_limits",
]

DEFAULT_MAX_CONTEXT_BYTES = 256 * 1024 * 1024
# An MCP client waits on the call; a run with no deadline could hold it for hours.
DEFAULT_TIMEOUT_S = 900.0
TOOL_NAME = "rlm_complete"


class ToolLimits(BaseModel):
    """Limits a caller may ask for; each is clamped to the server's maximum."""

    model_config = ConfigDict(extra="forbid")

    max_iterations: int | None = Field(default=None, gt=0, description="root-model turns")
    max_depth: int | None = Field(default=None, gt=0, description="1: llm_query only; N: rlm_query nests")
    max_llm_calls: int | None = Field(default=None, gt=0, description="model calls across the whole run")
    max_tokens: int | None = Field(default=None, gt=0, description="input + output tokens across the whole run")
    max_cost_usd: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0, description="wall clock of the whole run")
    # TODO(#9, max_output_tokens): add `max_output_tokens` here once Limits has it.


def clamp_limits(requested: ToolLimits | None, maxima: Limits) -> Limits:
    """The limits one call runs with: the caller's wish, never above the server's maximum.

    A field the caller leaves out gets the server's value. Where the server has no
    maximum (None = unlimited) the caller's value is taken as is: it can only tighten.
    """
    values = maxima.model_dump()
    for name, wanted in (requested.model_dump() if requested else {}).items():
        if wanted is None:
            continue
        ceiling = values[name]
        values[name] = wanted if ceiling is None else min(wanted, ceiling)
    return Limits(**values)


class ContextRoots:
    """The directories whose files a caller may name as `context_path`.

    A path is judged by what it resolves to (every symlink followed), then the file
    actually opened is checked again through /proc/self/fd, so swapping a directory
    for a symlink between the check and the open gains nothing.
    """

    def __init__(self, roots: Sequence[str | Path]) -> None:
        if not roots:
            raise PathNotAllowedError("give at least one --root DIR: the directories whose files the tool may read")
        resolved = []
        for root in roots:
            path = Path(root).expanduser()
            if not path.is_dir():
                raise PathNotAllowedError(f"--root {root}: not a directory")
            resolved.append(path.resolve(strict=True))
        self.roots: tuple[Path, ...] = tuple(resolved)

    def allows(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def resolve(self, path: str) -> Path:
        """The real path of `path` (relative paths are taken from the first root), if allowed."""
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise PathNotAllowedError(f"context_path {path!r}: cannot be read ({type(exc).__name__})") from exc
        if not self.allows(real):
            raise PathNotAllowedError(self._outside(path))
        return real

    def read(self, path: str, max_bytes: int) -> str | list[Any] | dict[str, Any]:
        """The file's text (a `.json` file is parsed), after every check."""
        real = self.resolve(path)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}")) if Path("/proc/self/fd").is_dir() else real
            if not self.allows(opened):
                raise PathNotAllowedError(self._outside(path))
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PathNotAllowedError(f"context_path {path!r}: not a regular file")
            if info.st_size > max_bytes:
                raise ContextTooLargeError(
                    f"context_path {path!r} is {info.st_size:,} bytes; this server accepts up to {max_bytes:,} "
                    "(its --max-context-bytes)"
                )
            with os.fdopen(fd, "rb", closefd=True) as f:
                fd = -1
                data = f.read(max_bytes + 1)
        finally:
            if fd >= 0:
                os.close(fd)
        if len(data) > max_bytes:  # the file grew after fstat
            raise ContextTooLargeError(f"context_path {path!r} is over this server's {max_bytes:,}-byte limit")
        text = data.decode("utf-8", errors="replace")
        if real.suffix == ".json":
            try:
                return json.loads(text)
            except ValueError as exc:
                raise PathNotAllowedError(
                    f"context_path {path!r}: a .json file that is not valid JSON ({exc})"
                ) from exc
        return text

    def _outside(self, path: str) -> str:
        listed = ", ".join(str(root) for root in self.roots)
        return f"context_path {path!r} is outside the directories this server may read ({listed})"


class CompletionSummary(BaseModel):
    """What `rlm_complete` returns."""

    answer: str | None
    stop_reason: str
    """final, max_iterations, budget or timeout (an error is returned as a tool error)."""
    iterations: int
    elapsed_s: float
    usage: Usage
    limits: dict[str, Any]
    """The limits the run had, after clamping to the server's maxima."""
    error: str | None = None
    """Why a budget or timeout stop happened."""


class MCPServerConfig(BaseModel):
    """Everything `rlm-sandbox mcp` is started with."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    roots: tuple[Path, ...]
    model: str = "gpt-5-mini"
    sub_model: str | None = None
    base_url: str | None = None
    maxima: Limits = Field(default_factory=lambda: Limits(timeout_s=DEFAULT_TIMEOUT_S))
    """The most any call may use; callers can only ask for less."""
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    max_context_bytes: int = Field(default=DEFAULT_MAX_CONTEXT_BYTES, gt=0)
    log_dir: Path | None = None


class _ProgressRelay:
    """Trajectory events (on the run's threads) -> MCP progress notifications (on the loop).

    Never blocks the run: a notification is scheduled and forgotten; a client that
    did not ask for progress simply gets none (the SDK drops it without a token).
    """

    def __init__(self, report: Callable[..., Any], loop: asyncio.AbstractEventLoop, max_iterations: int) -> None:
        self._report = report
        self._loop = loop
        self._max_iterations = max_iterations
        self._count = 0
        self._pending: list[Any] = []

    def send(self, message: str) -> None:
        self._count += 1  # the trajectory serialises its listeners, so no lock is needed
        future = asyncio.run_coroutine_threadsafe(self._report(self._count, None, message), self._loop)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append(future)

    async def finish(self, message: str) -> None:
        """Send what is still queued, then `message`: all of it before the tool's result."""
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._pending), return_exceptions=True)
        self._pending.clear()
        self._count += 1
        await self._report(self._count, None, message)

    def __call__(self, event: dict[str, Any]) -> None:
        kind, depth = event.get("type"), event.get("depth", 0)
        where = "root" if depth == 0 else f"sub-RLM at depth {depth}"
        if kind == "model_call":
            self.send(f"{where}: model turn {event.get('iteration')} of {self._max_iterations} answered")
        elif kind == "exec":
            outcome = "failed" if event.get("error") else "ran"
            self.send(f"{where}: code block {outcome} in the sandbox")
        elif kind == "sub_call":
            self.send(f"{where}: {event.get('kind')}_query call finished")


def _load_context(
    roots: ContextRoots, context_text: str | None, context_path: str | None, max_bytes: int
) -> str | list[Any] | dict[str, Any]:
    if (context_text is None) == (context_path is None):
        raise PathNotAllowedError("give exactly one of context_text (the text itself) or context_path (a file)")
    if context_text is not None:
        size = len(context_text.encode("utf-8", errors="replace"))
        if size > max_bytes:
            raise ContextTooLargeError(
                f"context_text is {size:,} bytes; this server accepts up to {max_bytes:,}: "
                "put the text in a file under a --root and pass context_path"
            )
        return context_text
    assert context_path is not None
    return roots.read(context_path, max_bytes)


def build_server(config: MCPServerConfig, *, client: Any = None) -> Any:
    """The MCP server (an `mcp.server.mcpserver.MCPServer`) offering `rlm_complete`.

    `client` replaces the OpenAI-compatible client (tests); by default it is built from
    `config.model` / `config.base_url` and the server's own environment, so a missing
    key fails here, at start, not on the first call.
    """
    import anyio.to_thread
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from ..lm import OpenAIClient
    from ..rlm import RLM

    roots = ContextRoots(config.roots)
    lm = client or OpenAIClient(config.model, base_url=config.base_url)
    server = MCPServer(
        "rlm-sandbox",
        instructions=(
            f"{TOOL_NAME} answers a query about a context of any size with a Recursive Language Model: "
            "the context is loaded into a sandboxed Python REPL that a model explores with code. "
            "Pass the text as context_text, or a file under the server's roots as context_path."
        ),
    )

    def run(query: str, context_text: str | None, context_path: str | None, limits: Limits, relay: _ProgressRelay):
        context = _load_context(roots, context_text, context_path, config.max_context_bytes)
        rlm = RLM(
            model=config.model,
            sub_model=config.sub_model,
            client=lm,
            sandbox=config.sandbox.model_copy(update={"exec_timeout_s": limits.exec_timeout_s}),
            limits=limits,
            log_dir=config.log_dir,
            listeners=[relay],
        )
        return rlm.completion(context, query)

    @server.tool(
        name=TOOL_NAME,
        description=(
            "Answer `query` about a context too large for a prompt. Give the context as `context_text` or as "
            "`context_path` (a file under the server's allowed roots; .json files are parsed). Optional "
            "`limits` can only lower the server's own maxima. Returns the answer, why the run stopped "
            "(final, max_iterations, budget, timeout), tokens and cost."
        ),
    )
    async def rlm_complete(
        query: str,
        ctx: Context,
        context_text: str | None = None,
        context_path: str | None = None,
        limits: ToolLimits | None = None,
    ) -> CompletionSummary:
        applied = clamp_limits(limits, config.maxima)
        relay = _ProgressRelay(ctx.report_progress, asyncio.get_running_loop(), applied.max_iterations)
        relay.send("starting a sandbox and loading the context")
        try:
            result = await anyio.to_thread.run_sync(run, query, context_text, context_path, applied, relay)
        except RLMSandboxError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise ToolError(f"reading the context failed: {type(exc).__name__}: {exc}") from exc
        if result.stop_reason == "error":
            raise ToolError(f"the run failed after {result.iterations} turn(s): {result.error}")
        await relay.finish(f"done: {result.stop_reason}")
        return CompletionSummary(
            answer=result.answer,
            stop_reason=result.stop_reason,
            iterations=result.iterations,
            elapsed_s=round(result.elapsed_s, 3),
            usage=result.usage,
            limits=applied.model_dump(),
            error=result.error,
        )

    return server


# ------------------------------------------------------------------ the CLI subcommand


def add_mcp_command(commands: argparse._SubParsersAction) -> None:
    """`rlm-sandbox mcp ...` (rlm_sandbox.cli calls this; the SDK is imported only when it runs)."""
    mcp = commands.add_parser(
        "mcp",
        help="serve rlm_complete to MCP clients (stdio, or streamable HTTP with --http); needs rlm-sandbox[mcp]",
        description="An MCP server with one tool, rlm_complete(query, context_text | context_path, limits). "
        "Files are read only under --root; callers' limits are clamped to the --max-* flags; the model and "
        "API key come from these flags and this process's environment (OPENAI_API_KEY, .env).",
    )
    mcp.add_argument("--root", action="append", required=True, metavar="DIR",
                     help="a directory whose files callers may pass as context_path (repeatable)")  # fmt: skip
    mcp.add_argument("--model", default="gpt-5-mini", help="root model (default: %(default)s)")
    mcp.add_argument("--sub-model", default=None, help="model for llm_query (default: --model)")
    mcp.add_argument("--base-url", default=None, help="any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama...)")
    transport = mcp.add_argument_group("transport")
    transport.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    transport.add_argument("--host", default="127.0.0.1", help="with --http (default: %(default)s)")
    transport.add_argument("--port", type=int, default=8765, help="with --http (default: %(default)s)")
    maxima = mcp.add_argument_group("maxima (a caller may ask for less, never more)")
    maxima.add_argument("--max-depth", type=int, default=1, help="1: llm_query only; N: rlm_query nests N-1 levels")
    maxima.add_argument("--max-iterations", type=int, default=20, help="root-model turns per RLM node")
    maxima.add_argument(
        "--max-llm-calls", type=int, default=None, help="model calls per rlm_complete call (default: unlimited)"
    )
    maxima.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="input + output tokens per rlm_complete call, a total (default: unlimited)",
    )
    maxima.add_argument(
        "--max-cost", type=float, default=None, metavar="USD", help="dollars per rlm_complete call (default: unlimited)"
    )
    maxima.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="wall clock of one call (default: %(default)s)")  # fmt: skip
    maxima.add_argument("--exec-timeout", type=float, default=60, metavar="S", help="per code block")
    maxima.add_argument(
        "--max-context-bytes",
        type=int,
        default=DEFAULT_MAX_CONTEXT_BYTES,
        help="largest context a caller may hand over",
    )
    mcp.add_argument(
        "--runtime", choices=("runc", "runsc"), default="runc", help="container runtime: runc, or runsc for gVisor"
    )
    mcp.add_argument("--log-dir", default=None, help="write each run's trajectory as JSONL here")
    mcp.set_defaults(handler=run_mcp_command)


def run_mcp_command(args: argparse.Namespace) -> int:
    try:
        import mcp  # noqa: F401 - only to say what is missing
    except ImportError:
        print("rlm-sandbox mcp needs the MCP SDK: pip install 'rlm-sandbox[mcp]'", file=sys.stderr)
        return 1
    config = MCPServerConfig(
        roots=tuple(Path(root) for root in args.root),
        model=args.model,
        sub_model=args.sub_model,
        base_url=args.base_url,
        maxima=Limits(
            max_depth=args.max_depth,
            max_iterations=args.max_iterations,
            max_llm_calls=args.max_llm_calls,
            max_tokens=args.max_tokens,
            max_cost_usd=args.max_cost,
            timeout_s=args.timeout,
            exec_timeout_s=args.exec_timeout,
        ),
        sandbox=SandboxConfig(runtime=args.runtime, exec_timeout_s=args.exec_timeout),
        max_context_bytes=args.max_context_bytes,
        log_dir=Path(args.log_dir) if args.log_dir else None,
    )
    server = build_server(config)  # RLMSandboxError (no key, bad root) is reported by cli.main
    if args.http:
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")
    return 0
