"""Fuzzing the host's side of the channel: the frame decoder and the whole exec loop.

tests/test_protocol.py fuzzes the decoder and the message validation on their own.
Here hypothesis drives the complete host exec loop (`Sandbox.execute`) with arbitrary
bytes as what a sandbox "sent": garbage, frames with lying lengths, well-formed frames
of every type with random fields, all split at random points. Whatever arrives, the
host returns an ExecResult in bounded time, explains any replacement clearly, never
calls the model for a request that is not a valid one for the running exec, and never
buffers more than one frame's cap.
"""

from __future__ import annotations

import json
import struct
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm_sandbox.audit import CLEAR_ERRORS
from rlm_sandbox.errors import ProtocolError, SandboxError
from rlm_sandbox.sandbox.base import ExecResult, Sandbox
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.protocol import PROTOCOL_VERSION, FrameDecoder, decode_sandbox_message

CAP = 4096


def frame(body: bytes, length: int | None = None) -> bytes:
    return struct.pack(">I", len(body) if length is None else length) + body


READY = frame(json.dumps({"type": "ready", "version": PROTOCOL_VERSION}).encode())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = [
    "id",
    "exec_id",
    "prompts",
    "model",
    "recursive",
    "version",
    "stdout",
    "stderr",
    "error",
    "final",
    "truncated",
    "kind",
    "length",
    "depth",
]
messages = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(["ready", "llm_request", "exec_result", "context_loaded", "shutdown", "exec", "root"]),
    st.dictionaries(st.sampled_from(FIELDS), json_values | st.just(1) | st.just(["p"]), max_size=6),
)
pieces = st.one_of(
    st.binary(max_size=64),  # garbage
    messages.map(lambda m: frame(json.dumps(m).encode())),  # well-formed frames, random content
    messages.map(lambda m: frame(json.dumps(m).encode(), length=len(json.dumps(m)) + 7)),  # lying length
    st.builds(lambda n: struct.pack(">I", n), st.integers(CAP + 1, 2**32 - 1)),  # oversized header
    st.just(frame(b'{"type":"llm_request","id":5,"exec_id":1,"prompts":["hi"]}')),  # a valid request
    st.just(frame(b'{"type":"exec_result","id":1,"stdout":"done"}')),  # a valid result
    st.just(frame(b'{"type":"exec_result","id":1,"stdout":"\xff"}')),  # invalid UTF-8
)


class ScriptedTransport:
    """What a sandbox 'sent': the ready frame, then the script, then silence or end-of-file."""

    diagnostics = ""

    def __init__(self, chunks: list[bytes], eof: bool) -> None:
        self.chunks = list(chunks)
        self.eof = eof
        self.sent: list[bytes] = []

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sent.append(bytes(data))

    def receive(self, timeout: float | None) -> bytes | None:
        if self.chunks:
            return self.chunks.pop(0)
        if self.eof:
            return b""
        time.sleep(min(timeout or 0.0, 0.005))
        return None

    def close_input(self) -> None:
        pass

    def close(self) -> None:
        pass


class ScriptedSandbox(Sandbox):
    """A Sandbox whose first process 'sends' the script; replacements are well-behaved and idle."""

    def __init__(self, chunks: list[bytes], eof: bool, **kwargs) -> None:
        super().__init__(SandboxConfig(max_frame_bytes=CAP, interrupt_grace_s=0.02, start_timeout_s=1), **kwargs)
        self._scripts = [(list(chunks), eof)]
        self.launches = 0
        self.interrupts = 0

    def _launch(self):
        self.launches += 1
        chunks, eof = self._scripts.pop(0) if self._scripts else ([], False)
        return ScriptedTransport([READY, *chunks], eof)

    def _interrupt(self) -> None:
        self.interrupts += 1

    def _terminate(self) -> None:
        pass

    def _death_cause(self) -> str:
        return "the scripted sandbox ended"


def valid_requests_for(stream: bytes, exec_id: int) -> int:
    """How many well-formed llm_requests for `exec_id` come before anything that ends the exec."""
    count, offset = 0, 0
    while len(stream) - offset >= 4:
        (length,) = struct.unpack_from(">I", stream, offset)
        if length > CAP or len(stream) - offset - 4 < length:
            break
        try:
            message = decode_sandbox_message(stream[offset + 4 : offset + 4 + length])
        except ProtocolError:
            break
        if message.type != "llm_request" or message.exec_id != exec_id:
            break
        count += 1
        offset += 4 + length
    return count


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pieces, max_size=8), st.lists(st.integers(1, 200), max_size=10), st.booleans())
def test_exec_loop_survives_any_bytes_from_the_sandbox(parts, cuts, eof):
    stream = b"".join(parts)
    chunks, offset = [], 0
    for cut in cuts:
        if offset < len(stream):
            chunks.append(stream[offset : offset + cut])
            offset += cut
    if offset < len(stream):
        chunks.append(stream[offset:])
    calls = []

    def handler(prompts, model):
        calls.append(prompts)
        return ["answer"] * len(prompts)

    sandbox = ScriptedSandbox(chunks, eof, llm_handler=handler).start()
    started = time.monotonic()
    try:
        result = sandbox.execute("x = 1", timeout_s=0.03)
    except SandboxError as exc:  # allowed only if no fresh sandbox could be had: never here
        raise AssertionError(f"execute raised {exc!r}") from None
    elapsed = time.monotonic() - started
    assert isinstance(result, ExecResult)
    assert elapsed < 5, f"the host spent {elapsed:.1f} s on {len(stream)} bytes"
    if result.restarted:
        assert result.error_type in CLEAR_ERRORS and result.error
        assert sandbox.launches == 2
    else:
        assert result.error_type in (None, "TimeoutError") or result.error is not None
    assert len(calls) <= valid_requests_for(stream, exec_id=1)
    assert sandbox._decoder.pending_bytes <= CAP + 4
    # The replacement (or the survivor) is usable: a clean exec round trip is still possible.
    assert sandbox.is_running


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, min_size=1, max_size=6), st.lists(st.integers(0, 50), max_size=12))
def test_decoder_returns_frames_intact_however_split(bodies, cuts):
    encoded = [json.dumps(m).encode() for m in bodies]
    stream = b"".join(frame(body) for body in encoded)
    decoder, out, offset = FrameDecoder(1 << 20), [], 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[offset : offset + cut])
        offset += cut
        assert decoder.pending_bytes <= len(stream)
    out += decoder.feed(stream[offset:])
    assert out == encoded and decoder.pending_bytes == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(CAP + 1, 2**32 - 1), st.binary(max_size=256))
def test_oversized_header_is_refused_without_buffering_the_body(length, tail):
    decoder = FrameDecoder(CAP)
    try:
        decoder.feed(struct.pack(">I", length) + tail)
    except ProtocolError:
        pass
    else:
        raise AssertionError("an oversized frame header was accepted")
    assert decoder.pending_bytes <= 4 + 256
