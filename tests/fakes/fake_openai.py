"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests.

Tests drive it through the real `openai` client, so retries, timeouts, header
parsing and response validation are the SDK's own, not a mock's idea of them.
Each test scripts the replies (a queue, a responder callable, or both) and then
asserts on the recorded requests.

It also behaves like the real servers the loop meets: a context window enforced with
the real error bodies of OpenAI, vLLM, llama.cpp and llama-cpp-python
(`context_window=`, `window_error=`); the output cap obeyed, cutting the reply with
`finish_reason: "length"`; a rejected cap field name (`cap_params=`); `/v1/models`
with what each server reports (`models=`); reasoning fields, think blocks,
refusals, tool calls, cached and reasoning token details (`Reply` fields).
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "WINDOW_ERRORS",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "WindowError",
    "fake_openai_server",
]

WindowError = Literal["openai", "vllm", "llamacpp", "llama-cpp-python"]


def _window_error_body(kind: WindowError, window: int, prompt: int, completion: int) -> dict[str, Any]:
    """The body each server really sends (HTTP 400) for a request that does not fit."""
    if kind == "openai":
        return {
            "error": {
                "message": f"This model's maximum context length is {window} tokens. However, your messages resulted "
                f"in {prompt + completion} tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    if kind == "vllm":  # vLLM's OpenAI server: a top-level error object
        return {
            "object": "error",
            "message": f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    if kind == "llamacpp":  # llama.cpp's own llama-server
        return {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": prompt,
                "n_ctx": window,
            }
        }
    # llama-cpp-python's server (llama_cpp/server/errors.py, chat completions)
    return {
        "error": {
            "message": f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


WINDOW_ERRORS: tuple[WindowError, ...] = ("openai", "vllm", "llamacpp", "llama-cpp-python")


class Reply(BaseModel):
    """One scripted answer to one request.

    The default is a well-formed completion whose text is "ok". The failure
    fields are checked in this order: `reset`, `hang`, `status` != 200,
    `malformed`, `empty_choices`; `delay_s` applies before any of them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str | None = "ok"
    """The assistant message text; None sends a message without content."""
    prompt_tokens: int | None = None
    """None: estimated from the request's message lengths (chars / 4)."""
    completion_tokens: int | None = None
    """None: estimated from `content` (chars / 4)."""
    include_usage: bool = True
    """False omits the `usage` object, as some local servers do."""
    model: str | None = None
    """The model named in the response; None echoes the request's model."""
    delay_s: float = Field(default=0.0, ge=0.0)
    status: int = 200
    retry_after: float | None = None
    """Seconds for a `Retry-After` header (floats are allowed and the SDK honours them)."""
    error_message: str = "scripted failure"
    hang: bool = False
    """Never answer; the handler is released only when the server closes."""
    malformed: bool = False
    """Answer 200 with a body that is not JSON."""
    empty_choices: bool = False
    reset: bool = False
    """Drop the connection with a TCP RST instead of answering."""
    finish_reason: str = "stop"
    """Set to "length" by the server itself when it cuts the reply at the request's cap."""
    reasoning: str | None = None
    """Sent in the message's `reasoning_field` (DeepSeek/vLLM `reasoning_content`, others `reasoning`)."""
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    refusal: str | None = None
    tool_calls: int = 0
    """How many (dummy) tool calls the message carries."""
    cached_tokens: int | None = None
    """`usage.prompt_tokens_details.cached_tokens`."""
    reasoning_tokens: int | None = None
    """`usage.completion_tokens_details.reasoning_tokens`."""

    @classmethod
    def text(cls, content: str, **kwargs: Any) -> Reply:
        return cls(content=content, **kwargs)

    @classmethod
    def error(cls, status: int, *, retry_after: float | None = None, message: str = "scripted failure") -> Reply:
        return cls(status=status, retry_after=retry_after, error_message=message)

    @classmethod
    def hang_forever(cls) -> Reply:
        return cls(hang=True)

    @classmethod
    def malformed_json(cls) -> Reply:
        return cls(malformed=True)

    @classmethod
    def no_choices(cls) -> Reply:
        return cls(empty_choices=True)

    @classmethod
    def connection_reset(cls) -> Reply:
        return cls(reset=True)


Responder = Callable[[dict[str, Any]], Reply]


@dataclass
class RecordedRequest:
    """What the server saw, with monotonic timestamps for concurrency assertions.

    A request is recorded before any byte of its reply is sent, so a client that
    has its answer can count on the request being visible already.
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    """Parsed JSON body; None when the body was not a JSON object."""
    received_at: float
    reply: Reply
    finished_at: float | None = None
    """When the handler started its answer (or reset, or was released by close); None while in flight.

    Stamped before the first byte goes out, so a client holding its answer sees it set."""

    @property
    def model(self) -> str | None:
        value = (self.body or {}).get("model")
        return value if isinstance(value, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        value = (self.body or {}).get("messages")
        return value if isinstance(value, list) else []


def estimate_tokens(text: str) -> int:
    # Roughly the chars-per-token ratio of English text under BPE tokenizers;
    # good enough for budget tests, which only need monotone, nonzero counts.
    return max(1, math.ceil(len(text) / 4))


def _messages_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "".join(parts)


def _cap(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int):
            return value
    return None


@dataclass
class _State:
    """Mutable state shared between the server object and its handler threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)
    replies: deque[Reply] = field(default_factory=deque)
    responder: Responder | None = None
    default: Reply = field(default_factory=Reply)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    handler_errors: list[str] = field(default_factory=list)
    context_window: int | None = None
    window_error: WindowError = "openai"
    cap_params: frozenset[str] = frozenset({"max_tokens", "max_completion_tokens"})
    models: dict[str, Any] | None = None

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            if self.replies:
                return self.replies.popleft()
            responder = self.responder
        # The responder runs outside the lock so a slow or blocking one does
        # not serialise concurrent requests (which concurrency tests measure).
        if responder is not None:
            return responder(body)
        return self.default


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a scripted reset or hang never
    # poisons a pooled keep-alive connection used by the next request.
    protocol_version = "HTTP/1.0"
    server: _Server
    _record: RecordedRequest | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; requests are recorded instead

    def do_GET(self) -> None:
        models = self.server.state.models
        if self.path.rstrip("/") == "/v1/models" and models is not None:
            self._send_json(200, models)
            return
        self._send_json(404, {"error": {"message": f"no route for GET {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        state = self.server.state
        received_at = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None

        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route for POST {self.path}", "type": "not_found"}})
            return

        record: RecordedRequest | None = None
        self._record = None
        refusal = self._refuse(body or {})
        if refusal is not None:
            # Recorded like any request: a real server counted it too (and it cost a round trip).
            record = RecordedRequest(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, received_at, Reply(status=400)
            )
            with state.lock:
                state.requests.append(record)
            self._record = record
            self._send_json(400, refusal)
            return
        with state.lock:
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            reply = state.next_reply(body or {})
            record = RecordedRequest(
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                received_at=received_at,
                reply=reply,
            )
            with state.lock:
                state.requests.append(record)
            self._record = record
            self._answer(reply, body or {})
        except Exception as exc:  # a broken responder must fail the test, not vanish
            with state.lock:
                state.handler_errors.append(f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                self._send_json(500, {"error": {"message": f"fake server error: {exc}", "type": "server_error"}})
        finally:
            self._stamp_finished()
            with state.lock:
                state.in_flight -= 1

    def _answer(self, reply: Reply, body: dict[str, Any]) -> None:
        closing = self.server.state.closing
        # Waiting on the closing event (not time.sleep) lets close() release
        # every delayed or hung handler at once.
        if reply.delay_s and closing.wait(reply.delay_s):
            return
        if reply.reset:
            self._reset()
            return
        if reply.hang:
            closing.wait()
            return
        if reply.status != 200:
            headers = {}
            if reply.retry_after is not None:
                headers["Retry-After"] = f"{reply.retry_after:g}"
            error_type = "rate_limit_error" if reply.status == 429 else "server_error"
            payload = {"error": {"message": reply.error_message, "type": error_type, "code": None}}
            self._send_json(reply.status, payload, headers)
            return
        if reply.malformed:
            self._send_raw(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
            return
        state = self.server.state
        if state.context_window is not None and state.window_error == "llama-cpp-python":
            room = state.context_window - estimate_tokens(_messages_text(body))
            cap = _cap(body)
            body = {**body, "max_tokens": room if cap is None else min(cap, room)}
            body.pop("max_completion_tokens", None)
        self._send_json(200, self._completion(reply, body))

    def _refuse(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The error body for a request this server would reject before generating, if any."""
        state = self.server.state
        for name in ("max_tokens", "max_completion_tokens"):
            if name in body and name not in state.cap_params:
                return {
                    "error": {
                        "message": f"Unsupported parameter: '{name}' is not supported with this model. Use "
                        f"'{next(iter(state.cap_params - {name}), 'max_tokens')}' instead.",
                        "type": "invalid_request_error",
                        "param": name,
                        "code": "unsupported_parameter",
                    }
                }
        window = state.context_window
        if window is None:
            return None
        prompt = estimate_tokens(_messages_text(body))
        cap = _cap(body)
        if state.window_error == "llama-cpp-python":
            # It only refuses a prompt that fills the window; a cap that does not fit is
            # silently cut to the room left (see _completion).
            if prompt >= window:
                return _window_error_body(state.window_error, window, prompt, cap or 0)
            return None
        if prompt + (cap or 0) > window:
            return _window_error_body(state.window_error, window, prompt, cap or 0)
        return None

    @staticmethod
    def _completion(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        model = reply.model or str(body.get("model") or "fake-model")
        content = reply.content
        finish_reason = reply.finish_reason
        cap = _cap(body)
        if cap is not None and content and estimate_tokens(content) > cap:
            # A real server stops generating at the cap, mid-word or mid-block.
            content, finish_reason = content[: cap * 4], "length"
        choices: list[dict[str, Any]] = []
        if not reply.empty_choices:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if reply.reasoning is not None:
                message[reply.reasoning_field] = reply.reasoning
            if reply.refusal is not None:
                message["refusal"] = reply.refusal
            if reply.tool_calls:
                message["tool_calls"] = [
                    {"id": f"call_{i}", "type": "function", "function": {"name": "search", "arguments": "{}"}}
                    for i in range(reply.tool_calls)
                ]
            choices.append({"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None})
        completion: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
        }
        if reply.include_usage:
            prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate_tokens(_messages_text(body))
            completion_tokens = (
                reply.completion_tokens if reply.completion_tokens is not None else estimate_tokens(content or "")
            )
            if cap is not None:
                completion_tokens = min(completion_tokens, cap)
            usage: dict[str, Any] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
            }
            if reply.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
            if reply.reasoning_tokens is not None:
                usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
            completion["usage"] = usage
        return completion

    def _stamp_finished(self) -> None:
        record = self._record
        if record is not None and record.finished_at is None:
            with self.server.state.lock:
                record.finished_at = time.monotonic()

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN,
        # which is what a crashed proxy or load balancer looks like to a client.
        self._stamp_finished()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._stamp_finished()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Do not join handler threads on close: a hung handler would block shutdown.
    block_on_close = False
    # Concurrency tests open dozens of connections at once; the stdlib default
    # backlog of 5 would make the kernel drop SYNs and stall clients for ~1 s.
    request_queue_size = 256

    def __init__(self, state: _State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # A client that gave up (its timeout) makes our late write fail: that is
        # the scenario under test, not a server bug, so it is not reported.
        if isinstance(exc, OSError):
            return
        with self.state.lock:
            self.state.handler_errors.append(f"{type(exc).__name__}: {exc}")


class FakeOpenAIServer:
    """`POST /v1/chat/completions` on 127.0.0.1, scripted per test.

    Replies come from the queue first (`push`), then from the responder, then the
    default `Reply()`. Use as a context manager; `close()` is idempotent and does
    not wait for hung handlers.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        replies: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        context_window: int | None = None,
        window_error: WindowError = "openai",
        cap_params: Iterable[str] = ("max_tokens", "max_completion_tokens"),
        models: dict[str, Any] | None = None,
    ) -> None:
        """`context_window`: reject (HTTP 400, `window_error`'s real body) a request whose
        prompt (chars / 4) plus its cap exceeds it. `cap_params`: the cap field names the
        server accepts. `models`: the JSON body of GET /v1/models (None: 404)."""
        self._state = _State(
            replies=deque(replies),
            responder=responder,
            default=default or Reply(),
            context_window=context_window,
            window_error=window_error,
            cap_params=frozenset(cap_params),
            models=models,
        )
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        with self._state.lock:
            self._state.replies.extend(replies)

    def set_responder(self, responder: Responder | None) -> None:
        with self._state.lock:
            self._state.responder = responder

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot, in the order the requests were received."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def request_count(self) -> int:
        with self._state.lock:
            return len(self._state.requests)

    @property
    def peak_concurrency(self) -> int:
        """The most requests that were being handled at the same moment."""
        with self._state.lock:
            return self._state.peak_in_flight

    @property
    def handler_errors(self) -> list[str]:
        """Unexpected exceptions in handlers, e.g. a responder that raised (answered with HTTP 500)."""
        with self._state.lock:
            return list(self._state.handler_errors)

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        """Block until at least `count` requests arrived, for tests that race a client."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.request_count >= count:
                return True
            time.sleep(0.005)
        return self.request_count >= count

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._state.closing.set()  # release hung and delayed handlers first
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    """Generator for a pytest fixture: `fake_openai = pytest.fixture(fake_openai_server)`.

    Kept free of pytest so the module imports anywhere; the server is closed
    after the test even if the test failed.
    """
    with FakeOpenAIServer() as server:
        yield server
