"""The sandbox interface and the host side of one REPL session.

`Sandbox` holds everything that does not depend on how the server process is run:
the handshake, context streaming, the exec loop that answers `llm_request`s, exec
timeouts (interrupt, grace, kill and restart) and recovery from a sandbox that dies
or misbehaves. Subclasses say how to launch, interrupt, kill and diagnose the process.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from ..errors import (
    BudgetExceededError,
    ProtocolError,
    SandboxClosedError,
    SandboxDiedError,
    SandboxError,
    SandboxStartError,
    ToolError,
)
from .config import SandboxConfig
from .hostcalls import HostCalls, HostRequest
from .protocol import (
    PROTOCOL_VERSION,
    AsciiText,
    Context,
    ContextLoaded,
    ExecDone,
    FrameDecoder,
    LLMRequest,
    Ready,
    ToolRequest,
    context_stream,
    decode_sandbox_message,
    exec_frame,
    llm_result_frame,
    payload_pieces,
    shutdown_frame,
    tool_result_frame,
    tools_frame,
)

log = logging.getLogger(__name__)

LLMHandler = Callable[[list[str], "str | None"], list[str]]
"""Called on the host for llm_query calls made in the sandbox: (prompts, model) -> answers.

A request that carries images is passed them as a keyword, `images=` (one list of data
URLs per prompt), so a handler that takes no images still serves every other call."""

ToolHandler = Callable[[str, list, dict], str]
"""Called on the host for a tool call: (name, args, kwargs) -> the result as JSON text.
Raises ToolError (its message reaches the sandbox code) for anything that went wrong."""

# How long close() waits for the server to exit by itself before killing it.
_CLOSE_GRACE_S = 2.0
# Context streaming: a floor, plus time proportional to size, before a load is abandoned.
_CONTEXT_LOAD_FLOOR_S = 30.0
_CONTEXT_LOAD_MIN_RATE = 20e6  # bytes/s


class ExecResult(BaseModel):
    """What one `execute()` produced. `error` is None when the code ran cleanly."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    error_type: str | None = None
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    final: str | None = None
    final_json: bool = False
    """`final` is JSON text (FINAL of a dict, list or number), not str() of the value."""
    restarted: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class Transport(Protocol):
    @property
    def diagnostics(self) -> str: ...

    def send(self, data: bytes | memoryview, timeout: float | None = None) -> None: ...
    def receive(self, timeout: float | None) -> bytes | None: ...
    def close_input(self) -> None: ...
    def close(self) -> None: ...


class _ChannelClosed(Exception):
    """The sandbox's end of the channel is gone: the process exited or was killed."""


class _Unresponsive(Exception):
    """The sandbox ignored an interrupt for the whole grace period."""


