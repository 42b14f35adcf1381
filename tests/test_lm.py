"""The LM clients against the fake HTTP server: OpenAIClient through the real openai SDK,
and, where a behaviour is the same for every client, LiteLLMClient through the real
litellm package (its OpenAI-compatible route) too."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

from rlm_sandbox.errors import BudgetExceededError, CompletionTimeoutError, LMError, MissingAPIKeyError
from rlm_sandbox.limits import Budget, Limits
from rlm_sandbox.lm import (
    LOCAL_PLACEHOLDER_KEY,
    ChatClient,
    LMClient,
    LMResponse,
    OpenAIClient,
    Price,
    complete_within_budget,
    cost_usd,
    lookup_price,
    price_source,
)
from rlm_sandbox.providers import client_for
from tests.fakes.fake_openai import FakeOpenAIServer, Reply, fake_openai_server

fake_openai = pytest.fixture(fake_openai_server)

MESSAGES = [{"role": "user", "content": "y" * 400}]
FAST = 0.01  # Retry-After the fake sends, so the SDK's own backoff is exercised quickly


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # No real key, URL or .env of the developer may leak into these tests.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


CLIENTS = ("openai", "litellm")


@pytest.fixture(params=CLIENTS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which client a test runs with: behaviour shared by both is tested on both."""
    if request.param == "litellm" and importlib.util.find_spec("litellm") is None:
        # Not importorskip: importing litellm outside rlm_sandbox's loader would fetch its cost map.
        pytest.skip("litellm is not installed (pip install 'rlm-sandbox[litellm]')")
    return request.param


def _name(kind: str, model: str) -> str:
    """The model's name as `kind`'s client takes it (LiteLLM routes by a provider prefix)."""
    return f"openai/{model}" if kind == "litellm" else model


