"""The wire protocol between the host and the in-sandbox REPL server.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON with
a `type` field. The server side of this lives in sandbox_image/repl_server.py, which
may only use the standard library, so the two are kept in step by the tests rather
than by sharing code.

Frames from the sandbox are untrusted input: `FrameDecoder` refuses a length over the
cap before reading the body, and `decode_sandbox_message` validates every field with
pydantic before the host looks at it.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import ProtocolError

PROTOCOL_VERSION = "1"
HEADER = struct.Struct(">I")
MAX_SANDBOX_FRAME_BYTES = 16 * 1024 * 1024
# A context payload is written in slices of this size, so a send timeout applies to
# each slice rather than to the whole (possibly gigabyte) payload.
CONTEXT_SEND_SLICE = 4 * 1024 * 1024
# A single llm_request may carry at most this many prompts; a batch larger than this
# is a sandbox trying to make the host allocate, not a real workload.
MAX_PROMPTS_PER_REQUEST = 10_000


class _Frame(BaseModel):
    # strict: a sandbox that sends "1" for an id is wrong, not helpfully coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------- sandbox -> host


class Ready(_Frame):
    type: Literal["ready"]
    version: str = Field(max_length=32)
    python: str = Field(default="", max_length=64)


class LLMRequest(_Frame):
    type: Literal["llm_request"]
    id: int = Field(ge=0)
    exec_id: int = Field(ge=0)
    prompts: list[str] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)
    model: str | None = Field(default=None, max_length=256)
    recursive: bool = False


class ContextLoaded(_Frame):
    type: Literal["context_loaded"]
    kind: str = Field(max_length=32)
    length: int = Field(ge=0)
    error: str | None = Field(default=None, max_length=64 * 1024)


class ExecDone(_Frame):
    """The server's report of one exec; the host turns it into an `ExecResult`."""

    type: Literal["exec_result"]
    id: int = Field(ge=0)
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = Field(default=0, ge=0)
    stderr_bytes: int = Field(default=0, ge=0)
    truncated: bool = False
    error: str | None = None
    error_type: str | None = Field(default=None, max_length=256)
    final: str | None = None
    final_truncated: bool = False


SandboxMessage = Annotated[
    Union[Ready, LLMRequest, ContextLoaded, ExecDone], Field(discriminator="type")
]
_sandbox_message = TypeAdapter(SandboxMessage)


def decode_sandbox_message(body: bytes | bytearray | memoryview) -> Ready | LLMRequest | ContextLoaded | ExecDone:
    """Parse and validate one frame body from the sandbox, or raise ProtocolError."""
    try:
        return _sandbox_message.validate_json(body)
    except ValidationError as exc:
        # Only the first error and a short excerpt: the body is attacker-controlled
        # and may be megabytes long.
        first = exc.errors(include_url=False)[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
        raise ProtocolError(
            f"invalid frame from sandbox ({where}: {first.get('msg', exc.title)}); "
            f"starts with {bytes(body[:80])!r}"
        ) from None


# ---------------------------------------------------------------- host -> sandbox
# The host is trusted, so these are encoded with json directly: no model round trip on
# the hot path, and a context chunk is serialised exactly once.


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return HEADER.pack(len(body)) + body


def exec_frame(exec_id: int, code: str) -> bytes:
    return encode_frame({"type": "exec", "id": exec_id, "code": code})


def llm_result_frame(
    request_id: int, texts: list[str] | None = None, error: str | None = None, error_type: str | None = None
) -> bytes:
    message: dict[str, Any] = {"type": "llm_result", "id": request_id}
    if error is not None:
        message["error"] = error
        message["error_type"] = error_type or "LLMQueryError"
    else:
        message["texts"] = texts
    return encode_frame(message)


def shutdown_frame() -> bytes:
    return encode_frame({"type": "shutdown"})


def encode_context(context: str | list | dict) -> tuple[bytes, bytes]:
    """The header frame and the raw payload that load `context` into the sandbox.

    The payload is UTF-8 (a str as is; a list or dict as one JSON document) and follows
    its header frame on the stream as plain bytes, not JSON: escaping a 100 MB text
    into JSON and back costs more than moving it. This is the one place the protocol
    carries raw bytes, and only towards the sandbox, whose parser trusts the host.
    """
    if isinstance(context, str):
        encoding, payload = "text", context.encode("utf-8", "surrogatepass")
    elif isinstance(context, (list, dict)):
        from ..contexts import check_context

        check_context(context)  # json.dumps would turn a key 1 into "1" without a word
        encoding = "json"
        try:
            payload = json.dumps(context, ensure_ascii=False).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"context must be JSON-serialisable: {exc}") from None
    else:
        raise TypeError(f"context must be str, list or dict, not {type(context).__name__}")
    return encode_frame({"type": "context", "encoding": encoding, "bytes": len(payload)}), payload


class FrameDecoder:
    """Incremental splitter of a byte stream into frame bodies, with a size cap.

    Feed it whatever arrived; it returns every complete frame body. A length header
    over the cap raises ProtocolError at once, before any of the body is buffered.
    """

    def __init__(self, max_frame_bytes: int = MAX_SANDBOX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        offset = 0
        available = len(buffer)
        while available - offset >= 4:
            (length,) = HEADER.unpack_from(buffer, offset)
            if length > self.max_frame_bytes:
                raise ProtocolError(
                    f"sandbox announced a {length}-byte frame; the cap is {self.max_frame_bytes} bytes"
                )
            if available - offset - 4 < length:
                break
            frames.append(bytes(buffer[offset + 4 : offset + 4 + length]))
            offset += 4 + length
        if offset:
            del buffer[:offset]
        return frames