class Sandbox(ABC):
    """A REPL server in some process, reached over a framed channel."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        llm_handler: LLMHandler | None = None,
        rlm_handler: LLMHandler | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        self.llm_handler = llm_handler
        self.rlm_handler = rlm_handler
        # Set before start() (they are sent at every start): tool specs and their handler.
        self.tools: list[dict[str, str]] = []
        self.tool_handler: ToolHandler | None = None
        # Host calls of one exec answered at once; the tree-wide gate bounds the model calls.
        self.host_call_workers = 8
        # False: a sandbox that dies, hangs or misbehaves is closed and SandboxDiedError
        # raised, never replaced by a fresh one (for callers whose contract forbids a
        # silent loss of state, such as DSPy's CodeInterpreter).
        self.restart_on_failure = True
        self._send_lock = threading.Lock()
        self._last_frame_bytes = 0
        self._transport: Transport | None = None
        self._decoder = FrameDecoder(self.config.max_frame_bytes)
        self._frames: collections.deque[bytes] = collections.deque()
        self._exec_ids = itertools.count(1)
        # Kept encoded so a restart reloads it without encoding it again.
        self._encoded_context: tuple[bytes, bytes | AsciiText] | None = None
        # What size_for() encoded, kept so load_context() of the same object reuses it.
        self._sized_for: tuple[object, tuple[bytes, bytes | AsciiText]] | None = None
        self._closed = False
        self._on_gone: list[Callable[[], None]] = []
        self._on_gone_lock = threading.Lock()
        self.restarts = 0
        # time.monotonic() after which waits on the backend (the Docker API) give up:
        # the completion's deadline, set by the RLM. None: the backend's own timeouts.
        self.deadline: float | None = None

    # ------------------------------------------------------------- subclass hooks

    @abstractmethod
    def _launch(self) -> Transport:
        """Start a fresh server process and return the channel to it."""

    @abstractmethod
    def _interrupt(self) -> None:
        """Deliver SIGINT to the server process."""

    @abstractmethod
    def _terminate(self) -> None:
        """Kill the server process and release everything it held. Idempotent."""

    def _fit_context(self, context: object, payload: bytes | AsciiText) -> None:  # noqa: B027 - optional hook
        """Make room for a context before it is loaded (DockerSandbox sizes its memory).

        Called before the process starts when size_for() was used, else before the
        context is streamed; may replace a running process with a bigger one.
        """

    @abstractmethod
    def _death_cause(self) -> str:
        """After the channel closed unexpectedly: a sentence saying why the process ended."""

    def _explain_death(self) -> str:
        cause = self._death_cause()
        last_words = self._transport.diagnostics if self._transport is not None else ""
        if last_words:
            cause += f"; it said: {last_words[-1000:]}"
        return cause

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Sandbox:
        if self._closed:
            raise SandboxClosedError("this sandbox was closed; create a new one")
        if self._transport is None:
            self._start_process()
        return self

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def is_running(self) -> bool:
        return self._transport is not None and not self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        if transport is not None:
            try:
                with self._send_lock:
                    transport.send(shutdown_frame(), timeout=1.0)
                transport.close_input()
                deadline = time.monotonic() + _CLOSE_GRACE_S
                while time.monotonic() < deadline:
                    if transport.receive(deadline - time.monotonic()) in (b"", None):
                        break
            except OSError:
                pass
        self._transport = None
        self._terminate()
        self._sandbox_gone()

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, after close() or kill() has torn the sandbox down
        (what frees a tree's `max_sandboxes` slot: only a sandbox that is gone stops counting)."""
        with self._on_gone_lock:
            self._on_gone.append(callback)

    def _sandbox_gone(self) -> None:
        with self._on_gone_lock:
            callbacks, self._on_gone = self._on_gone, []
        for callback in callbacks:
            callback()

    def kill(self) -> None:
        """Stop the sandbox now, from any thread, without the graceful shutdown.

        For cancelling a run (Ctrl-C): an `execute()` blocked in another thread sees its
        channel close and raises SandboxClosedError instead of starting a new sandbox.
        """
        self._closed = True
        self._terminate()
        self._transport = None
        self._sandbox_gone()

    def close_in_background(self) -> threading.Thread:
        """close() on a daemon thread, for callers that have what they need already.

        Tearing a container down takes a Docker round trip or two; the caller need not
        wait for it. Should the process exit first, the server still sees its input
        close and exits, and the container removes itself.
        """
        closer = threading.Thread(target=self.close, name="rlm-sandbox-close", daemon=True)
        closer.start()
        return closer

    def restart(self) -> None:
        """Replace the server process with a fresh one and reload the context, if any."""
        if self._closed:
            # Closed or killed from another thread while an exec was running: a fresh
            # sandbox now would outlive its owner.
            raise SandboxClosedError("this sandbox was closed while it was in use")
        self._transport = None
        self._terminate()
        self._start_process()
        self.restarts += 1
        if self._encoded_context is not None:
            self._stream_context()

    def _start_process(self) -> None:
        self._decoder = FrameDecoder(self.config.max_frame_bytes)
        self._frames.clear()
        self._transport = self._launch()
        try:
            message = self._read_message(time.monotonic() + self._within_deadline(self.config.start_timeout_s))
            if message is None:
                raise SandboxStartError(f"the sandbox did not report ready within {self.config.start_timeout_s:g} s")
            if not isinstance(message, Ready):
                raise ProtocolError(f"expected a ready frame first, got {message.type!r}")
            if message.version != PROTOCOL_VERSION:
                raise SandboxStartError(
                    f"the sandbox speaks protocol {message.version!r}, the host {PROTOCOL_VERSION!r}: "
                    "rebuild the image with `rlm-sandbox image build`"
                )
            if self._closed:  # killed from another thread while this one was starting it
                raise SandboxClosedError("this sandbox was closed while it was starting")
            if self.tools:
                with self._send_lock:
                    self._transport.send(tools_frame(self.tools), timeout=self.config.start_timeout_s)
        except _ChannelClosed:
            # Killed from another thread is not a sandbox that failed to start.
            cause = None if self._closed else self._explain_death()
            self._transport = None
            self._terminate()
            if cause is None:
                raise SandboxClosedError("this sandbox was closed while it was starting") from None
            raise SandboxStartError(f"the sandbox exited while starting: {cause}") from None
        except BaseException:
            self._transport = None
            self._terminate()
            raise

    def _ensure_running(self) -> Transport:
        if self._closed:
            raise SandboxClosedError("this sandbox was closed; create a new one")
        if self._transport is None:
            self._start_process()
            if self._encoded_context is not None:
                # A replacement for one whose restart failed (say the daemon was down):
                # it must not come up silently without the context.
                self._stream_context()
        assert self._transport is not None
        return self._transport

    def set_tools(self, tools: list[dict[str, str]], handler: ToolHandler | None) -> None:
        """Offer host tools ({name, signature, doc} each) to the code, answered by `handler`.

        Before start() they are sent at start; on a running sandbox (one from a pool)
        they are sent now. Either way every restart sends them again."""
        self.tools = list(tools)
        self.tool_handler = handler
        transport = self._transport
        if transport is not None and self.tools:
            with self._send_lock:
                transport.send(tools_frame(self.tools), timeout=self.config.start_timeout_s)

    def _within_deadline(self, seconds: float) -> float:
        """A wait on the sandbox of at most `seconds`, cut at `deadline` (a frozen daemon
        stops relaying the channel; the completion's deadline bounds that)."""
        if self.deadline is None:
            return seconds
        return max(min(seconds, self.deadline - time.monotonic()), 0.1)

    # ------------------------------------------------------------- frames

    def _read_message(self, deadline: float):
        """The next validated message, or None once `deadline` (monotonic) has passed."""
        while not self._frames:
            transport = self._transport
            if transport is None:
                raise _ChannelClosed()
            data = transport.receive(max(deadline - time.monotonic(), 0.0))
            if data is None:
                return None
            if not data:
                raise _ChannelClosed()
            self._frames.extend(self._decoder.feed(data))
        frame = self._frames.popleft()
        self._last_frame_bytes = len(frame)
        return decode_sandbox_message(frame)

    # ------------------------------------------------------------- context

    def size_for(self, context: object) -> Sandbox:
        """Size the sandbox for `context` before it starts, so no container is made twice.

        Encodes the context once (load_context() of the same object reuses it) and
        raises SandboxMemoryError, before any container starts, if the host cannot
        hold it. Optional: load_context() alone sizes a running sandbox too, by
        growing or replacing it.

        >>> sandbox = DockerSandbox().size_for(big_text).start()  # doctest: +SKIP
        >>> sandbox.load_context(big_text)  # doctest: +SKIP
        """
        encoded = context_stream(context)
        self._fit_context(context, encoded[1])
        self._sized_for = (context, encoded)
        return self

    def load_context(self, context: Context) -> None:
        """Make `context` the value of the variable `context` inside the sandbox."""
        sized, self._sized_for = self._sized_for, None
        if sized is not None and sized[0] is context:
            encoded = sized[1]
        else:
            encoded = context_stream(context)  # type errors surface before anything is sent
            self._fit_context(context, encoded[1])
        self._ensure_running()
        self._encoded_context = encoded
        # Two attempts: a sandbox that died while idle (a warm one killed from outside)
        # is replaced and loaded again; one that dies twice is failing on the context.
        for attempt in (1, 2):
            try:
                self._stream_context()
                return
            except (_ChannelClosed, ProtocolError, OSError) as exc:
                if isinstance(exc, _ChannelClosed):
                    cause = self._explain_death()
                elif isinstance(exc, OSError):  # the sandbox stopped reading mid-send: say why it died
                    cause = f"{exc}; {self._explain_death()}"
                else:
                    cause = str(exc)
                if not self.restart_on_failure:
                    self.kill()
                    raise SandboxDiedError(
                        f"the sandbox failed while loading the context ({cause}); it was closed, not restarted",
                        cause=cause,
                    ) from None
                if attempt == 1:
                    self._transport = None
                    self._terminate()
                    self._start_process()
                    continue
                self._encoded_context = None
                self.restart()
                raise SandboxDiedError(
                    f"the sandbox failed while loading the context ({cause}); it was restarted without one",
                    cause=cause,
                ) from None

    def _stream_context(self) -> None:
        transport = self._ensure_running()
        assert self._encoded_context is not None
        header, payload = self._encoded_context
        with self._send_lock:
            transport.send(header, timeout=self._within_deadline(self.config.start_timeout_s))
            for piece in payload_pieces(payload):
                transport.send(piece, timeout=self._within_deadline(self.config.start_timeout_s))
        deadline = time.monotonic() + self._within_deadline(
            _CONTEXT_LOAD_FLOOR_S + len(payload) / _CONTEXT_LOAD_MIN_RATE
        )
        message = self._read_message(deadline)
        if message is None:
            raise SandboxError("the sandbox did not confirm the context in time")
        if not isinstance(message, ContextLoaded):
            raise ProtocolError(f"expected context_loaded, got {message.type!r}")
        if message.error:
            raise SandboxError(f"the sandbox could not load the context: {message.error}")

    # ------------------------------------------------------------- exec

    def execute(self, code: str, timeout_s: float | None = None) -> ExecResult:
        """Run `code` in the sandbox's persistent namespace.

        Never raises for anything the code does: errors, timeouts, crashes and protocol
        violations all come back in the result (the last two after a restart, with
        `restarted=True`). Raises SandboxError only if a fresh sandbox cannot be had, or
        SandboxDiedError for a crash or unstoppable timeout when `restart_on_failure` is False.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be str, not {type(code).__name__}")
        timeout = self.config.exec_timeout_s if timeout_s is None else timeout_s
        transport = self._ensure_running()
        exec_id = next(self._exec_ids)
        started = time.monotonic()
        try:
            with self._send_lock:
                transport.send(exec_frame(exec_id, code), timeout=self.config.start_timeout_s)
            done, interrupted = self._await_exec(exec_id, timeout)
        except _Unresponsive:
            return self._recover(
                f"TimeoutError: the code ran longer than {timeout:g} s and did not stop when interrupted",
                "TimeoutError",
                started,
                timed_out=True,
            )
        except _ChannelClosed:
            return self._recover(f"SandboxDied: {self._explain_death()}", "SandboxDied", started)
        except ProtocolError as exc:
            log.warning("sandbox protocol violation: %s", exc)
            return self._recover(f"ProtocolError: {exc}", "ProtocolError", started)
        except OSError as exc:
            return self._recover(f"SandboxDied: the channel failed ({exc})", "SandboxDied", started)
        result = ExecResult(
            stdout=done.stdout,
            stderr=done.stderr,
            error=done.error,
            error_type=done.error_type,
            truncated=done.truncated or done.final_truncated,
            duration_s=time.monotonic() - started,
            final=done.final,
            final_json=done.final_json,
            stdout_bytes=done.stdout_bytes,
            stderr_bytes=done.stderr_bytes,
        )
        if interrupted:
            detail = f"\n{done.error}" if done.error else ""
            result.timed_out = True
            result.error = (
                f"TimeoutError: the code ran longer than {timeout:g} s and was interrupted (variables are kept){detail}"
            )
            result.error_type = "TimeoutError"
        return result

    def _await_exec(self, exec_id: int, timeout: float) -> tuple[ExecDone, bool]:
        transport = self._transport
        calls = HostCalls(
            self._answer,
            lambda frame: self._send_answer(frame, transport),
            workers=self.host_call_workers,
        )
        try:
            done = self._exec_loop(exec_id, timeout, calls)
        except BaseException:
            # The sandbox is being replaced (or the run cancelled): tell it nothing more.
            calls.close(notify=False)
            raise
        calls.close(notify=True)
        return done

    def _exec_loop(self, exec_id: int, timeout: float, calls: HostCalls) -> tuple[ExecDone, bool]:
        base_deadline = time.monotonic() + timeout
        interrupted = False
        while True:
            now = time.monotonic()
            # Time with host calls in flight is the host's, not the code's: the exec
            # timeout bounds the sandbox's own work; the completion deadline bounds all.
            deadline = base_deadline if interrupted else base_deadline + calls.paused_s()
            if now >= deadline:
                if interrupted:
                    raise _Unresponsive()
                self._interrupt()
                interrupted = True
                base_deadline = now + self.config.interrupt_grace_s
                continue
            # While calls are in flight the deadline moves; wake up to look at it again.
            wait_until = min(deadline, now + 0.25) if calls.busy else deadline
            message = self._read_message(wait_until)
            if message is None:
                continue
            if isinstance(message, ExecDone):
                if message.id != exec_id:
                    raise ProtocolError(f"exec_result for exec {message.id}, but exec {exec_id} is running")
                return message, interrupted
            if isinstance(message, (LLMRequest, ToolRequest)):
                if message.exec_id != exec_id:
                    raise ProtocolError(f"{message.type} for exec {message.exec_id}, but exec {exec_id} is running")
                if interrupted:
                    calls.refuse(message, "the exec timed out; no more host calls")
                else:
                    calls.submit(message, self._last_frame_bytes)
                continue
            raise ProtocolError(f"unexpected {message.type!r} frame while an exec is running")

    def _send_answer(self, frame: bytes, transport: Transport | None) -> None:
        """Send from any thread, but only to the process that asked: a late answer must
        never reach a replacement, whose request ids start again from 1."""
        with self._send_lock:
            if transport is None or self._transport is not transport:
                return
            transport.send(frame, timeout=self.config.start_timeout_s)

    def _answer(self, request: HostRequest) -> bytes:
        """The answer frame to one host call (runs on a worker thread)."""
        if isinstance(request, ToolRequest):
            return self._answer_tool(request)
        handler = (self.rlm_handler if request.recursive else None) or self.llm_handler
        if handler is None:
            return llm_result_frame(request.id, error="no language model is connected to this sandbox")
        try:
            prompts = list(request.prompts)
            if request.images is not None:
                if len(request.images) != len(prompts):
                    raise ValueError(f"{len(request.images)} image lists for {len(prompts)} prompts")
                texts = handler(prompts, request.model, images=[list(i) for i in request.images])  # type: ignore[call-arg]
            else:
                texts = handler(prompts, request.model)
            if not isinstance(texts, list) or len(texts) != len(request.prompts):
                raise TypeError(f"the llm handler returned {type(texts).__name__} for {len(request.prompts)} prompts")
            return llm_result_frame(request.id, texts=[str(text) for text in texts])
        except BudgetExceededError as exc:
            return llm_result_frame(request.id, error=str(exc), error_type="BudgetExceededError")
        except Exception as exc:  # any handler failure becomes a Python error in the sandbox
            return llm_result_frame(request.id, error=f"{type(exc).__name__}: {exc}")

    def _answer_tool(self, request: ToolRequest) -> bytes:
        if self.tool_handler is None:
            return tool_result_frame(request.id, error=f"there is no tool named {request.name!r} here")
        try:
            return tool_result_frame(
                request.id, value_json=self.tool_handler(request.name, list(request.args), dict(request.kwargs))
            )
        except ToolError as exc:
            return tool_result_frame(request.id, error=str(exc))
        except BudgetExceededError as exc:
            return tool_result_frame(request.id, error=str(exc), error_type="BudgetExceededError")
        except Exception as exc:  # never a host traceback: the class and message only
            return tool_result_frame(request.id, error=f"{type(exc).__name__}: {exc}")

    def _recover(self, reason: str, error_type: str, started: float, *, timed_out: bool = False) -> ExecResult:
        """Replace a dead, stuck or misbehaving sandbox and report what was lost.

        With `restart_on_failure` False: close it and raise SandboxDiedError instead."""
        if not self.restart_on_failure:
            self.kill()
            raise SandboxDiedError(f"{reason}. The sandbox was closed, not restarted: its state is lost.", cause=reason)
        self.restart()
        reloaded = " and the context was reloaded" if self._encoded_context is not None else ""
        return ExecResult(
            error=f"{reason}. The sandbox was restarted: all variables were lost{reloaded}.",
            error_type=error_type,
            timed_out=timed_out,
            restarted=True,
            duration_s=time.monotonic() - started,
        )
