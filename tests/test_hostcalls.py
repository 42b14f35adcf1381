"""Host calls from many sandbox threads: concurrent, bounded tree-wide, never deadlocked.

Real sandboxes (LocalSandbox for speed where isolation is not the point, Docker where
containers are counted) and the real openai client against the fake server.
"""

from __future__ import annotations

import threading
import time

import pytest

from rlm_sandbox import RLM, Limits
from rlm_sandbox.sandbox.protocol import MAX_PROMPTS_PER_REQUEST, MAX_SANDBOX_FRAME_BYTES

from .conftest import make_sandbox
from .fakes.fake_openai import FakeOpenAIServer, Reply
from .test_rlm import is_root, last_user_message, recursive_program, repl, turn_of

fake_openai = pytest.fixture(lambda: (yield from _server()))


def _server():
    with FakeOpenAIServer() as server:
        yield server


def make_rlm(server: FakeOpenAIServer, *, sandbox=False, **limits) -> RLM:
    return RLM(
        model="fake-root",
        sub_model="fake-sub",
        base_url=server.base_url,
        api_key="test-key",
        sandbox=sandbox,
        limits=Limits(**limits),
    )


def scripted(first_turn_code: str, *, sub_delay_s: float = 0.0):
    """Root runs `first_turn_code`, then answers with the first line it printed; sub echoes."""

    def respond(body: dict) -> Reply:
        if is_root(body):
            if turn_of(body) == 0:
                return Reply.text(repl(first_turn_code))
            return Reply.text("FINAL(" + last_user_message(body).splitlines()[1] + ")")
        return Reply(content="echo:" + last_user_message(body), delay_s=sub_delay_s)

    return respond


THREADED_40 = """
import threading
answers = {}
def ask(i):
    answers[i] = llm_query(f"q{i}")
threads = [threading.Thread(target=ask, args=(i,)) for i in range(40)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(answers[i] == f"echo:q{i}" for i in range(40)))
"""


@pytest.mark.parametrize("sandbox", [False, True], ids=["local", "docker"])
def test_threaded_llm_queries_run_max_concurrency_at_once(fake_openai, sandbox, request):
    if sandbox:
        request.getfixturevalue("sandbox_image")
    fake_openai.set_responder(scripted(THREADED_40, sub_delay_s=0.5))
    result = make_rlm(fake_openai, sandbox=sandbox, max_concurrency=4).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == "40", result  # every thread got the answer to its own prompt
    subs = [r for r in fake_openai.requests if not is_root(r.body)]
    assert len(subs) == 40
    assert fake_openai.peak_concurrency == 4, [(round(r.received_at, 3), round(r.finished_at or 0, 3)) for r in subs]


MIXED = """
import threading
bad = []
def work(i):
    got = llm_query_batched([f"b{i}-{j}" for j in range(5)])
    if got != [f"echo:b{i}-{j}" for j in range(5)]: bad.append(i)
    if llm_query(f"s{i}") != f"echo:s{i}": bad.append(i)
threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(len(bad))
"""


def test_threads_and_batches_share_one_bound(fake_openai):
    fake_openai.set_responder(scripted(MIXED, sub_delay_s=0.15))
    result = make_rlm(fake_openai, max_concurrency=3).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == "0"
    assert fake_openai.peak_concurrency == 3  # 36 calls, never more than 3 at once


def test_nested_batched_rlm_query_does_not_deadlock(fake_openai):
    """Depth 3, max_concurrency=2, rlm_query_batched at every level: parents waiting on
    children hold no slot, so the tree finishes."""
    fake_openai.set_responder(recursive_program(fan_out=2))
    done = threading.Event()
    outcome = {}

    def run():
        outcome["result"] = make_rlm(fake_openai, max_depth=3, max_concurrency=2, timeout_s=120).completion(
            "root context", "combine"
        )
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(120), "the tree deadlocked"
    result = outcome["result"]
    assert result.stop_reason == "final", result.error
    assert result.sandboxes_started == 7
    assert fake_openai.peak_concurrency <= 2


