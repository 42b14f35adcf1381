"""The loop against what real models and servers do (issue #9), through the real openai
SDK and the fake HTTP server: output caps, context windows and their errors, reasoning,
cut, empty and refused replies, token details, and the hard budget."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from rlm_sandbox import RLM, Limits
from rlm_sandbox.errors import BudgetExceededError, ContextWindowExceededError
from rlm_sandbox.history import Conversation
from rlm_sandbox.limits import Budget
from rlm_sandbox.lm import (
    OpenAIClient,
    Price,
    _default_cap_param,
    complete_within_budget,
)
from rlm_sandbox.tokens import estimate_messages_tokens, estimate_tokens
from rlm_sandbox.trajectory import read_trajectory

from .fakes.fake_openai import WINDOW_ERRORS, FakeOpenAIServer, Reply
from .fakes.fake_openai import estimate_tokens as server_tokens

MESSAGES = [{"role": "user", "content": "hello " * 50}]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_openai():
    with FakeOpenAIServer() as server:
        yield server


def client_for(server: FakeOpenAIServer, model: str = "fake-root", **kwargs) -> OpenAIClient:
    return OpenAIClient(model, base_url=server.base_url, api_key="k", **kwargs)


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def turn_of(body: dict) -> int:
    return sum(1 for m in body["messages"] if m.get("role") == "assistant")


def last_user(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def repl(code: str) -> str:
    return f"Running some code.\n```repl\n{code}\n```"


def make_rlm(server: FakeOpenAIServer, tmp_path: Path, **limits) -> RLM:
    return RLM(
        model="fake-root",
        base_url=server.base_url,
        api_key="k",
        sandbox=False,
        limits=Limits(**limits),
        log_dir=tmp_path,
    )


def events_of(result, kind: str) -> list[dict]:
    return [e for e in read_trajectory(result.trajectory_path) if e["type"] == kind]


# ------------------------------------------------------------------ token estimates


@pytest.mark.parametrize(
    "text",
    [
        "plain English prose about a needle in a haystack. " * 40,
        "x = [i**2 for i in range(10)]\nprint(x)\n" * 30,
        "0123456789 " * 100,
        "数据分析和语言模型 " * 50,
        "emoji 🎉🚀 and accents éèà " * 30,
    ],
)
def test_the_estimate_errs_high_against_a_4_chars_per_token_count(text: str) -> None:
    assert estimate_tokens(text) >= server_tokens(text)
    assert estimate_messages_tokens([{"role": "user", "content": text}]) > estimate_tokens(text)


# ------------------------------------------------------------------ output caps


def test_cap_field_is_chosen_by_endpoint() -> None:
    assert _default_cap_param(None) == "max_completion_tokens"
    assert _default_cap_param("https://api.openai.com/v1") == "max_completion_tokens"
    assert _default_cap_param("http://127.0.0.1:8000/v1") == "max_tokens"


def test_cap_is_sent_and_obeyed(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(Reply.text("word " * 400))
    response = client_for(fake_openai).complete(MESSAGES, max_output_tokens=50)
    (request,) = fake_openai.requests
    assert request.body["max_tokens"] == 50 and "max_completion_tokens" not in request.body
    assert response.finish_reason == "length" and response.output_tokens == 50


def test_a_rejected_cap_field_is_switched_once_and_remembered() -> None:
    with FakeOpenAIServer(cap_params=["max_completion_tokens"]) as server:
        client = client_for(server)
        assert client.complete(MESSAGES, max_output_tokens=100).text == "ok"
        assert client.complete(MESSAGES, max_output_tokens=100).text == "ok"
        sent = [("max_tokens" in r.body, "max_completion_tokens" in r.body) for r in server.requests]
        assert sent == [(True, False), (False, True), (False, True)]
        assert client.cap_param == "max_completion_tokens"


def test_root_and_sub_calls_carry_the_cap(fake_openai: FakeOpenAIServer, tmp_path: Path) -> None:
    def respond(body: dict) -> Reply:
        if not is_root(body):
            return Reply.text("sub")
        return Reply.text(repl("x = llm_query('hi')") if turn_of(body) == 0 else "FINAL_VAR(x)")

    fake_openai.set_responder(respond)
    result = make_rlm(fake_openai, tmp_path, max_output_tokens=333).completion("ctx", "q")
    assert result.stop_reason == "final" and result.answer == "sub"
    assert [r.body["max_tokens"] for r in fake_openai.requests] == [333, 333, 333]


@pytest.mark.parametrize(
    "flag, expected", [(["--max-output-tokens", "77"], 77), ([], 8192), (["--max-output-tokens", "0"], None)]
)
def test_cli_flag_sets_the_cap(fake_openai: FakeOpenAIServer, flag: list[str], expected: int | None) -> None:
    from rlm_sandbox.cli import _rlm_settings, build_parser

    argv = ["run", "--context", "c.txt", "--query", "q", "--base-url", fake_openai.base_url, *flag]
    limits, *_ = _rlm_settings(build_parser().parse_args(argv))
    assert limits.max_output_tokens == expected


# ------------------------------------------------------------------ context windows


@pytest.mark.parametrize("kind", WINDOW_ERRORS)
def test_each_servers_context_error_is_recognised(kind: str) -> None:
    with FakeOpenAIServer(context_window=100, window_error=kind) as server:  # type: ignore[arg-type]
        client = client_for(server)
        with pytest.raises(ContextWindowExceededError) as caught:
            client.complete([{"role": "user", "content": "z" * 2000}])
        assert caught.value.window == 100
        assert client.context_window() == 100  # learned from the error
        assert server.request_count == 1  # a client error: not retried


@pytest.mark.parametrize(
    "models, expected",
    [
        ({"object": "list", "data": [{"id": "fake-root", "object": "model", "max_model_len": 4096}]}, 4096),  # vLLM
        (
            {"models": [], "data": [{"id": "x.gguf", "object": "model", "meta": {"n_ctx_train": 8192}}]},
            8192,
        ),  # llama.cpp
        (
            {"object": "list", "data": [{"id": "fake-root", "object": "model", "owned_by": "me"}]},
            None,
        ),  # llama-cpp-python
        ({"data": [{"id": "other", "max_model_len": 1}, {"id": "another", "max_model_len": 2}]}, None),
        (None, None),  # no /v1/models at all
    ],
)
def test_window_is_learned_from_v1_models(models, expected) -> None:
    with FakeOpenAIServer(models=models) as server:
        assert client_for(server).context_window() == expected


def test_hosted_models_window_comes_from_the_maintained_data() -> None:
    assert OpenAIClient("gpt-5-mini", api_key="sk-test").context_window() == 400_000


def test_a_prompt_that_cannot_fit_is_refused_without_a_call(fake_openai: FakeOpenAIServer) -> None:
    budget = Budget()
    with pytest.raises(ContextWindowExceededError, match=r"about [\d,]+ tokens.*window is 1,000 tokens"):
        complete_within_budget(
            client_for(fake_openai), budget, [{"role": "user", "content": "q" * 5000}], context_window=1000
        )
    assert fake_openai.request_count == 0 and budget.usage().total.calls == 0 and budget.calls_reserved == 0


def test_the_cap_is_cut_to_the_room_left_in_the_window(fake_openai: FakeOpenAIServer) -> None:
    messages = [{"role": "user", "content": "q" * 1500}]
    complete_within_budget(client_for(fake_openai), Budget(), messages, max_output_tokens=8192, context_window=1000)
    sent = fake_openai.requests[0].body["max_tokens"]
    assert sent == 1000 - estimate_messages_tokens(messages)
    assert server_tokens("q" * 1500) + sent <= 1000


def chatty_root():
    """A root model that prints a lot for 6 turns, then answers from a variable.

    It counts its own turns: after a compaction the history no longer shows them all.
    """
    turns = iter(range(1000))

    def respond(body: dict) -> Reply:
        turn = next(turns)
        if turn < 6:
            return Reply.text(f"Step {turn}: looking.\n" + repl(f"v{turn} = {turn}\nprint('line of output ' * 120)"))
        return Reply.text("FINAL_VAR(v5)")

    return respond


def test_history_is_compacted_to_fit_a_known_window(tmp_path: Path) -> None:
    with FakeOpenAIServer(chatty_root(), context_window=3000) as server:
        result = make_rlm(server, tmp_path, context_window=3000, max_iterations=10).completion("ctx", "q")
        assert result.stop_reason == "final" and result.answer == "5"
        assert all("max_tokens" in r.body for r in server.requests)
        assert all(r.reply.status == 200 for r in server.requests), "no request may overflow the window"
        assert all(server_tokens(str(r.body["messages"])) + r.body["max_tokens"] <= 3000 * 1.2 for r in server.requests)
        compactions = events_of(result, "compaction")
        assert compactions and all(c["reason"] == "window" for c in compactions)
        last = server.requests[-1].body["messages"]
        assert last[0]["role"] == "system" and last[1]["content"].startswith("Question: q")
        assert "Record of earlier turns" in last[1]["content"]
        assert "ran code `v3 = 3 ; print(" in last[1]["content"]
        assert "still in the Python session" in last[-1]["content"]


@pytest.mark.parametrize("kind", WINDOW_ERRORS)
def test_unknown_window_is_learned_from_the_servers_error_and_the_run_goes_on(kind: str, tmp_path: Path) -> None:
    with FakeOpenAIServer(chatty_root(), context_window=3000, window_error=kind) as server:  # type: ignore[arg-type]
        result = make_rlm(server, tmp_path, max_iterations=10, max_output_tokens=500).completion("ctx", "q")
        assert result.stop_reason == "final", result.error
        assert result.answer == "5"
        rejected = [r for r in server.requests if r.reply.status == 400]
        assert rejected, "the window was unknown, so the server had to say it"
        compactions = events_of(result, "compaction")
        assert compactions[0]["reason"] == "server_error"
        assert compactions[0]["window"] == 3000  # every one of these bodies names the window
        # Once learned, the window is respected: at most one rejection per turn, never two in a row.
        statuses = [r.reply.status for r in server.requests]
        assert all(not (a == b == 400) for a, b in itertools.pairwise(statuses))


def test_an_llm_query_prompt_too_big_for_the_window_raises_in_the_sandbox(
    fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    def respond(body: dict) -> Reply:
        if turn_of(body) == 0:
            return Reply.text(
                repl("try:\n    llm_query('w ' * 20000)\nexcept Exception as e:\n    print('REFUSED', e)")
            )
        assert "REFUSED" in last_user(body) and "context window is 4,000 tokens" in last_user(body)
        return Reply.text("FINAL(done)")

    fake_openai.set_responder(respond)
    result = make_rlm(fake_openai, tmp_path, context_window=4000).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert all(is_root(r.body) for r in fake_openai.requests), "no sub-call was sent"
    assert result.usage.total.calls == 2


def test_conversation_keeps_system_task_and_latest_turn() -> None:
    conversation = Conversation("system " * 200, "Question: q", window=1500, max_output_tokens=8192)
    for turn in range(10):
        conversation.add_reply(repl(f"a{turn} = {turn}"))
        conversation.add_user("output " * 150)
        messages, cap, _ = conversation.prepare()
        assert estimate_messages_tokens(messages) + cap <= 1500
        assert cap >= 256
    assert messages[0]["content"].startswith("system") and messages[1]["content"].startswith("Question: q")
    assert "a9 = 9" in messages[-2]["content"]
    assert conversation.compactions


# ------------------------------------------------------------------ replies as real models write them


def test_reasoning_and_think_blocks_are_never_searched_for_final(fake_openai: FakeOpenAIServer, tmp_path: Path) -> None:
    def respond(body: dict) -> Reply:
        turn = turn_of(body)
        if turn == 0:
            return Reply(
                content="<think>I could just say FINAL(decoy one)\n```repl\nx = 'decoy'\n```</think>\n"
                + repl("x = 'real'"),
                reasoning="FINAL(decoy two)",
                reasoning_tokens=40,
                completion_tokens=100,
            )
        if turn == 1:
            return Reply(
                content="FINAL(decoy three)</think>\nFINAL_VAR(x)",
                reasoning="FINAL(decoy four)",
                reasoning_field="reasoning",
            )
        return Reply.text("FINAL(too late)")

    fake_openai.set_responder(respond)
    result = make_rlm(fake_openai, tmp_path).completion("ctx", "q")
    assert (result.stop_reason, result.answer) == ("final", "real")
    calls = events_of(result, "model_call")
    assert "decoy two" in calls[0]["reasoning"] and "decoy one" in calls[0]["reasoning"]
    assert "decoy four" in calls[1]["reasoning"]
    assert result.usage.total.reasoning_tokens == 40
    # Reasoning is not sent back to the model.
    assert "decoy" not in str(fake_openai.requests[-1].body["messages"])


def test_a_reply_cut_mid_block_does_not_run_and_the_model_is_told(
    fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    def respond(body: dict) -> Reply:
        if turn_of(body) == 0:
            # Whole statements first, then the cut: the old parser ran them.
            code = f"open({str(marker)!r}, 'w').write('x')\n" + "y = 1\n" * 400
            return Reply.text(repl(code))
        assert "cut off at the output limit of 200 tokens" in last_user(body)
        assert "was not run" in last_user(body)
        return Reply.text("FINAL(ok)")

    fake_openai.set_responder(respond)
    result = make_rlm(fake_openai, tmp_path, max_output_tokens=200).completion("ctx", "q")
    assert (result.stop_reason, result.answer) == ("final", "ok")
    assert not marker.exists()
    assert events_of(result, "model_call")[0]["finish_reason"] == "length"
    assert not events_of(result, "exec")


@pytest.mark.parametrize(
    "odd, told",
    [
        (Reply(content=""), "was empty"),
        (Reply(content=None, refusal="I cannot help with that."), "was a refusal"),
        (Reply(content=None, tool_calls=2), "only made tool calls"),
        (Reply(content="", reasoning="hmm"), "reasoning but no visible text"),
    ],
)
def test_empty_refused_and_tool_call_replies_are_told_and_the_run_goes_on(
    fake_openai: FakeOpenAIServer, tmp_path: Path, odd: Reply, told: str
) -> None:
    def respond(body: dict) -> Reply:
        if turn_of(body) == 0:
            return odd
        assert told in last_user(body)
        return Reply.text("FINAL(recovered)")

    fake_openai.set_responder(respond)
    result = make_rlm(fake_openai, tmp_path).completion("ctx", "q")
    assert (result.stop_reason, result.answer) == ("final", "recovered"), result.error


def test_cached_and_reasoning_tokens_are_counted_and_priced(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(
        Reply(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=600_000, reasoning_tokens=250_000)
    )
    prices = {"fake-root": Price(input_per_mtok=1.0, output_per_mtok=4.0, cached_input_per_mtok=0.1)}
    budget = Budget()
    response = complete_within_budget(client_for(fake_openai, prices=prices), budget, MESSAGES)
    assert (response.cached_input_tokens, response.reasoning_tokens) == (600_000, 250_000)
    assert response.cost_usd == pytest.approx(0.4 * 1.0 + 0.6 * 0.1 + 4.0)
    total = budget.usage().total
    assert (total.cached_input_tokens, total.reasoning_tokens) == (600_000, 250_000)


def test_maintained_prices_charge_cached_input_less(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(
        Reply(prompt_tokens=1_000_000, completion_tokens=0),
        Reply(prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=1_000_000),
    )
    client = client_for(fake_openai, model="gpt-4o-mini")
    full, cached = client.complete(MESSAGES), client.complete(MESSAGES)
    assert full.cost_usd == pytest.approx(0.15)
    assert 0 < cached.cost_usd < full.cost_usd


def test_metadata_records_the_price_source(fake_openai: FakeOpenAIServer, tmp_path: Path) -> None:
    fake_openai.set_responder(lambda body: Reply.text("FINAL(x)"))
    result = make_rlm(fake_openai, tmp_path).completion("ctx", "q")
    (metadata,) = events_of(result, "metadata")
    assert metadata["prices"]["source"] == "genai-prices" and metadata["prices"]["version"]
    assert metadata["limits"]["max_output_tokens"] == 8192


# ------------------------------------------------------------------ the hard budget


def test_sixteen_concurrent_large_sub_calls_cannot_pass_max_cost(fake_openai: FakeOpenAIServer, tmp_path: Path) -> None:
    # Each sub-call costs about $0.005 (a 5k-char prompt and a 2,000-token reply at $1/$2
    # per million); 16 at once would be ~$0.08 against a $0.02 cap.
    def respond(body: dict) -> Reply:
        if is_root(body):
            if turn_of(body) == 0:
                return Reply.text(
                    repl(
                        "answers = llm_query_batched(['data ' * 1000 + str(i) for i in range(16)])\n"
                        "print(sum(a.startswith('[error') for a in answers), 'refused')"
                    )
                )
            return Reply.text("FINAL(done)")
        return Reply.text("long answer " * 2000, delay_s=0.2)  # the server stops it at the cap

    fake_openai.set_responder(respond)
    prices = {
        "fake-root": Price(input_per_mtok=1.0, output_per_mtok=2.0),
        "fake-sub": Price(input_per_mtok=1.0, output_per_mtok=2.0),
    }
    client = OpenAIClient("fake-root", base_url=fake_openai.base_url, api_key="k", prices=prices)
    rlm = RLM(
        model="fake-root",
        sub_model="fake-sub",
        client=client,
        sandbox=False,
        log_dir=tmp_path,
        limits=Limits(max_cost_usd=0.02, max_output_tokens=2000, max_concurrency=16),
    )
    result = rlm.completion("ctx", "q")
    assert result.usage.total.cost_usd <= 0.02
    subs = [r for r in fake_openai.requests if not is_root(r.body)]
    assert 0 < len(subs) < 16, "some sub-calls ran, the rest were refused before they were sent"
    assert fake_openai.peak_concurrency >= 2
    assert result.stop_reason in ("final", "budget")


def test_concurrent_reservations_never_commit_more_than_the_cap() -> None:
    budget = Budget(Limits(max_tokens=10_000))
    admitted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            held = budget.reserve(tokens=700)
        except BudgetExceededError:
            return
        with lock:
            admitted.append(1)
        budget.record("m", 300, 400, 0.0, reservation=held)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.usage().total.tokens <= 10_000
    assert len(admitted) >= 14  # 10_000 // 700, at least; finished calls give back their unused reservation


def test_the_cap_shrinks_to_what_the_budget_has_left(fake_openai: FakeOpenAIServer) -> None:
    budget = Budget(Limits(max_tokens=2000))
    complete_within_budget(client_for(fake_openai), budget, MESSAGES, max_output_tokens=8192)
    sent = fake_openai.requests[0].body["max_tokens"]
    assert sent == 2000 - estimate_messages_tokens(MESSAGES)
    assert budget.usage().total.tokens <= 2000


def test_a_call_whose_worst_case_cannot_fit_is_refused_before_sending(fake_openai: FakeOpenAIServer) -> None:
    budget = Budget(Limits(max_tokens=200))
    with pytest.raises(BudgetExceededError, match="max_tokens=200"):
        complete_within_budget(
            client_for(fake_openai), budget, [{"role": "user", "content": "a" * 600}], max_output_tokens=8192
        )
    assert fake_openai.request_count == 0 and budget.calls_reserved == 0


def test_conversation_records_even_the_latest_turn_when_nothing_else_fits() -> None:
    conversation = Conversation("s " * 300, "Question: q", window=850, max_output_tokens=256)
    conversation.add_reply("I will look.\n" + repl("x = 1\n" + "y = 2\n" * 200))
    conversation.add_user("result " * 400)
    messages, cap, compaction = conversation.prepare()
    assert compaction is not None and compaction.turns_compacted == 1
    assert [m["role"] for m in messages] == ["system", "user"]
    assert (
        "turn 1: ran code `x = 1" in messages[1]["content"] and "still in the Python session" in messages[1]["content"]
    )
    assert estimate_messages_tokens(messages) + cap <= 850
    conversation.add_reply("FINAL(1)")  # the next turn continues from the record
    assert conversation.messages[-1] == {"role": "assistant", "content": "FINAL(1)"}


def test_conversation_calibrates_on_the_servers_count() -> None:
    from rlm_sandbox.lm import LMResponse

    def counted(tokens: int, **kwargs) -> LMResponse:
        return LMResponse(text="x", model="m", input_tokens=tokens, output_tokens=5, cost_usd=0, **kwargs)

    conversation = Conversation("system " * 300, "Question: q", window=4000, max_output_tokens=500)
    raw = conversation.estimated_tokens()
    conversation.observe(conversation.messages, counted(raw // 2), 500)
    assert raw // 2 < conversation.estimated_tokens() <= raw * 0.56 + 1
    conversation.observe(conversation.messages, counted(raw * 2), 500)  # a denser text raises the scale again
    assert conversation.estimated_tokens() >= raw * 2
    conversation.observe(conversation.messages, counted(1, usage_estimated=True), 500)  # not a count: ignored
    assert conversation.estimated_tokens() >= raw * 2


def test_a_window_is_inferred_from_a_reply_the_server_cut_short_of_the_cap() -> None:
    from rlm_sandbox.lm import LMResponse

    conversation = Conversation("system", "Question: q", window=None, max_output_tokens=8192)
    cut = LMResponse(text="x", model="m", input_tokens=1900, output_tokens=147, cost_usd=0, finish_reason="length")
    assert conversation.observe(conversation.messages, cut, 8192) == 2047
    assert conversation.window == 2047
    other = Conversation("system", "Question: q", window=None, max_output_tokens=100)
    at_cap = LMResponse(text="x", model="m", input_tokens=1900, output_tokens=100, cost_usd=0, finish_reason="length")
    assert other.observe(other.messages, at_cap, 100) is None and other.window is None


def test_a_window_revealed_by_a_cut_reply_then_guards_llm_query(tmp_path: Path) -> None:
    # llama-cpp-python reports no window in /v1/models and silently cuts the cap to the
    # room left; the first rambling reply shows the window, and an llm_query prompt too
    # big for it is then refused in the sandbox without a call.
    turns = iter(range(100))

    def respond(body: dict) -> Reply:
        if not is_root(body):
            return Reply.text("sub")
        turn = next(turns)
        if turn == 0:
            return Reply.text("ramble " * 3000)
        if turn == 1:
            return Reply.text(repl("try:\n    llm_query('w ' * 6000)\nexcept Exception as e:\n    print('REFUSED', e)"))
        return Reply.text("FINAL(done)")

    with FakeOpenAIServer(
        respond,
        context_window=1500,
        window_error="llama-cpp-python",
        models={"object": "list", "data": [{"id": "fake-root", "object": "model"}]},
    ) as server:
        result = make_rlm(server, tmp_path).completion("ctx", "q")
        assert result.stop_reason == "final", result.error
        assert all(is_root(r.body) for r in server.requests), "the sub-call was refused before it was sent"
        assert all(r.reply.status == 200 for r in server.requests)
        assert "REFUSED" in str(server.requests[-1].body["messages"])
        calls = events_of(result, "model_call")
        assert calls[0]["finish_reason"] == "length" and calls[1]["context_window"] == 1500


def test_learning_the_window_from_an_error_keeps_the_calibration() -> None:
    # Seen with SmolLM2 on llama-cpp-python: the window was unknown, the history grew past
    # it, and the server said so. Compaction must then use what the server's counts
    # taught (the raw estimate is ~40% high), not give up on the system prompt.
    from rlm_sandbox.lm import LMResponse

    conversation = Conversation("system prompt words " * 150, "Question: q", window=None, max_output_tokens=8192)
    raw = conversation.estimated_tokens()
    counted = LMResponse(text="x", model="m", input_tokens=int(raw * 0.65), output_tokens=5, cost_usd=0)
    conversation.observe(conversation.messages, counted, 8192)
    for turn in range(6):
        conversation.add_reply(repl(f"print({turn})"))
        conversation.add_user("output line " * 60)
    window = raw + 100  # the raw estimate of system + task alone would leave no room for a reply
    compaction = conversation.recover(window)
    assert compaction is not None and compaction.window == window
    _messages, cap, _ = conversation.prepare()
    assert cap >= 256 and conversation.estimated_tokens() + cap <= window
