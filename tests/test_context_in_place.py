"""Big ASCII text and bytes contexts are read straight into the object the code sees.

The server builds the final str or bytes first and reads the payload into its storage
(see `_InPlace` in sandbox_image/repl_server.py), so a context costs its own size in
the sandbox, not twice that. What must hold: the value is exactly what was sent, in
every runtime; it behaves as any other str (hash, comparison); the sandbox's peak shows
the single copy; and every way the fast path can be refused ends in a correct value.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading

import pytest

from rlm_sandbox.sandbox.protocol import encode_frame
from sandbox_image import repl_server

from .conftest import make_sandbox

MiB = 1 << 20
# The server's peak resident memory so far: VmHWM, or getrusage under gVisor, which has
# no VmHWM. (Not getrusage everywhere: on Linux it keeps the peak of the process that
# forked the server, and the local server is forked from this test process.)
_PEAK = (
    "int(next((l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')), 0)) * 1024"
    " or __import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss * 1024"
)


def _ascii_text(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;\n\t\x00\x7f"
    return "".join(rng.choices(alphabet, k=size))


@pytest.fixture
def sandbox(sandbox_kind):
    with make_sandbox(sandbox_kind) as sb:
        yield sb


def _sha256_in_sandbox(sandbox, expression: str) -> str:
    result = sandbox.execute(f"import hashlib\nprint(hashlib.sha256({expression}).hexdigest())")
    assert result.error is None, result.error
    return result.stdout.strip()


def test_a_big_ascii_text_arrives_exactly_and_behaves_as_any_str(sandbox):
    context = _ascii_text(3 * MiB + 5)  # not a multiple of any slice or page
    sandbox.load_context(context)
    assert _sha256_in_sandbox(sandbox, "context.encode('ascii')") == hashlib.sha256(context.encode()).hexdigest()
    # A copy built the ordinary way: equal, same hash (computed from the characters,
    # not left over from construction), same length and type.
    checks = sandbox.execute(
        "copy = context.encode().decode()\n"
        "print(type(context) is str, context.isascii(), len(context), context == copy, hash(context) == hash(copy),"
        " context[-6:] == copy[-6:], context.count('\\n') == copy.count('\\n'))"
    )
    assert checks.stdout == f"True True {len(context)} True True True True\n"


def test_a_big_bytes_context_arrives_exactly(sandbox):
    context = random.Random(11).randbytes(2 * MiB + 3)  # every byte value, not only ASCII
    sandbox.load_context(context)
    assert _sha256_in_sandbox(sandbox, "context") == hashlib.sha256(context).hexdigest()
    assert sandbox.execute("print(type(context).__name__, len(context))").stdout == f"bytes {len(context)}\n"


@pytest.mark.parametrize("context", ["é" * MiB + "tail", "x" * (MiB - 1), "x" * MiB])
def test_text_the_fast_path_does_not_take_or_just_takes_is_exact(sandbox, context):
    sandbox.load_context(context)
    expected = hashlib.sha256(context.encode()).hexdigest()
    assert _sha256_in_sandbox(sandbox, "context.encode()") == expected


def test_a_reload_replaces_the_value(sandbox):
    sandbox.load_context(_ascii_text(2 * MiB, seed=1))
    second = _ascii_text(2 * MiB, seed=2)
    sandbox.load_context(second)
    assert _sha256_in_sandbox(sandbox, "context.encode()") == hashlib.sha256(second.encode()).hexdigest()


def test_the_sandbox_holds_one_copy_of_a_big_text(sandbox):
    """Decoding from a receive buffer peaked at twice the payload; in place it is once."""
    size = 64 * MiB
    before = int(sandbox.execute(f"print({_PEAK})").stdout)
    sandbox.load_context("y" * size)
    peak = int(sandbox.execute(f"print({_PEAK})").stdout) - before
    assert size <= peak < 1.25 * size, f"the load raised the peak by {peak / size:.2f}x the payload"


# ------------------------------------------------------------------ the server's own paths


def _receive(header: dict, payload: bytes, *, close_early: bool = False):
    """Run the server's _receive_payload on a real pipe fed from another thread."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload[: len(payload) // 2] if close_early else payload)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        return repl_server._receive_payload(repl_server.Channel(read_fd, -1), header)
    finally:
        feeder.join()
        os.close(read_fd)


def test_a_header_that_claims_ascii_wrongly_still_gives_the_right_str():
    text = "a" * (2 * MiB) + "ünï" + "b" * 100
    payload = text.encode()
    received = _receive({"type": "context", "encoding": "text", "ascii": True, "bytes": len(payload)}, payload)
    assert type(received) is str
    assert received == text and not received.isascii()


def test_a_stream_that_ends_mid_payload_gives_none_and_no_thread_behind():
    before = set(threading.enumerate())
    header = {"type": "context", "encoding": "text", "ascii": True, "bytes": 4 * MiB}
    assert _receive(header, b"z" * (4 * MiB), close_early=True) is None
    assert not [t for t in set(threading.enumerate()) - before if t.name == "repl-populate"]


def test_without_the_c_api_the_payload_is_decoded_as_before(monkeypatch):
    unavailable = repl_server._InPlace.__new__(repl_server._InPlace)
    unavailable.available = False
    monkeypatch.setattr(repl_server, "_in_place", unavailable)
    text = _ascii_text(2 * MiB)
    header = {"type": "context", "encoding": "text", "ascii": True, "bytes": len(text)}
    received = _receive(header, text.encode())
    assert isinstance(received, bytearray)
    assert repl_server._decode_context(header, received) == text


def test_the_header_marks_ascii_text_only():
    from rlm_sandbox.sandbox.protocol import context_stream, encode_context

    assert b'"ascii":true' in context_stream("plain")[0]
    assert b'"ascii"' not in encode_context("plaín")[0]
    assert b'"ascii"' not in encode_context(b"bytes")[0]
    assert encode_frame({"type": "x"}).endswith(b'{"type":"x"}')
