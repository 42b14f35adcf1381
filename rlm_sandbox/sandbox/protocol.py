"""The wire protocol between the host and the in-sandbox REPL server.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON with
a `type` field. The server side of this lives in sandbox_image/repl_server.py, which
may only use the standard library, so the two are kept in step by the tests rather
than by sharing code.

Frames from the sandbox are untrusted input: `FrameDecoder` refuses a length over the
cap before reading the body, and `decode_sandbox_message` validates every field with
pydantic before the host looks at it.

Host calls come in two frames, `llm_request` and `tool_request`, rather than one
generalised frame: each has its own strict shape, so each is validated exactly, with
no optional fields whose meaning depends on another. They share one id space, one
dispatcher and one concurrency bound (docs/host-calls.md).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError

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
# Images ride inside llm_request frames as data URLs (base64), so the frame cap bounds
# their total; these bound their count. The decoded size cap is the host's (images.py).
MAX_IMAGES_PER_PROMPT = 16
MAX_IMAGE_URL_CHARS = 12 * 1024 * 1024
# A tool call's positional and keyword arguments, each.
MAX_TOOL_ARGS = 64
TOOL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"


class _Frame(BaseModel):
    # strict: a sandbox that sends "1" for an id is wrong, not helpfully coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------- sandbox -> host


class Ready(_Frame):
    type: Literal["ready"]
    version: str = Field(max_length=32)
    python: str = Field(default="", max_length=64)


_ImagesOfOnePrompt = Annotated[
    list[Annotated[str, Field(max_length=MAX_IMAGE_URL_CHARS)]], Field(max_length=MAX_IMAGES_PER_PROMPT)
]


class LLMRequest(_Frame):
    type: Literal["llm_request"]
    id: int = Field(ge=0)
    exec_id: int = Field(ge=0)
    prompts: list[str] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)
    model: str | None = Field(default=None, max_length=256)
    recursive: bool = False
    # Per prompt, the images sent with it (data URLs); None when there are none.
    images: list[_ImagesOfOnePrompt] | None = Field(default=None, max_length=MAX_PROMPTS_PER_REQUEST)


class ToolRequest(_Frame):
    """Sandbox code called a host tool by name. Arguments are JSON values, validated
    against the tool's type hints on the host before it runs."""

    type: Literal["tool_request"]
    id: int = Field(ge=0)
    exec_id: int = Field(ge=0)
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    args: list[JsonValue] = Field(default_factory=list, max_length=MAX_TOOL_ARGS)
    kwargs: dict[Annotated[str, Field(max_length=64)], JsonValue] = Field(
        default_factory=dict, max_length=MAX_TOOL_ARGS
    )


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
    final_json: bool = False
    """`final` is JSON text: FINAL() was given a dict, list or number."""


SandboxMessage = Annotated[Ready | LLMRequest | ToolRequest | ContextLoaded | ExecDone, Field(discriminator="type")]
_sandbox_message = TypeAdapter(SandboxMessage)


HostCallRequest = LLMRequest | ToolRequest


