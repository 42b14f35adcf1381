"""The RLM loop end to end: real openai client -> fake HTTP server; real sandboxes."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable

import pytest

from rlm_sandbox import RLM, Limits
from rlm_sandbox.errors import MissingAPIKeyError
from rlm_sandbox.evals.niah import NIAH_QUERY, make_haystack
from rlm_sandbox.lm import Price
from rlm_sandbox.providers import PROVIDERS, client_for
from rlm_sandbox.scripted import ScriptedDemoModel
from rlm_sandbox.trajectory import read_trajectory

from .fakes.fake_openai import FakeOpenAIServer, Reply

fake_openai = pytest.fixture(lambda: (yield from _server()))


def _server():
    with FakeOpenAIServer() as server:
        yield server


def repl(code: str) -> str:
    return f"Running some code.\n```repl\n{code}\n```"


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def turn_of(body: dict) -> int:
    return sum(1 for m in body["messages"] if m.get("role") == "assistant")


def program(root: Callable[[dict], str], sub: Callable[[dict], str] = lambda body: "sub-answer"):
    """A responder: `root` writes the RLM node's turns, `sub` answers plain llm_query prompts."""

    def respond(body: dict) -> Reply:
        return Reply.text(root(body) if is_root(body) else sub(body))

    return respond


def make_rlm(server: FakeOpenAIServer, *, sandbox=False, provider: str = "openai", **limits) -> RLM:
    prefix = "openai/" if provider == "litellm" else ""  # LiteLLM's route to an OpenAI-compatible server
    return RLM(
        model=f"{prefix}fake-root",
        sub_model=f"{prefix}fake-sub",
        base_url=server.base_url,
        api_key="test-key",
        sandbox=sandbox,
        limits=Limits(**limits),
        provider=provider,
    )


@pytest.fixture(params=PROVIDERS)
def provider(request) -> str:
    """For behaviour every client must share: each provider's client runs the test."""
    if request.param == "litellm" and importlib.util.find_spec("litellm") is None:
        # Not importorskip: importing litellm outside rlm_sandbox's loader would fetch its cost map.
        pytest.skip("litellm is not installed (pip install 'rlm-sandbox[litellm]')")
    return request.param


