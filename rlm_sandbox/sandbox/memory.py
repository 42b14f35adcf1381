"""Sandbox memory sized to its context.

A sandbox gets what loading its context needs at the peak when it is decoded (the
received payload, any transient copy the decoder makes, and the decoded value itself)
plus 384 MiB for the server and the model's code, and never less than the base 512
MiB. Once the load is done the payload buffer is freed, which leaves the code room for
about one more copy of the context: `context.lower()` on a big text must not kill the
sandbox. A big ASCII text or bytes context is read straight into its final object
(see `_InPlace` in sandbox_image/repl_server.py) and never needs the payload buffer;
the size stays the same for that room, and for a server that has to decode after all.

The decoded size is known exactly for a str (the host's str has the same layout as the
sandbox's) and for bytes. For a list or dict, json.loads builds one Python object per
value, which can cost 20 times the JSON text (a list of empty dicts); the estimate
counts the JSON's structural bytes and charges each its measured object cost, an upper
bound for every shape measured (see tests/test_memory.py and BENCHMARKS.md). Payloads
over `_SCAN_FULL_BYTES` are sampled instead of scanned whole: a full count of a 2 GiB
payload costs seconds, a sample milliseconds.

Everything here is computed on the host from the host's own data: the container never
influences how much memory it is given.
"""

from __future__ import annotations

import re
import sys

from pydantic import BaseModel, ConfigDict

from ..errors import SandboxMemoryError
from .protocol import AsciiText

MiB = 1 << 20
GiB = 1 << 30
BASE_MEMORY = 512 * MiB
DEFAULT_MEM_LIMIT = "512m"
# Room for the server and the code beside a loaded context. A context whose load
# peaks under BASE_MEMORY - _WORKING_ROOM (128 MiB) fits the base size unchanged, so
# small contexts never resize a (pooled) sandbox.
_WORKING_ROOM = 384 * MiB

# Measured object costs (CPython 3.11, 64-bit) charged per structural byte of JSON:
# each value is a pointer in its parent plus, at worst, a number object (float 24,
# int 28) and the list's over-allocation; a string adds its 49-byte header; a dict
# member its share of the dict's entry table; a list or dict its own header (a small
# dict is 184 bytes).
_COST_PER_VALUE = 44
_COST_PER_STRING = 57
_COST_PER_MEMBER = 48
_COST_PER_LIST = 64
_COST_PER_DICT = 184
_SCAN_FULL_BYTES = 64 * MiB
_SAMPLES = 64
_SAMPLE_BYTES = 256 * 1024
# Sampling can miss a dense stretch: charge more than the sample saw.
_SAMPLE_MARGIN = 1.25