def decode_sandbox_message(
    body: bytes | bytearray,
) -> Ready | LLMRequest | ToolRequest | ContextLoaded | ExecDone:
    """Parse and validate one frame body from the sandbox, or raise ProtocolError."""
    try:
        return _sandbox_message.validate_json(body)
    except ValidationError as exc:
        # Only the first error and a short excerpt: the body is attacker-controlled
        # and may be megabytes long.
        errors = exc.errors(include_url=False)
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
        raise ProtocolError(
            f"invalid frame from sandbox ({where}: {first.get('msg', exc.title)}); starts with {bytes(body[:80])!r}"
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


def tool_result_frame(
    request_id: int, value_json: str | None = None, error: str | None = None, error_type: str = "ToolError"
) -> bytes:
    """The answer to a tool_request: the result as JSON text (decoded in the sandbox), or an error."""
    message: dict[str, Any] = {"type": "tool_result", "id": request_id}
    if error is not None:
        message["error"] = error
        message["error_type"] = error_type
    else:
        message["json"] = value_json
    return encode_frame(message)


def tools_frame(tools: list[dict[str, str]]) -> bytes:
    """The host tools this sandbox may call: [{name, signature, doc}], sent after ready."""
    return encode_frame({"type": "tools", "tools": tools})


def shutdown_frame() -> bytes:
    return encode_frame({"type": "shutdown"})


Context = str | bytes | list | dict
_BYTES_LIKE = (bytes, bytearray, memoryview)


def encode_context(context: Context) -> tuple[bytes, bytes]:
    """The header frame and the raw payload that load `context` into the sandbox.

    The payload follows its header frame on the stream as plain bytes, not JSON:
    escaping a 100 MB text into JSON and back costs more than moving it. A str goes as
    UTF-8, bytes as they are, a list or dict as one JSON document. `bytes` values
    inside a list or dict (an image, a PDF) are cut out of the document, which holds
    null in their place, and travel raw after it; the header lists where each goes.
    This is the one place the protocol carries raw bytes, and only towards the
    sandbox, whose parser trusts the host.
    """
    header: dict[str, Any] = {"type": "context"}
    if isinstance(context, str):
        header["encoding"], payload = "text", context.encode("utf-8", "surrogatepass")
        if context.isascii():  # the server then reads it straight into a new str's storage
            header["ascii"] = True
    elif isinstance(context, _BYTES_LIKE):
        header["encoding"], payload = "bytes", bytes(context)
    elif isinstance(context, (list, dict)):
        from ..contexts import check_context

        check_context(context)  # json.dumps would turn a key 1 into "1" without a word
        blobs: list[tuple[list[str | int], bytes]] = []
        document = _cut_blobs(context, [], blobs)
        try:
            text = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"context must be JSON-serialisable apart from bytes values: {exc}") from None
        header["encoding"] = "json"
        if blobs:
            header["json_bytes"] = len(text)
            header["blobs"] = [[path, len(blob)] for path, blob in blobs]
            payload = b"".join([text, *(blob for _, blob in blobs)])
        else:
            payload = text
    else:
        raise TypeError(f"context must be str, bytes, list or dict, not {type(context).__name__}")
    header["bytes"] = len(payload)
    return encode_frame(header), payload


def _cut_blobs(value: Any, path: list[str | int], blobs: list[tuple[list[str | int], bytes]]) -> Any:
    """A copy of `value` with every bytes value replaced by None and recorded in `blobs`."""
    if isinstance(value, _BYTES_LIKE):
        blobs.append((list(path), bytes(value)))
        return None
    if isinstance(value, dict):
        # JSON turns every key into a string; the path uses the key the sandbox will see.
        return {
            key: _cut_blobs(item, [*path, key if isinstance(key, str) else json.dumps(key)], blobs)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_cut_blobs(item, [*path, index], blobs) for index, item in enumerate(value)]
    return value


class AsciiText:
    """The payload of an ASCII str context, encoded slice by slice as it is sent.

    An ASCII str's UTF-8 is its characters, so its length is known without encoding;
    encoding it whole would copy a gigabyte context once more on the host first.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __len__(self) -> int:
        return len(self.text)

    def pieces(self, size: int) -> Iterator[bytes]:
        text = self.text
        for offset in range(0, len(text), size):
            yield text[offset : offset + size].encode("ascii")


def context_stream(context: object) -> tuple[bytes, bytes | AsciiText]:
    """What encode_context() gives, with an ASCII str left unencoded until it is sent."""
    if isinstance(context, str) and context.isascii():  # O(1): CPython keeps the flag
        header = {"type": "context", "encoding": "text", "ascii": True, "bytes": len(context)}
        return encode_frame(header), AsciiText(context)
    return encode_context(context)  # type: ignore[arg-type]


def payload_pieces(payload: bytes | AsciiText, size: int = CONTEXT_SEND_SLICE) -> Iterator[bytes | memoryview]:
    """The payload in slices of `size` bytes, without copying an encoded one."""
    if isinstance(payload, AsciiText):
        yield from payload.pieces(size)
        return
    view = memoryview(payload)
    for offset in range(0, len(payload), size):
        yield view[offset : offset + size]


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
                raise ProtocolError(f"sandbox announced a {length}-byte frame; the cap is {self.max_frame_bytes} bytes")
            if available - offset - 4 < length:
                break
            frames.append(bytes(buffer[offset + 4 : offset + 4 + length]))
            offset += 4 + length
        if offset:
            del buffer[:offset]
        return frames
