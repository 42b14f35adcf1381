"""acompletion: completions on worker threads, the event loop never blocked; cancel
stops a whole tree and removes its containers."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from tests.fakes.fake_openai import Reply
from tests.reliability.test_host_process import containers_of, wait_for

from .test_rlm import fake_openai, is_root, make_rlm, repl, turn_of  # noqa: F401


def thread_ticker(stop: threading.Event, gaps: list[float], period: float = 0.01) -> None:
    """The control: how late any thread of this process gets to run (GIL and OS scheduling)."""
    last = time.monotonic()
    while not stop.is_set():
        time.sleep(period)
        now = time.monotonic()
        gaps.append(now - last - period)
        last = now


async def ticker(stop: asyncio.Event, gaps: list[float], period: float = 0.01) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(period)
        now = time.monotonic()
        gaps.append(now - last - period)
        last = now


def test_twenty_concurrent_completions_never_stall_the_loop(fake_openai):
    def respond(body):
        if not is_root(body):
            return Reply(content="sub", delay_s=0.1)
        if turn_of(body) == 0:
            return Reply(content=repl("n = len(context)\nprint(llm_query('x'), n)"), delay_s=0.2)
        return Reply(content="FINAL_VAR('n')", delay_s=0.2)

    fake_openai.set_responder(respond)
    rlm = make_rlm(fake_openai)  # LocalSandbox: the loop's behaviour, not Docker's speed, is under test
    # One completion first: the SDK builds its response validators on first use, once
    # per process, holding the GIL. That is start-up cost, not the loop being blocked.
    assert rlm.completion("warm-up", "q").stop_reason == "final"

    async def main():
        stop, gaps = asyncio.Event(), []
        tick = asyncio.create_task(ticker(stop, gaps))
        results = await asyncio.gather(*(rlm.acompletion("x" * (100 + i), "q") for i in range(20)))
        stop.set()
        await tick
        return results, gaps

    stop_control, control = threading.Event(), []
    control_thread = threading.Thread(target=thread_ticker, args=(stop_control, control), daemon=True)
    control_thread.start()
    try:
        results, gaps = asyncio.run(main())
    finally:
        stop_control.set()
        control_thread.join()
    print(
        f"largest loop gap {max(gaps) * 1000:.1f} ms over {len(gaps)} ticks; thread control {max(control) * 1000:.1f} ms"
    )
    assert [r.answer for r in results] == [str(100 + i) for i in range(20)]
    assert all(r.stop_reason == "final" for r in results)
    assert fake_openai.peak_concurrency >= 10, "the completions ran side by side"
    assert len(gaps) > 20
    # 100 ms beyond what every thread of the process waited at the same time: on a
    # loaded machine the OS may pause the whole process, which no library can prevent.
    assert max(gaps) < 0.1 + max(control), f"the event loop stalled for {max(gaps):.3f} s"


def test_cancelling_one_completion_removes_its_containers_and_spares_the_other(fake_openai, docker_client):
    def respond(body):
        if not is_root(body):
            return Reply(content="slow sub", delay_s=120)
        if "doomed" in str(body["messages"][1]["content"]):
            # A child RLM whose code sleeps, and the root waiting on it: two containers.
            if "written by another model" in str(body["messages"]):
                return Reply.text(repl("import time\ntime.sleep(600)"))
            return Reply.text(repl("print(rlm_query('part'))"))
        if turn_of(body) == 0:
            return Reply.text(repl("print(len(context))"))
        return Reply.text("FINAL(survivor)")

    fake_openai.set_responder(respond)
    rlm = make_rlm(fake_openai, sandbox=True, max_depth=2, exec_timeout_s=600)
    pid = os.getpid()

    async def main():
        doomed = asyncio.create_task(rlm.acompletion("ctx", "doomed"))
        ok = await asyncio.wait_for(
            asyncio.to_thread(wait_for, lambda: len(containers_of(docker_client, pid, running_only=True)) >= 2, 60), 90
        )
        assert ok, "the doomed tree never had its two sandboxes"
        other = asyncio.create_task(rlm.acompletion("ctx", "fine"))
        cancelled_at = time.monotonic()
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        took = time.monotonic() - cancelled_at
        left = len(containers_of(docker_client, pid, running_only=True))
        return await other, took, left

    result, took, _ = asyncio.run(main())
    assert (result.stop_reason, result.answer) == ("final", "survivor")
    assert took < 30, f"cancel took {took:.1f} s"
    assert wait_for(lambda: not containers_of(docker_client, pid), 10), "a cancelled tree left a container"


def test_session_acompletion(fake_openai):
    def respond(body):
        return Reply.text(repl("y = 7") if turn_of(body) % 2 == 0 else repl("FINAL(y * 6)"))

    fake_openai.set_responder(respond)
    rlm = make_rlm(fake_openai, max_iterations=3)

    async def main():
        with rlm.session("ctx") as chat:
            first = await chat.acompletion("a")
            second = await chat.acompletion("b")
        return first, second

    first, second = asyncio.run(main())
    assert (first.answer, second.answer) == ("42", "42")


def test_a_cancelled_session_query_closes_the_session(fake_openai, docker_client):
    fake_openai.set_responder(lambda body: Reply(content="late", delay_s=120))
    rlm = make_rlm(fake_openai, sandbox=True)

    async def main():
        chat = rlm.session("ctx")
        task = asyncio.create_task(chat.acompletion("q"))
        ok = await asyncio.to_thread(wait_for, lambda: containers_of(docker_client, os.getpid(), running_only=True), 60)
        assert ok
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return chat

    chat = asyncio.run(main())
    assert wait_for(lambda: not containers_of(docker_client, os.getpid()), 10)
    with pytest.raises(Exception, match="session is closed"):
        chat.completion("again")