def _live_container_peak(docker_client, since: float) -> tuple[int, int]:
    """(peak live, created) counted from the daemon's create/destroy events of this process."""
    import os

    events = docker_client.api.events(
        since=since,
        until=time.time(),
        filters={"label": f"rlm-sandbox.owner-pid={os.getpid()}"},
        decode=True,
    )
    live = peak = created = 0
    for event in events:
        if event.get("Type") != "container":
            continue
        if event.get("Action") == "create":
            live += 1
            created += 1
            peak = max(peak, live)
        elif event.get("Action") == "destroy":
            live -= 1
    return peak, created


def test_live_containers_never_exceed_max_sandboxes(fake_openai, docker_client, sandbox_image):
    fake_openai.set_responder(recursive_program(fan_out=6))
    since = time.time() - 0.01
    result = make_rlm(fake_openai, sandbox=True, max_depth=2, max_sandboxes=3).completion("root", "combine")
    assert result.stop_reason == "final", result.error
    assert "[error" not in result.answer  # children waited for a slot rather than failing
    time.sleep(1.0)  # the last teardowns run in the background
    peak, created = _live_container_peak(docker_client, since)
    assert created == 7
    assert peak <= 3


def test_no_sandbox_can_ever_free_up_fails_fast_in_the_code(fake_openai):
    code = "try:\n    rlm_query('child task')\nexcept Exception as e:\n    print(type(e).__name__, str(e)[:300])"
    fake_openai.set_responder(scripted(code))
    result = make_rlm(fake_openai, max_depth=2, max_sandboxes=1, timeout_s=60).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert "max_sandboxes=1" in result.answer


# ------------------------------------------------------------------ a hostile sandbox

FLOOD = """
import gc, json, os, time
channel = next(o for o in gc.get_objects() if type(o).__name__ == 'Channel')
bridge = next(o for o in gc.get_objects() if type(o).__name__ == 'LLMBridge')
for i in range(10_000):
    body = json.dumps({'type': 'llm_request', 'id': 1_000_000 + i, 'exec_id': bridge.exec_id, 'prompts': ['flood']}).encode()
    channel.send_body(body)
time.sleep(1.0)
print('flooded')
"""

# 10,000 real threaded calls, 100 threads at a time (a container allows 128 pids).
THREADED_FLOOD = """
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(100) as pool:
    answers = list(pool.map(llm_query, ['t'] * 10_000))
print(sum(a == 'ok' for a in answers))
"""


@pytest.mark.parametrize("sandbox_kind", ["local", "runc"], indirect=True)
def test_request_flood_keeps_host_threads_bounded(sandbox_kind):
    calls = []
    peak_threads = [threading.active_count()]
    stop = threading.Event()

    def handler(prompts, model):
        calls.append(prompts[0])
        if prompts[0] == "flood":
            time.sleep(0.005)
        return ["ok"] * len(prompts)

    def sample():
        while not stop.is_set():
            peak_threads[0] = max(peak_threads[0], threading.active_count())
            time.sleep(0.005)

    baseline = threading.active_count()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with make_sandbox(sandbox_kind, llm_handler=handler) as sandbox:
            sandbox.host_call_workers = 4
            result = sandbox.execute(FLOOD, timeout_s=120)
            assert result.error is None, result.error
            assert result.stdout.strip() == "flooded"
            # The sandbox still works, and its own calls are answered.
            assert sandbox.execute("print(llm_query('hi'))").stdout.strip() == "ok"
            threaded = sandbox.execute(THREADED_FLOOD, timeout_s=300)
            assert threaded.stdout.strip() == "10000", threaded
    finally:
        stop.set()
        sampler.join()
    # 4 workers, the sampler, and the transport's own threads (docker's removal): never 10,000.
    assert peak_threads[0] <= baseline + 4 + 4
    assert calls.count("flood") < 10_000  # past the queue's cap, requests were refused, not run
    assert calls.count("t") == 10_000