def _client(server: FakeOpenAIServer, kind: str = "openai", **kwargs: object) -> ChatClient:
    kwargs.setdefault("api_key", "sk-test")
    return client_for(kind, _name(kind, "gpt-4o-mini"), base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


# -- success and accounting ---------------------------------------------------------


def test_complete_returns_text_usage_and_cost(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(
        Reply.text("the answer", prompt_tokens=1_000_000, completion_tokens=2_000_000, cached_tokens=1_000)
    )
    response = _client(fake_openai, kind).complete(MESSAGES)
    assert isinstance(response, LMResponse)
    assert response.text == "the answer"
    assert response.model == _name(kind, "gpt-4o-mini")
    assert response.cached_input_tokens == 1_000
    assert (response.input_tokens, response.output_tokens) == (1_000_000, 2_000_000)
    # Our price table, the same through every client: gpt-4o-mini's cached input is half price.
    assert response.cost_usd == pytest.approx(0.15 + 2 * 0.60 - 1_000 * 0.075 / 1e6)
    assert not response.usage_estimated
    (request,) = fake_openai.requests
    assert request.model == "gpt-4o-mini"
    assert request.messages == MESSAGES
    assert request.headers["authorization"] == "Bearer sk-test"


def test_model_argument_overrides_the_default(fake_openai: FakeOpenAIServer, kind: str) -> None:
    response = _client(fake_openai, kind).complete(MESSAGES, model=_name(kind, "my-local-model"))
    assert fake_openai.requests[0].model == "my-local-model"
    assert response.model == _name(kind, "my-local-model")
    assert response.cost_usd == 0.0  # unknown model: free, but still a counted call
    assert response.input_tokens == 100


def test_missing_usage_is_estimated(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply(content="z" * 40, include_usage=False))
    response = _client(fake_openai, kind).complete(MESSAGES)
    assert response.usage_estimated
    # The estimate errs high: at least one token per 2.5 bytes, plus message and request overheads.
    assert (response.input_tokens, response.output_tokens) == (160 + 8 + 16, 16)
    assert response.input_tokens >= 100  # what a 4-chars-per-token server would count


def test_prices_can_be_overridden(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply(prompt_tokens=1_000_000, completion_tokens=0))
    client = _client(fake_openai, kind, prices={"gpt-4o-mini": Price(input_per_mtok=1.0, output_per_mtok=1.0)})
    assert client.complete(MESSAGES).cost_usd == pytest.approx(1.0)


def test_prices_come_from_genai_prices_under_overrides() -> None:
    gpt5 = lookup_price("gpt-5")
    assert gpt5 is not None and gpt5.input_per_mtok == pytest.approx(1.25) and gpt5.output_per_mtok == pytest.approx(10)
    assert gpt5.cached_input_per_mtok is not None and gpt5.cached_input_per_mtok < gpt5.input_per_mtok
    assert lookup_price("gpt-4o-mini-2024-07-18") == lookup_price("gpt-4o-mini")
    assert lookup_price("openai/gpt-4o") == lookup_price("gpt-4o")
    assert lookup_price("GPT-5-MINI") == lookup_price("gpt-5-mini")
    assert lookup_price("anthropic/claude-sonnet-4-20250514") is not None
    assert lookup_price("llama-3-70b-my-finetune") is None
    assert cost_usd("llama-3-70b-my-finetune", 10**6, 10**6) == 0.0
    assert cost_usd("gpt-5", 10**6, 10**6) == pytest.approx(1.25 + 10.0)
    # Cached input is charged at its own (lower) price.
    assert cost_usd("gpt-5", 10**6, 0, cached_input_tokens=10**6) == pytest.approx(gpt5.cached_input_per_mtok)
    mine = {"mine": Price(input_per_mtok=2, output_per_mtok=0, cached_input_per_mtok=0.5)}
    assert cost_usd("mine", 10**6, 0, prices=mine) == 2.0
    assert cost_usd("mine", 10**6, 0, prices=mine, cached_input_tokens=10**6 // 2) == pytest.approx(1.25)
    assert cost_usd("gpt-5", 10**6, 0, prices={"gpt-5": Price(input_per_mtok=9, output_per_mtok=9)}) == 9.0
    source = price_source()
    assert source["source"] == "genai-prices" and source["version"]


def test_client_satisfies_the_protocol_and_hides_the_key(fake_openai: FakeOpenAIServer, kind: str) -> None:
    client = _client(fake_openai, kind, api_key="sk-secret-value")
    assert isinstance(client, LMClient)
    assert "sk-secret-value" not in repr(client)


def test_one_client_serves_many_threads_concurrently(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.set_responder(lambda body: Reply.text(f"echo {body['messages'][0]['content']}", delay_s=0.2))
    client = _client(fake_openai, kind)
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = client.complete([{"role": "user", "content": str(i)}]).text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == {i: f"echo {i}" for i in range(12)}
    assert fake_openai.peak_concurrency >= 4  # not serialised behind one connection or lock


# -- retries: the SDK's machinery, observed at the server ---------------------------------


def test_retries_on_429_then_succeeds(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.error(429, retry_after=FAST), Reply.error(429, retry_after=FAST), Reply.text("finally"))
    response = _client(fake_openai, kind, max_retries=4).complete(MESSAGES)
    assert response.text == "finally"
    assert fake_openai.request_count == 3
    if kind == "openai":  # the SDK's own retries; LiteLLM's calls are retried by the shared policy
        assert [r.headers.get("x-stainless-retry-count") for r in fake_openai.requests] == ["0", "1", "2"]


def test_retries_on_500_then_succeeds(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.error(500, retry_after=FAST), Reply.error(503, retry_after=FAST), Reply.text("fine"))
    assert _client(fake_openai, kind).complete(MESSAGES).text == "fine"
    assert fake_openai.request_count == 3


def test_retry_uses_the_sdk_backoff_without_retry_after(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.error(500), Reply.text("after backoff"))
    client = _client(fake_openai, kind, max_retries=1)
    started = time.monotonic()
    assert client.complete(MESSAGES).text == "after backoff"
    elapsed = time.monotonic() - started
    assert fake_openai.request_count == 2
    assert 0.3 <= elapsed < 2.0  # first SDK backoff: 0.5 s less up to 25 % jitter


def test_retries_on_connection_reset(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.connection_reset(), Reply.text("reconnected"))
    assert _client(fake_openai, kind, max_retries=2).complete(MESSAGES).text == "reconnected"
    assert fake_openai.request_count == 2


def test_exhausted_retries_raise_lm_error(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.set_responder(lambda body: Reply.error(429, retry_after=FAST, message="rate limited, try later"))
    with pytest.raises(LMError, match=r"HTTP 429.*rate limited"):
        _client(fake_openai, kind, max_retries=2).complete(MESSAGES)
    assert fake_openai.request_count == 3


def test_client_errors_are_not_retried(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.error(400, message="context too long"))
    with pytest.raises(LMError, match=r"HTTP 400.*context too long"):
        _client(fake_openai, kind).complete(MESSAGES)
    assert fake_openai.request_count == 1


def test_rejected_key_is_explained(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.error(401, message="invalid api key"))
    with pytest.raises(LMError, match="API key was rejected"):
        _client(fake_openai, kind).complete(MESSAGES)


def test_unreachable_server_is_lm_error(kind: str) -> None:
    with FakeOpenAIServer() as server:
        url = server.base_url
    client = client_for(kind, _name(kind, "m"), base_url=url, api_key="k", max_retries=0)
    with pytest.raises(LMError, match="connection failed"):
        client.complete(MESSAGES)


# -- timeouts ----------------------------------------------------------------------


def test_hang_past_timeout_fails_within_bounded_time(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.set_responder(lambda body: Reply.hang_forever())
    client = _client(fake_openai, kind, max_retries=4)
    started = time.monotonic()
    with pytest.raises(LMError, match=r"no answer within 0\.5s"):
        client.complete(MESSAGES, timeout_s=0.5)
    elapsed = time.monotonic() - started
    # The timeout bounds the call including retries: one attempt, one backoff
    # sleep, then the deadline stops the SDK, instead of 5 x 0.5 s of attempts.
    assert 0.5 <= elapsed < 2.5  # without the deadline: ~2.5 s of attempts + ~6.5 s of backoff
    assert fake_openai.request_count == 1


def test_slow_answer_within_timeout_succeeds(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.text("slow", delay_s=0.2))
    assert _client(fake_openai, kind).complete(MESSAGES, timeout_s=5).text == "slow"


def test_retry_after_beyond_the_deadline_is_not_waited_for(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.set_responder(lambda body: Reply.error(429, retry_after=60))
    client = _client(fake_openai, kind, max_retries=4)
    started = time.monotonic()
    with pytest.raises(LMError, match="HTTP 429"):
        client.complete(MESSAGES, timeout_s=2)
    assert time.monotonic() - started < 1.5  # not the 60 s the server asked for
    assert fake_openai.request_count == 1


# -- malformed answers ------------------------------------------------------------------


def test_malformed_json_is_lm_error(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.malformed_json())
    with pytest.raises(LMError, match="malformed response"):
        _client(fake_openai, kind).complete(MESSAGES)
    assert fake_openai.request_count == 1  # a reply that cannot be read is not asked for again


def test_empty_choices_is_lm_error(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.no_choices())
    with pytest.raises(LMError, match="no choices"):
        _client(fake_openai, kind).complete(MESSAGES)


def test_missing_content_is_an_empty_reply_not_an_error(fake_openai: FakeOpenAIServer, kind: str) -> None:
    # A reply with only tool calls, or a refusal, has no content: the loop tells the model.
    fake_openai.push(Reply(content=None, tool_calls=2), Reply(content=None, refusal="I can't help with that."))
    first = _client(fake_openai, kind).complete(MESSAGES)
    assert (first.text, first.tool_calls, first.refusal) == ("", 2, None)
    second = _client(fake_openai, kind).complete(MESSAGES)
    assert (second.text, second.refusal) == ("", "I can't help with that.")


# -- configuration: key and URL ------------------------------------------------------


def test_missing_key_says_how_to_set_one() -> None:
    with pytest.raises(MissingAPIKeyError) as caught:
        OpenAIClient("gpt-5-mini")
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message
    assert ".env" in message
    assert "--base-url" in message
    assert isinstance(caught.value, LMError)


def test_base_url_without_key_uses_a_placeholder(fake_openai: FakeOpenAIServer) -> None:
    client = OpenAIClient("local", base_url=fake_openai.base_url)
    client.complete(MESSAGES)
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {LOCAL_PLACEHOLDER_KEY}"


def test_key_and_url_from_environment(fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    OpenAIClient("m").complete(MESSAGES)
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_key_and_url_from_dotenv_without_overriding_env(
    fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    (isolated_env / ".env").write_text(f"OPENAI_API_KEY=sk-from-dotenv\nOPENAI_BASE_URL={fake_openai.base_url}\n")
    OpenAIClient("m").complete(MESSAGES)
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-from-dotenv"
    assert "OPENAI_API_KEY" not in os.environ  # read, not injected into the process

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-wins")
    OpenAIClient("m").complete(MESSAGES)
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-env-wins"

    OpenAIClient("m", api_key="sk-argument-wins").complete(MESSAGES)
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-argument-wins"


# -- calls charged to a budget --------------------------------------------------------


def test_complete_within_budget_records_usage(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply(prompt_tokens=100, completion_tokens=20), Reply(prompt_tokens=5, completion_tokens=5))
    client = _client(fake_openai, kind)
    budget = Budget(Limits(max_llm_calls=2))
    complete_within_budget(client, budget, MESSAGES)
    complete_within_budget(client, budget, MESSAGES, model=_name(kind, "gpt-5-nano"))
    usage = budget.usage()
    assert usage.models[_name(kind, "gpt-4o-mini")].input_tokens == 100
    assert usage.models[_name(kind, "gpt-5-nano")].calls == 1
    assert usage.total.calls == 2
    with pytest.raises(BudgetExceededError, match="max_llm_calls=2"):
        complete_within_budget(client, budget, MESSAGES)
    assert fake_openai.request_count == 2  # the refused call never reached the server


def test_failed_call_still_counts_against_the_budget(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.push(Reply.error(400))
    budget = Budget(Limits(max_llm_calls=5))
    with pytest.raises(LMError):
        complete_within_budget(_client(fake_openai, kind), budget, MESSAGES)
    assert budget.usage().total.calls == 1
    assert budget.calls_remaining == 4


def test_completion_deadline_bounds_the_call(fake_openai: FakeOpenAIServer, kind: str) -> None:
    fake_openai.set_responder(lambda body: Reply.hang_forever())
    client = _client(fake_openai, kind)
    budget = Budget(Limits(timeout_s=0.4))
    started = time.monotonic()
    with pytest.raises(CompletionTimeoutError):
        complete_within_budget(client, budget, MESSAGES, timeout_s=300)
    assert time.monotonic() - started < 2.5
    assert budget.exhausted_reason() == "timeout"
