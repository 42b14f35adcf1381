"""The warm pool: never reused, bounded, refilled, shrunk when idle, closed cleanly."""

from __future__ import annotations

import time

import pytest

from rlm_sandbox import RLM, Limits
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID, DockerSandbox
from rlm_sandbox.sandbox.pool import SandboxPool

from .fakes.fake_openai import FakeOpenAIServer
from .test_rlm import recursive_program


def own_containers(client) -> set[str]:
    import os

    return {c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})}


def eventually(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_pool_fills_to_size_and_no_further(runtime, docker_client):
    before = own_containers(docker_client)
    with SandboxPool(SandboxConfig(runtime=runtime), size=3) as pool:
        assert pool.wait_until_warm(timeout_s=60)
        time.sleep(0.5)  # give an overeager refill the chance to show itself
        assert pool.warm == 3
        assert len(own_containers(docker_client) - before) == 3
    assert eventually(lambda: own_containers(docker_client) == before), "close() removes every warm sandbox"


def test_a_sandbox_is_never_reused(sandbox_image, docker_client):
    with SandboxPool(size=1) as pool:
        pool.wait_until_warm()
        first = pool.acquire()
        first.execute("secret = 'user A'")
        first_id = first.container_id
        first.close()
        pool.wait_until_warm()
        second = pool.acquire()
        try:
            assert second.container_id != first_id
            assert "NameError" in second.execute("secret").error
        finally:
            second.close()
        assert not docker_client.api.containers(all=True, filters={"id": first_id})


def test_acquire_is_warm_then_refills_in_the_background(sandbox_image):
    with SandboxPool(size=2) as pool:
        pool.wait_until_warm()
        started = time.perf_counter()
        sandbox = pool.acquire(llm_handler=lambda prompts, model: ["hi"] * len(prompts))
        took = time.perf_counter() - started
        try:
            assert took < 0.05, f"a warm acquire took {took * 1000:.1f} ms"
            assert pool.warm_hits == 1 and pool.cold_starts == 0
            assert sandbox.execute("llm_query('x')").stdout == "'hi'\n", "handlers are attached on acquire"
            assert eventually(lambda: pool.warm == 2), "the pool refills after a take"
        finally:
            sandbox.close()


def test_empty_pool_starts_one_cold(sandbox_image):
    with SandboxPool(size=1) as pool:
        first = pool.acquire()  # taken before the refill thread can have finished one
        second = pool.acquire()
        try:
            assert pool.cold_starts >= 1
            assert first.execute("1").stdout == "1\n" and second.execute("2").stdout == "2\n"
        finally:
            first.close()
            second.close()


def test_idle_pool_shrinks_to_min_size(sandbox_image, docker_client):
    before = own_containers(docker_client)
    with SandboxPool(size=2, min_size=1, idle_s=0.5) as pool:
        pool.wait_until_warm()
        assert eventually(lambda: pool.warm == 1, timeout_s=10)
        assert eventually(lambda: len(own_containers(docker_client) - before) == 1)
        # Demand brings it back to full size.
        pool.acquire().close()
        assert eventually(lambda: pool.warm == 2, timeout_s=20)


def test_acquire_after_close_is_an_error(sandbox_image):
    pool = SandboxPool(size=1)
    pool.close()
    with pytest.raises(Exception, match="closed"):
        pool.acquire()


def test_warm_sandbox_killed_while_idle_is_replaced_on_use(sandbox_image, docker_client):
    with SandboxPool(size=1) as pool:
        pool.wait_until_warm()
        sandbox = pool.acquire()
        try:
            docker_client.api.kill(sandbox.container_id)
            sandbox.load_context("still works")
            assert sandbox.execute("context").stdout == "'still works'\n"
        finally:
            sandbox.close()


def test_depth_three_tree_takes_every_sandbox_from_the_pool(sandbox_image):
    with FakeOpenAIServer(recursive_program(fan_out=2)) as server, SandboxPool(size=7) as pool:
        assert pool.wait_until_warm(timeout_s=120)
        rlm = RLM(model="m", base_url=server.base_url, api_key="k", sandbox=pool, limits=Limits(max_depth=3))
        result = rlm.completion("ctx", "combine")
        assert result.stop_reason == "final", result.error
        assert result.sandboxes_started == 7
        assert pool.cold_starts == 0 and pool.warm_hits == 7


def test_pool_with_local_sandboxes(recwarn):
    from rlm_sandbox.sandbox.local import LocalSandbox

    with SandboxPool(size=2, factory=LocalSandbox) as pool:
        assert pool.wait_until_warm(timeout_s=30)
        sandbox = pool.acquire()
        assert sandbox.execute("6 * 7").stdout == "42\n"
        sandbox.close()


def test_docker_sandbox_is_the_default_factory(sandbox_image):
    with SandboxPool(size=1) as pool:
        sandbox = pool.acquire()
        try:
            assert isinstance(sandbox, DockerSandbox)
        finally:
            sandbox.close()


class _SlowStart(DockerSandbox):
    """A start slower than the pool's idle_s, as on a loaded host."""

    def start(self):
        time.sleep(0.8)
        return super().start()


def test_a_refill_slower_than_idle_s_still_fills_the_pool(sandbox_image, docker_client):
    """The idle clock must not run out while a refill start is in flight (it once left
    the pool one short for good)."""
    with SandboxPool(size=2, min_size=1, idle_s=0.5, factory=_SlowStart) as pool:
        assert pool.wait_until_warm(timeout_s=60)
        pool.acquire().close()
        assert pool.wait_until_warm(2, timeout_s=60), f"the pool stayed at {pool.warm} of 2"
        assert eventually(lambda: pool.warm == 1, timeout_s=20), "and it still shrinks once idle"
