"""Sandbox memory sized to the context: estimates that hold, big contexts that load,
a host that cannot hold one refused before any container starts, an explicit limit
that wins, and children sized the same way."""

from __future__ import annotations

import json
import os

import pytest

from rlm_sandbox import RLM, DockerSandbox, Limits, SandboxConfig
from rlm_sandbox.errors import SandboxDiedError, SandboxMemoryError
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID
from rlm_sandbox.sandbox.memory import (
    BASE_MEMORY,
    ContextFootprint,
    MiB,
    check_host_memory,
    context_footprint,
    parse_size,
)
from rlm_sandbox.sandbox.protocol import encode_context

from .fakes.fake_openai import FakeOpenAIServer
from .test_rlm import recursive_program

# What the server's peak resident memory (VmHWM) rose by while loading: the measure
# every estimate must cover.
_PEAK = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024"

# (name, context) of about 8 MB of payload each: the shapes whose in-sandbox cost per
# payload byte differ most, measured (a list of empty dicts costs about 18 times).
SHAPES = [
    ("ascii text", "a" * 8_000_000),
    ("text with one emoji", "a" * 8_000_000 + "\U0001f600"),
    ("latin-1 text", "é" * 4_000_000),
    ("CJK text", "中" * 2_700_000),
    ("list of short strings", ["ab"] * 1_300_000),
    ("list of unique short strings", [f"s{i}" for i in range(700_000)]),
    ("list of long strings", ["x" * 1000] * 8_000),
    ("list of ints", list(range(10**6, 10**6 + 900_000))),
    ("list of floats", [i + 0.5 for i in range(600_000)]),
    ("list of empty dicts", [{}] * 2_000_000),
    ("list of one-element lists", [[1]] * 1_600_000),
    ("dict of many keys", {f"k{i}": i for i in range(500_000)}),
    ("records", [{"id": i, "text": "lorem ipsum " * 8} for i in range(70_000)]),
    ("list of one-key dicts", [{f"k{i}": 1} for i in range(500_000)]),
]


def own_containers(client) -> set[str]:
    return {c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})}


def footprint_of(context) -> ContextFootprint:
    return context_footprint(context, encode_context(context)[1])


# ------------------------------------------------------------------ estimates


@pytest.mark.parametrize("name, context", SHAPES, ids=[name for name, _ in SHAPES])
def test_the_estimate_covers_the_measured_load_peak(sandbox_image, name, context):
    footprint = footprint_of(context)
    with DockerSandbox(SandboxConfig(mem_limit="2g")) as sandbox:
        before = int(sandbox.execute(f"print({_PEAK})").stdout)
        sandbox.load_context(context)
        peak = int(sandbox.execute(f"print({_PEAK})").stdout) - before
    assert footprint.load_peak_bytes >= peak, f"{name}: estimated {footprint.load_peak_bytes}, measured {peak}"
    # An upper bound, not a wild one: the worst shape measured is a few times over.
    assert footprint.load_peak_bytes <= 4 * peak + 4 * MiB, f"{name}: {footprint.load_peak_bytes} vs {peak}"


def test_a_large_json_payload_is_sampled_and_still_covered(monkeypatch):
    from rlm_sandbox.sandbox import memory

    context = [{"id": i, "text": "lorem ipsum " * 8} for i in range(70_000)]
    scanned = footprint_of(context)
    monkeypatch.setattr(memory, "_SCAN_FULL_BYTES", 1 << 20)
    sampled = footprint_of(context)
    assert scanned.decoded_bytes <= sampled.decoded_bytes <= 1.5 * scanned.decoded_bytes


def test_small_contexts_keep_the_base_size_and_big_ones_grow():
    assert footprint_of("x" * 1000).memory_bytes == BASE_MEMORY
    assert footprint_of({"a": [1, 2, 3]}).memory_bytes == BASE_MEMORY
    big = footprint_of("x" * (300 * MiB))
    assert big.memory_bytes >= 600 * MiB + BASE_MEMORY - 128 * MiB
    assert big.memory_bytes % MiB == 0


def test_bytes_contexts_are_sized_from_their_length():
    footprint = context_footprint(b"\x00" * 1000, b"\x00" * 1000)
    assert footprint.kind == "bytes" and 2000 <= footprint.load_peak_bytes <= 2100


def test_sizes_parse_as_docker_reads_them():
    assert parse_size("512m") == 512 * MiB
    assert parse_size("2g") == 2 << 30
    assert parse_size("1048576") == MiB
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size("lots")


def test_the_host_check_says_what_is_needed_and_what_there_is():
    footprint = footprint_of("x" * 1000)
    with pytest.raises(SandboxMemoryError, match=r"needs a sandbox of about 3\.0 GiB.*has 2\.0 GiB in all"):
        check_host_memory(3 << 30, total=2 << 30, local=False, footprint=footprint)
    check_host_memory(1 << 30, total=2 << 30, local=False, footprint=footprint)


# ------------------------------------------------------------------ real sandboxes


def test_a_400_mb_context_loads_with_default_settings(sandbox_image):
    """The issue's case: 400 MB through the defaults died OOMKilled at 512m."""
    context = "x" * (400 * MiB)
    with DockerSandbox() as sandbox:
        sandbox.load_context(context)
        assert sandbox.execute("print(len(context))").stdout == f"{400 * MiB}\n"
        limit = sandbox.client.api.inspect_container(sandbox.container_id)["HostConfig"]["Memory"]
    assert limit == footprint_of(context).memory_bytes > BASE_MEMORY