def last_user_message(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


# ------------------------------------------------------------------ the demo path


def test_niah_million_lines_in_docker_through_the_real_client(fake_openai, sandbox_image):
    haystack = make_haystack(1_000_000, seed=7)
    demo = ScriptedDemoModel()
    fake_openai.set_responder(lambda body: Reply.text(demo.complete(body["messages"]).text))
    rlm = make_rlm(fake_openai, sandbox=True)
    result = rlm.completion(haystack.text, NIAH_QUERY)
    assert result.stop_reason == "final", result.error
    assert result.answer == haystack.magic_number
    # 3 root turns and one llm_query, all through HTTP and counted with the server's usage.
    assert fake_openai.request_count == 4
    assert result.usage.total.calls == 4
    assert set(result.usage.models) == {"fake-root", "fake-sub"}
    assert result.usage.models["fake-sub"].calls == 1
    assert result.sandboxes_started == 1
    # The prompt describes the context but never carries it.
    assert all(len(str(r.body)) < 100_000 for r in fake_openai.requests)


# ------------------------------------------------------------------ recursion


def containers_created_since(client, since: float) -> int:
    events = client.api.events(
        since=since,
        until=time.time(),
        filters={"event": "create", "label": f"rlm-sandbox.owner-pid={os.getpid()}"},
        decode=True,
    )
    return sum(1 for _ in events)


def recursive_program(fan_out: int):
    """Root and every child call rlm_query_batched on `fan_out` prompts, then finish."""

    def root(body: dict) -> str:
        if turn_of(body) == 0:
            return repl(f"answers = rlm_query_batched(['part ' + str(i) for i in range({fan_out})])\nprint(answers)")
        return "FINAL(" + last_user_message(body).splitlines()[1][:200].replace("(", "[").replace(")", "]") + ")"

    return program(root, sub=lambda body: "leaf")


@pytest.mark.parametrize("max_depth, expected_containers", [(1, 1), (2, 3), (3, 7)])
def test_depth_trees_start_one_container_per_node(fake_openai, docker_client, max_depth, expected_containers):
    fake_openai.set_responder(recursive_program(fan_out=2))
    rlm = make_rlm(fake_openai, sandbox=True, max_depth=max_depth)
    since = time.time() - 0.01
    result = rlm.completion("root context", "combine the parts")
    assert result.stop_reason == "final", result.error
    assert result.sandboxes_started == expected_containers
    assert containers_created_since(docker_client, since) == expected_containers
    # At the last level rlm_query is a plain call: the leaves are answered by the sub model.
    leaf_calls = [r for r in fake_openai.requests if not is_root(r.body)]
    assert len(leaf_calls) == 2**max_depth
    assert all(r.model == "fake-sub" for r in leaf_calls)


def test_depth_is_tracked_on_the_host(fake_openai):
    """Code cannot ask for a child beyond max_depth: the host decides, not the frame."""
    fake_openai.set_responder(recursive_program(fan_out=1))
    result = make_rlm(fake_openai, max_depth=2).completion("ctx", "q")
    assert result.sandboxes_started == 2


# ------------------------------------------------------------------ limits


def looping_root(body: dict) -> str:
    return repl("x = llm_query_batched(['a', 'b'])\nprint(x)")


def test_max_llm_calls_stops_with_budget(fake_openai, provider):
    fake_openai.set_responder(program(looping_root))
    result = make_rlm(fake_openai, provider=provider, max_llm_calls=7).completion("ctx", "q")
    assert result.stop_reason == "budget"
    assert "max_llm_calls=7" in result.error
    assert fake_openai.request_count <= 7
    assert result.usage.total.calls == fake_openai.request_count


def test_max_tokens_stops_with_budget(fake_openai, provider):
    fake_openai.set_responder(lambda body: Reply.text(looping_root(body), prompt_tokens=400, completion_tokens=100))
    result = make_rlm(fake_openai, provider=provider, max_tokens=2500).completion("ctx", "q")
    assert result.stop_reason == "budget" and "max_tokens=2500" in result.error
    # A hard cap: a call is only sent when its worst case fits in what is left.
    assert result.usage.total.calls >= 1
    assert result.usage.total.input_tokens + result.usage.total.output_tokens <= 2500


def test_max_cost_stops_with_budget(fake_openai, provider):
    fake_openai.set_responder(lambda body: Reply.text(looping_root(body), prompt_tokens=1000, completion_tokens=1000))
    prices = {
        "fake-root": Price(input_per_mtok=1000, output_per_mtok=1000),
        "fake-sub": Price(input_per_mtok=1000, output_per_mtok=1000),
    }
    root, sub = ("openai/fake-root", "openai/fake-sub") if provider == "litellm" else ("fake-root", "fake-sub")
    client = client_for(provider, root, base_url=fake_openai.base_url, api_key="k", prices=prices)
    rlm = RLM(model=root, sub_model=sub, sandbox=False, client=client, limits=Limits(max_cost_usd=5.0))
    result = rlm.completion("ctx", "q")
    assert result.stop_reason == "budget" and "max_cost_usd" in result.error
    # $2 a call, except that a call reserved after the others finished goes out with its
    # reply cut to what is left (whether the batched sub-calls overlap is the scheduler's).
    total, calls = result.usage.total.cost_usd, result.usage.total.calls
    assert 2.0 * (calls - 1) < total <= 2.0 * calls + 1e-9


def test_timeout_stops_the_whole_tree_with_partial_answer(fake_openai, sandbox_image):
    def root(body):
        return "I think it is 42, checking.\n" + repl("import time\ntime.sleep(30)")

    fake_openai.set_responder(program(root))
    started = time.monotonic()
    result = make_rlm(fake_openai, sandbox=True, timeout_s=3).completion("ctx", "q")
    assert result.stop_reason == "timeout"
    assert time.monotonic() - started < 15
    assert result.answer and "42" in result.answer, "the best partial answer is kept"


def test_exec_timeout_is_reported_to_the_model_and_the_run_goes_on(fake_openai):
    def root(body):
        if turn_of(body) == 0:
            return repl("while True:\n    pass")
        assert "TimeoutError" in last_user_message(body)
        return "FINAL(recovered)"

    fake_openai.set_responder(program(root))
    result = make_rlm(fake_openai, exec_timeout_s=1).completion("ctx", "q")
    assert (result.stop_reason, result.answer) == ("final", "recovered")


def test_llm_timeout_is_enforced(fake_openai, provider):
    fake_openai.set_responder(lambda body: Reply(content="late", delay_s=10))
    rlm = make_rlm(fake_openai, provider=provider, llm_timeout_s=1)
    started = time.monotonic()
    result = rlm.completion("ctx", "q")
    assert result.stop_reason == "error" and result.answer is None
    assert time.monotonic() - started < 30


def test_concurrent_batch_cannot_overshoot_max_llm_calls(fake_openai):
    def root(body):
        if turn_of(body) == 0:
            return repl(
                "answers = llm_query_batched([str(i) for i in range(50)])\nprint(sum(a.startswith('[error') for a in answers))"
            )
        return "FINAL(done)"

    fake_openai.set_responder(program(root, sub=lambda body: (time.sleep(0.05), "x")[1]))
    result = make_rlm(fake_openai, max_llm_calls=10, max_concurrency=50).completion("ctx", "q")
    assert fake_openai.request_count <= 10
    assert result.usage.total.calls <= 10
    assert result.stop_reason == "budget"


# ------------------------------------------------------------------ batching


def test_batched_calls_run_concurrently(fake_openai):
    def root(body):
        if turn_of(body) == 0:
            return repl(
                "import time\nt = time.time()\nout = llm_query_batched([str(i) for i in range(16)])\nprint(round(time.time() - t, 2))"
            )
        return "FINAL(" + last_user_message(body).splitlines()[1] + ")"

    fake_openai.set_responder(lambda body: Reply.text(root(body)) if is_root(body) else Reply(content="x", delay_s=0.5))
    result = make_rlm(fake_openai, max_concurrency=8).completion("ctx", "q")
    assert result.stop_reason == "final"
    assert float(result.answer) < 2.5, f"16 x 0.5 s with 8 workers took {result.answer} s"
    assert fake_openai.peak_concurrency >= 8


def test_one_failed_prompt_does_not_fail_the_batch(fake_openai):
    def sub(body):
        return Reply.error(400, message="bad prompt") if last_user_message(body) == "bad" else Reply.text("good")

    def root(body):
        if turn_of(body) == 0:
            return repl("print(llm_query_batched(['ok', 'bad', 'ok']))")
        return "FINAL(" + last_user_message(body).splitlines()[1].replace("(", "").replace(")", "") + ")"

    fake_openai.set_responder(lambda body: Reply.text(root(body)) if is_root(body) else sub(body))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert "'good'" in result.answer and "[error: LMError" in result.answer


# ------------------------------------------------------------------ final answers and garbage


def test_final_with_parentheses_outside_code(fake_openai):
    fake_openai.set_responder(program(lambda body: "Done.\nFINAL(f(x) = (a + b) * c)"))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert result.answer == "f(x) = (a + b) * c"
    assert result.iterations == 1


def test_final_inside_a_code_block_is_not_an_answer(fake_openai):
    def root(body):
        if turn_of(body) == 0:
            return "```repl\nprint('FINAL(wrong)')\n```\n```text\nFINAL(also wrong)\n```"
        return "FINAL(right)"

    fake_openai.set_responder(program(root))
    assert make_rlm(fake_openai).completion("ctx", "q").answer == "right"


def test_final_var_of_missing_name_tells_the_model(fake_openai):
    def root(body):
        turn = turn_of(body)
        if turn == 0:
            return "FINAL_VAR(result)"
        if turn == 1:
            assert "did not work" in last_user_message(body)
            return repl("result = 'computed'")
        return "FINAL_VAR(result)"

    fake_openai.set_responder(program(root))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert (result.answer, result.iterations) == ("computed", 3)


def test_final_in_repl_ends_the_run(fake_openai):
    fake_openai.set_responder(program(lambda body: repl("FINAL(len(context))")))
    assert make_rlm(fake_openai).completion("x" * 1234, "q").answer == "1234"


def test_reply_without_code_is_nudged(fake_openai):
    def root(body):
        if turn_of(body) == 0:
            return "Let me think about it."
        assert "no ```repl code block" in last_user_message(body)
        return "FINAL(after nudge)"

    fake_openai.set_responder(program(root))
    assert make_rlm(fake_openai).completion("ctx", "q").answer == "after nudge"


def test_garbage_every_turn_ends_at_max_iterations(fake_openai):
    fake_openai.set_responder(program(lambda body: "\x00 ``` )))((( FINAL_VAR( ```repl"))
    result = make_rlm(fake_openai, max_iterations=4).completion("ctx", "q")
    assert result.stop_reason == "max_iterations"
    assert result.iterations == 4
    root_calls = [r for r in fake_openai.requests if is_root(r.body)]
    assert len(root_calls) == 5, "four turns and one request for a final answer"
    assert "used all your turns" in last_user_message(root_calls[-1].body)


def test_retries_on_429_and_500(fake_openai):
    fake_openai.push(Reply.error(429, retry_after=0.01), Reply.error(500))
    fake_openai.set_responder(program(lambda body: "FINAL(made it)"))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert result.answer == "made it"
    assert fake_openai.request_count == 3


def test_failing_api_ends_with_error_not_exception(fake_openai):
    fake_openai.set_responder(lambda body: Reply.error(500))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert result.stop_reason == "error" and "LMError" in result.error


def test_missing_api_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        RLM(model="gpt-5-mini")


# ------------------------------------------------------------------ trajectory


def test_trajectory_log_has_one_event_per_step(fake_openai, tmp_path):
    def root(body):
        if turn_of(body) == 0:
            return repl("x = llm_query('hi')")
        return "FINAL_VAR(x)"

    fake_openai.set_responder(program(root))
    rlm = RLM(model="fake-root", base_url=fake_openai.base_url, api_key="k", sandbox=False, log_dir=tmp_path)
    result = rlm.completion("ctx", "what?")
    events = read_trajectory(result.trajectory_path)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "metadata" and kinds[-1] == "result"
    assert kinds.count("model_call") == 2 and kinds.count("exec") >= 1 and kinds.count("sub_call") == 1
    assert all("node" in e and "depth" in e for e in events if e["type"] in ("model_call", "exec", "sub_call"))
    # No event repeats the system prompt: the history is not re-logged on every line.
    assert sum("## The data" in str(e) for e in events) == 0


def test_no_threads_left_after_completion(fake_openai):
    fake_openai.set_responder(program(lambda body: repl("llm_query_batched(['a'] * 8)\nFINAL('ok')")))
    before = threading.active_count()
    make_rlm(fake_openai).completion("ctx", "q")
    time.sleep(0.2)
    assert threading.active_count() <= before