def test_exec_timeout_excludes_host_call_time_but_still_bites():
    def slow(prompts, model):
        time.sleep(1.5)
        return ["ok"] * len(prompts)

    with make_sandbox("local", llm_handler=slow) as sandbox:
        code = (
            "import threading\nout = []\n"
            "ts = [threading.Thread(target=lambda: out.append(llm_query('x'))) for _ in range(3)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\nprint(len(out))"
        )
        result = sandbox.execute(code, timeout_s=1.0)
        assert not result.timed_out and result.stdout.strip() == "3"
        spin = sandbox.execute("while True: pass", timeout_s=1.0)
        assert spin.timed_out


def test_oversized_batch_is_refused_inside_the_sandbox():
    calls = []

    def handler(prompts, model):
        calls.append(len(prompts))
        return ["ok"] * len(prompts)

    with make_sandbox("local", llm_handler=handler) as sandbox:
        too_many = sandbox.execute(
            f"try:\n    llm_query_batched(['x'] * {MAX_PROMPTS_PER_REQUEST + 1})\n"
            "except RequestTooLargeError as e:\n    print('refused:', e)"
        )
        assert too_many.stdout.startswith("refused:"), too_many
        too_big = sandbox.execute(
            f"try:\n    llm_query('x' * {MAX_SANDBOX_FRAME_BYTES + 1})\n"
            "except LLMQueryError as e:\n    print('refused:', type(e).__name__)"
        )
        assert too_big.stdout.strip() == "refused: RequestTooLargeError"
        assert not too_many.restarted and not too_big.restarted and sandbox.restarts == 0
        assert calls == []


def test_server_caps_match_the_host():
    from rlm_sandbox.sandbox import protocol
    from sandbox_image import repl_server

    assert repl_server.MAX_FRAME_BYTES == protocol.MAX_SANDBOX_FRAME_BYTES
    assert repl_server.MAX_PROMPTS_PER_REQUEST == protocol.MAX_PROMPTS_PER_REQUEST
    assert repl_server.MAX_IMAGES_PER_PROMPT == protocol.MAX_IMAGES_PER_PROMPT


def test_answers_finish_out_of_order_and_still_reach_their_callers():
    finished: list[str] = []

    def handler(prompts, model):
        index = int(prompts[0])
        time.sleep((9 - index) * 0.05)  # the first asked finishes last
        finished.append(prompts[0])
        return [f"answer {index}"]

    code = (
        "import threading, time\ngot = {}\n"
        "def ask(i):\n    got[i] = llm_query(str(i))\n"
        "ts = []\nfor i in range(10):\n"
        "    t = threading.Thread(target=ask, args=(i,)); t.start(); ts.append(t); time.sleep(0.01)\n"
        "[t.join() for t in ts]\nprint(all(got[i] == f'answer {i}' for i in range(10)))"
    )
    with make_sandbox("local", llm_handler=handler) as sandbox:
        sandbox.host_call_workers = 10
        result = sandbox.execute(code, timeout_s=30)
    assert result.stdout.strip() == "True", result
    assert finished[0] == "9" and finished[-1] == "0"


def test_attach_transport_send_and_receive_from_two_threads():
    """Answers are sent from worker threads while the exec loop receives: neither may
    change the other's timeout, and a dead peer is an OSError, never anything else."""
    import socket
    import struct

    from rlm_sandbox.sandbox.transport import AttachSocketTransport

    ours, theirs = socket.socketpair()
    transport = AttachSocketTransport(ours)
    assert transport.receive(0.05) is None  # nothing yet: a timeout, not an error
    sent = threading.Thread(target=lambda: [transport.send(b"x" * 65536, timeout=5) for _ in range(32)])
    sent.start()
    received = 0
    while received < 32 * 65536:
        received += len(theirs.recv(1 << 20))
    sent.join()
    theirs.sendall(struct.pack(">BxxxI", 1, 5) + b"hello")
    assert transport.receive(1.0) == b"hello"
    theirs.close()
    assert transport.receive(1.0) == b""
    with pytest.raises(OSError):
        for _ in range(100):
            transport.send(b"y" * 65536, timeout=1)
    transport.close()
