"""The frame codec and message validation, including a fuzz of the host's decoder."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm_sandbox.errors import ProtocolError
from rlm_sandbox.sandbox.protocol import (
    ExecDone,
    FrameDecoder,
    LLMRequest,
    Ready,
    decode_sandbox_message,
    encode_context,
)


def framed(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


def test_frames_split_across_feeds_and_packed_together():
    stream = framed({"type": "ready", "version": "1"}) + framed({"type": "exec_result", "id": 3})
    decoder = FrameDecoder()
    bodies = []
    for i in range(len(stream)):
        bodies += decoder.feed(stream[i : i + 1])
    assert [decode_sandbox_message(b).type for b in bodies] == ["ready", "exec_result"]
    assert decoder.pending_bytes == 0
    assert len(FrameDecoder().feed(stream)) == 2


def test_oversized_header_is_refused_before_the_body_arrives():
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(ProtocolError, match="1025-byte frame"):
        decoder.feed(struct.pack(">I", 1025))


def test_messages_are_validated():
    assert isinstance(decode_sandbox_message(b'{"type":"ready","version":"1"}'), Ready)
    request = decode_sandbox_message(b'{"type":"llm_request","id":1,"exec_id":2,"prompts":["a"]}')
    assert isinstance(request, LLMRequest) and request.model is None and request.recursive is False
    done = decode_sandbox_message(b'{"type":"exec_result","id":1,"stdout":"x"}')
    assert isinstance(done, ExecDone) and done.stdout == "x"
    for bad in (
        b"not json",
        b'{"type":"ready"}',  # missing version
        b'{"type":"llm_request","id":1,"exec_id":2,"prompts":[]}',  # empty batch
        b'{"type":"llm_request","id":-1,"exec_id":2,"prompts":["a"]}',
        b'{"type":"exec_result","id":1,"admin":true}',  # unknown field
        b'{"type":"exec_result","id":"1"}',  # strings are not coerced to ints
        b'["type","ready"]',
        b"\xff\xfe",
    ):
        with pytest.raises(ProtocolError):
            decode_sandbox_message(bad)


def test_error_message_does_not_echo_a_huge_body():
    with pytest.raises(ProtocolError) as info:
        decode_sandbox_message(b'{"type":"nope","pad":"' + b"A" * 1_000_000 + b'"}')
    assert len(str(info.value)) < 500


@pytest.mark.parametrize("context", ["", "short", "ünï ✓\n" * 1000, ["a", 1], {"k": "v"}])
def test_context_is_a_header_frame_then_raw_utf8(context):
    header, payload = encode_context(context)
    (length,) = struct.unpack(">I", header[:4])
    message = json.loads(header[4:])
    assert length == len(header) - 4
    assert message["bytes"] == len(payload)
    text = payload.decode("utf-8")
    assert (text if message["encoding"] == "text" else json.loads(text)) == context


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_fuzz_decoder_raises_only_protocol_errors(chunks):
    decoder = FrameDecoder(max_frame_bytes=256)
    try:
        for chunk in chunks:
            for body in decoder.feed(chunk):
                try:
                    decode_sandbox_message(body)
                except ProtocolError:
                    pass
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["type", "id", "exec_id", "prompts", "model", "recursive", "version", "stdout", "final", "x"]
                ),
                inner,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_fuzz_message_validation_with_json_shaped_input(value):
    body = json.dumps(value).encode()
    try:
        message = decode_sandbox_message(body)
    except ProtocolError:
        return
    # Anything accepted is one of the four known, fully typed messages.
    assert message.type in ("ready", "llm_request", "context_loaded", "exec_result")


def test_images_per_prompt_are_capped_by_the_frame_schema():
    from rlm_sandbox.sandbox.protocol import MAX_IMAGES_PER_PROMPT, decode_sandbox_message

    def request(count: int) -> bytes:
        return json.dumps(
            {
                "type": "llm_request",
                "id": 1,
                "exec_id": 1,
                "prompts": ["p"],
                "images": [["data:image/png;base64,"] * count],
            }
        ).encode()

    assert decode_sandbox_message(request(MAX_IMAGES_PER_PROMPT)).images is not None
    with pytest.raises(ProtocolError):
        decode_sandbox_message(request(MAX_IMAGES_PER_PROMPT + 1))


@pytest.mark.parametrize("context", ["", "short", "x" * 10_000_001, "ünï ✓\n" * 1000, ["a", 1], {"k": "v"}])
def test_a_streamed_context_sends_the_same_bytes_as_the_encoded_one(context):
    from rlm_sandbox.sandbox.protocol import context_stream, payload_pieces

    header, payload = context_stream(context)
    assert (header, b"".join(payload_pieces(payload, 4096 * 1024))) == encode_context(context)
    assert len(payload) == len(encode_context(context)[1])