class ContextFootprint(BaseModel):
    """What a context costs inside the sandbox, in bytes."""

    model_config = ConfigDict(frozen=True)

    kind: str
    payload_bytes: int
    decoded_bytes: int
    load_peak_bytes: int

    @property
    def memory_bytes(self) -> int:
        """The memory limit a sandbox holding this context gets when sized automatically."""
        size = max(BASE_MEMORY, self.load_peak_bytes + _WORKING_ROOM)
        return -(-size // MiB) * MiB


def _text_width(payload: bytes | bytearray | memoryview) -> int:
    """Bytes per character of the widest str json.loads may build from this UTF-8."""
    data = payload if not isinstance(payload, memoryview) else payload.tobytes()
    if data.isascii():
        return 1
    # Lead bytes of 4-byte UTF-8 sequences: a character outside the BMP makes its
    # whole string 4 bytes per character; without any, 2 is the widest.
    return 4 if re.search(rb"[\xf0-\xf4]", data) else 2


def _structure_counts(payload: bytes | bytearray) -> dict[bytes, float]:
    tokens = (b'"', b",", b":", b"[", b"{")
    if len(payload) <= _SCAN_FULL_BYTES:
        return {token: float(payload.count(token)) for token in tokens}
    step = len(payload) // _SAMPLES
    sampled = 0
    counts = dict.fromkeys(tokens, 0.0)
    for index in range(_SAMPLES):
        window = payload[index * step : index * step + _SAMPLE_BYTES]
        sampled += len(window)
        for token in tokens:
            counts[token] += window.count(token)
    scale = len(payload) / sampled * _SAMPLE_MARGIN
    return {token: count * scale for token, count in counts.items()}


def _json_decoded_estimate(payload: bytes | bytearray, width: int) -> int:
    counts = _structure_counts(payload)
    lists, dicts = counts[b"["], counts[b"{"]
    values = counts[b","] + lists + dicts + 1
    estimate = (
        len(payload) * width
        + values * _COST_PER_VALUE
        + counts[b'"'] / 2 * _COST_PER_STRING
        + counts[b":"] * _COST_PER_MEMBER
        + lists * _COST_PER_LIST
        + dicts * _COST_PER_DICT
    )
    return int(estimate)


def context_footprint(context: object, payload: bytes | bytearray | AsciiText) -> ContextFootprint:
    """The memory `context` (encoded as `payload` by encode_context) needs in the sandbox.

    >>> context_footprint("a" * 1000, b"a" * 1000).load_peak_bytes
    2049
    """
    size = len(payload)
    if isinstance(context, str):
        decoded = sys.getsizeof(context)
        # A non-ASCII text is decoded into a narrower buffer first and widened when a
        # wider character turns up: at most half the final size, measured.
        transient = 0 if context.isascii() else decoded // 2
        return ContextFootprint(
            kind="str", payload_bytes=size, decoded_bytes=decoded, load_peak_bytes=size + transient + decoded
        )
    if isinstance(context, (bytes, bytearray, memoryview)):
        decoded = size + sys.getsizeof(b"")
        return ContextFootprint(kind="bytes", payload_bytes=size, decoded_bytes=decoded, load_peak_bytes=size + decoded)
    # JSON: json.loads decodes the whole text to one str first, then builds the objects.
    assert not isinstance(payload, AsciiText)  # only a str is sent that way
    width = _text_width(payload)
    decoded = _json_decoded_estimate(payload, width)
    return ContextFootprint(
        kind=type(context).__name__,
        payload_bytes=size,
        decoded_bytes=decoded,
        load_peak_bytes=size + size * width + decoded,
    )


# ------------------------------------------------------------------ sizes

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": MiB, "g": GiB}


def parse_size(text: str | int) -> int:
    """Docker's size notation ("512m", "2g", "1048576") in bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a memory size: {text!r} (use a number of bytes or e.g. '512m', '4g')")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(size: int) -> str:
    """A size for people: '4.6 GiB', '612 MiB'."""
    if size >= GiB:
        return f"{size / GiB:.1f} GiB"
    return f"{size / MiB:.0f} MiB"


def docker_size(size: int) -> str:
    """A size in Docker's notation, rounded up to a whole MiB (what to put in mem_limit)."""
    return f"{-(-size // MiB)}m"


# ------------------------------------------------------------------ the host


def _local_memory_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_host_memory(need: int, *, total: int | None, local: bool, footprint: ContextFootprint) -> None:
    """Raise SandboxMemoryError if the Docker host cannot give a sandbox `need` bytes.

    `total` is the daemon's MemTotal (its machine, local or remote); for a daemon on
    this machine, what is available now is checked too, since a limit is no
    reservation and an over-committed host would kill something else instead.
    """
    available = _local_memory_available() if local else None
    what = (
        f"this {footprint.kind} context ({format_size(footprint.payload_bytes)} encoded) needs a sandbox of "
        f"about {format_size(need)}"
    )
    advice = (
        "Free memory on the Docker host, use a host with more, or pass a smaller context "
        "(split it, or keep it on disk and pass only what the model needs)."
    )
    if total is not None and need > total:
        raise SandboxMemoryError(f"{what}, but the Docker host has {format_size(total)} in all. {advice}")
    if available is not None and need > available:
        raise SandboxMemoryError(
            f"{what}, but only {format_size(available)} of the Docker host's memory is available now. {advice}"
        )


def is_local_daemon(base_url: str) -> bool:
    """Whether the daemon at docker-py's `base_url` runs on this machine (a unix socket)."""
    # docker-py names a unix-socket daemon this way; ssh:// and tcp:// ones otherwise.
    return base_url == "http+docker://localhost"