def test_a_json_context_is_sized_too(sandbox_image):
    """About 100 MB of records peaks near 650 MB when decoded: over the base 512 MiB."""
    context = [{"id": i, "text": "lorem ipsum " * 8} for i in range(850_000)]
    with DockerSandbox() as sandbox:
        sandbox.load_context(context)
        assert sandbox.execute("print(len(context), context[-1]['id'])").stdout == "850000 849999\n"


def test_size_for_sizes_the_container_before_it_is_created(runtime, docker_client):
    context = "x" * (200 * MiB)
    sandbox = DockerSandbox(SandboxConfig(runtime=runtime)).size_for(context)
    try:
        assert sandbox.container_id is None, "size_for() starts nothing"
        sandbox.start()
        limit = docker_client.api.inspect_container(sandbox.container_id)["HostConfig"]["Memory"]
        assert limit == footprint_of(context).memory_bytes
        first = sandbox.container_id
        sandbox.load_context(context)
        assert sandbox.container_id == first, "a sandbox sized up front is not replaced on load"
        assert sandbox.execute("print(len(context))").stdout == f"{200 * MiB}\n"
    finally:
        sandbox.close()


def test_a_running_sandbox_grows_for_a_big_context(runtime, docker_client):
    """A started (say pooled) sandbox: runc raises its limit in place, gVisor cannot, so
    the sandbox is replaced by a bigger one before the context is sent."""
    context = "x" * (300 * MiB)
    with DockerSandbox(SandboxConfig(runtime=runtime)) as sandbox:
        first = sandbox.container_id
        sandbox.load_context(context)
        assert sandbox.execute("print(len(context))").stdout == f"{300 * MiB}\n"
        limit = docker_client.api.inspect_container(sandbox.container_id)["HostConfig"]["Memory"]
        assert limit == footprint_of(context).memory_bytes
        assert (sandbox.container_id == first) == (runtime == "runc")


def test_a_context_the_host_cannot_hold_fails_before_any_container(docker_client, sandbox_image):
    total = docker_client.info()["MemTotal"]
    too_big = ContextFootprint(kind="str", payload_bytes=total, decoded_bytes=total, load_peak_bytes=2 * total)
    before = own_containers(docker_client)
    sandbox = DockerSandbox()
    with pytest.raises(SandboxMemoryError, match=r"needs a sandbox of about .* GiB, but the Docker host has"):
        sandbox._fit_footprint(too_big)
    assert sandbox.container_id is None and own_containers(docker_client) == before
    sandbox.close()


def test_an_explicit_limit_wins_and_the_error_says_what_it_would_need(sandbox_image, docker_client):
    context = "x" * (300 * MiB)
    need = footprint_of(context).memory_bytes
    with DockerSandbox(SandboxConfig(mem_limit="256m")) as sandbox:
        with pytest.raises(SandboxDiedError) as caught:
            sandbox.load_context(context)
        limit = docker_client.api.inspect_container(sandbox.container_id)["HostConfig"]["Memory"]
    assert limit == 256 * MiB, "the explicit limit is kept"
    message = str(caught.value)
    assert "OOMKilled" in message and f"mem_limit='{need // MiB}m'" in message, message
    assert "leave mem_limit unset" in message


class _RecordingSandbox(DockerSandbox):
    sized: list[int] = []

    def _fit_context(self, context, payload):
        self.sized.append(len(payload))
        super()._fit_context(context, payload)


def test_children_are_sized_from_their_prompt_before_they_start(sandbox_image):
    """A child's context is its prompt: the RLM sizes its sandbox the same way, before start."""
    _RecordingSandbox.sized = []
    with FakeOpenAIServer() as server:
        server.set_responder(recursive_program(fan_out=1))
        rlm = RLM(
            model="fake-root",
            sub_model="fake-sub",
            base_url=server.base_url,
            api_key="test-key",
            sandbox=lambda **handlers: _RecordingSandbox(SandboxConfig(), **handlers),
            limits=Limits(max_depth=2),
        )
        result = rlm.completion("root context", "combine the parts")
    assert result.stop_reason == "final", result.error
    assert sorted(_RecordingSandbox.sized) == sorted([len(b"root context"), len(json.dumps("part 0")) - 2])


def _memory_available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def test_a_2_gib_context_loads_with_default_settings(sandbox_image, docker_client):
    """The issue's target. It needs about 9 GiB free (2 GiB str + its encoding on the
    host, about 4.4 GiB in the sandbox): a host without that is told why before any
    container starts, which the test above shows; here it is skipped."""
    size = 2 << 30
    if _memory_available() < 10 << 30:
        pytest.skip("needs about 10 GiB of available memory for a 2 GiB context on both sides")
    context = "x" * size
    with DockerSandbox() as sandbox:
        sandbox.load_context(context)
        assert sandbox.execute("print(len(context), context[-3:])").stdout == f"{size} xxx\n"
        limit = docker_client.api.inspect_container(sandbox.container_id)["HostConfig"]["Memory"]
    assert limit == footprint_of(context).memory_bytes
