"""Load: 50 completions at once on a 2-core machine, and 2,000 execs in one sandbox.

Each test measures the host before and after (sandbox containers of this process,
threads, open file descriptors, temp files; resident memory for the long run) and
prints the figures (`pytest -s` shows them).
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
import threading
import time

import pytest

from rlm_sandbox import RLM, DockerSandbox, Limits
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID
from rlm_sandbox.sandbox.docker import docker_client as sandbox_client
from tests.fakes.fake_openai import FakeOpenAIServer, Reply

COMPLETIONS = 50
CALLS_PER_COMPLETION = 10
LATENCY_S = (0.1, 0.4)


def our_containers(docker_client) -> int:
    return len(docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"}))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def settle(measure, target, timeout: float = 30.0):
    """Poll `measure` until it is at most `target` (background teardown takes a moment)."""
    deadline = time.monotonic() + timeout
    value = measure()
    while value > target and time.monotonic() < deadline:
        time.sleep(0.2)
        value = measure()
    return value


def drop_idle_connections(docker_client) -> None:
    """Idle keep-alive connections in the Docker clients' pools (the test's, and the one the
    sandboxes share) are not a leak: a pool keeps up to 64. Close them before measuring,
    and collect garbage earlier tests left, so only what this test holds is counted."""
    docker_client.api.close()
    sandbox_client(None).api.close()
    gc.collect()


def load_model(body: dict) -> Reply:
    """Every node: look at its own context, fan out 4 sub-calls, then spend the rest of its
    budget in a loop that only stops when the host refuses, and answer with its number."""
    time.sleep(random.uniform(*LATENCY_S))
    if not any(m.get("role") == "system" for m in body.get("messages", [])):
        return Reply.text("sub-answer")
    turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
    if turn == 0:
        return Reply.text(
            "```repl\nnumber = context.split()[-1]\nparts = llm_query_batched([f'part {k}' for k in range(4)])\n"
            "print(number, len(parts))\n```"
        )
    return Reply.text(
        "```repl\nextra = 0\nwhile True:\n    try:\n        llm_query('more')\n        extra += 1\n"
        "    except BudgetExceededError:\n        break\nFINAL(number)\n```"
    )


def test_fifty_completions_at_once(runtime, docker_client, monkeypatch, tmp_path):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # every temp file the host makes lands here
    with FakeOpenAIServer(load_model) as server:
        rlm = RLM(
            model="fake-root",
            sub_model="fake-sub",
            base_url=server.base_url,
            api_key="k",
            sandbox=SandboxConfig(runtime=runtime),
            limits=Limits(max_llm_calls=CALLS_PER_COMPLETION, timeout_s=170, exec_timeout_s=60),
        )
        before = {"containers": our_containers(docker_client), "threads": threading.active_count()}
        drop_idle_connections(docker_client)
        before["fds"] = open_fds()
        before["temp files"] = len(os.listdir(private_tmp))
        numbers = [random.randrange(10**8, 10**9) for _ in range(COMPLETIONS)]
        results: list = [None] * COMPLETIONS
        errors: list = []

        def run(index: int) -> None:
            try:
                results[index] = rlm.completion(
                    f"the number of completion {index} is {numbers[index]}", "which number?"
                )
            except BaseException as exc:
                errors.append(exc)

        started = time.monotonic()
        workers = [threading.Thread(target=run, args=(i,)) for i in range(COMPLETIONS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(180)
        wall = time.monotonic() - started
        hung = sum(worker.is_alive() for worker in workers)
        requests = server.request_count
        peak = server.peak_concurrency
        # Measured with the fake server still up, as before: teardown runs in the
        # background, so wait for containers and threads first, then count the rest.
        after = {
            "containers": settle(lambda: our_containers(docker_client), before["containers"]),
            "threads": settle(threading.active_count, before["threads"]),
        }
        rlm.client.close()
        drop_idle_connections(docker_client)
        after["fds"] = settle(open_fds, before["fds"])
        after["temp files"] = len(os.listdir(private_tmp))
    finished = [r for r in results if r is not None]
    print(
        f"\nLOAD 50 completions at once ({runtime}, fake LM latency {LATENCY_S[0]}-{LATENCY_S[1]} s, {os.cpu_count()} cores): "
        f"wall {wall:.1f} s, {requests} model requests (peak {peak} in flight), "
        f"mean completion {sum(r.elapsed_s for r in finished) / max(len(finished), 1):.1f} s, "
        f"max {max((r.elapsed_s for r in finished), default=0):.1f} s"
    )
    for key in before:
        print(f"LOAD   {key}: before {before[key]}, after {after[key]}")
    assert not errors and not hung, f"{len(errors)} raised, {hung} hung: {errors[:3]}"
    for index, result in enumerate(results):
        assert result.stop_reason == "final" and result.answer == str(numbers[index]), (index, result.error)
        # Each budget held exactly, with 49 others drawing from theirs at the same time.
        assert result.usage.total.calls == CALLS_PER_COMPLETION, (index, result.usage.total)
    assert requests == COMPLETIONS * CALLS_PER_COMPLETION
    assert all(after[key] <= before[key] for key in before), f"leaked: before {before}, after {after}"


@pytest.mark.parametrize("count", [2000])
def test_thousands_of_sequential_execs_keep_host_memory_and_fds_flat(runtime, count, docker_client):
    with DockerSandbox(
        SandboxConfig(runtime=runtime), llm_handler=lambda prompts, model: ["ok"] * len(prompts)
    ) as sandbox:
        sandbox.load_context("x" * 100_000)
        for i in range(200):  # warm-up: caches, pools and allocator arenas reach their working size
            sandbox.execute(f"v = {i}")
        drop_idle_connections(docker_client)
        fds_before, rss_before = open_fds(), rss_mib()
        started = time.monotonic()
        for i in range(count):
            code = f"v = {i} * 2\nprint(v, len(context))" if i % 10 else f"print(llm_query('q{i}'))"
            result = sandbox.execute(code)
            assert result.ok and result.stdout.startswith(("ok", f"{i * 2} 100000")), result
        took = time.monotonic() - started
        assert sandbox.restarts == 0
        drop_idle_connections(docker_client)
        fds_after, rss_after = open_fds(), rss_mib()
    print(
        f"\nLOAD {count} sequential execs ({runtime}): {took:.1f} s ({took / count * 1000:.2f} ms each); "
        f"host RSS {rss_before:.1f} -> {rss_after:.1f} MiB; fds {fds_before} -> {fds_after}"
    )
    assert fds_after <= fds_before, f"fds {fds_before} -> {fds_after}"
    assert rss_after - rss_before < 8, f"host RSS grew {rss_after - rss_before:.1f} MiB over {count} execs"
