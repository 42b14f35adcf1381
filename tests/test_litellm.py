"""RLM(provider="litellm"): the real litellm package, through its OpenAI-compatible route
("openai/<name>" with api_base) to the fake HTTP server.

Behaviour every client shares (retries, deadlines, malformed replies, budget records) is
tested on both clients in tests/test_lm.py and tests/test_rlm.py; this file holds what is
LiteLLM's own or needs the whole loop: the RLM end to end, usage and cost, the cap's
field, context windows, keys, import hygiene, the errors, and the CLI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("litellm") is None:
    # Not importorskip: importing litellm outside rlm_sandbox's loader would fetch its cost map.
    pytest.skip("litellm is not installed (pip install 'rlm-sandbox[litellm]')", allow_module_level=True)

from rlm_sandbox import RLM, ContextWindowExceededError, InputError, Limits, LMError, MissingAPIKeyError
from rlm_sandbox.errors import MissingExtraError, UnknownProviderError
from rlm_sandbox.limits import Budget
from rlm_sandbox.litellm_client import LiteLLMClient
from rlm_sandbox.lm import Price, complete_within_budget, lookup_price
from rlm_sandbox.providers import client_for
from tests.fakes.fake_openai import WINDOW_ERRORS, FakeOpenAIServer, Reply, WindowError, fake_openai_server

fake_openai = pytest.fixture(fake_openai_server)

MESSAGES = [{"role": "user", "content": "y" * 400}]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # No real key or .env of the developer may leak into these tests.
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _client(server: FakeOpenAIServer, model: str = "openai/fake-root", **kwargs: object) -> LiteLLMClient:
    kwargs.setdefault("api_key", "sk-test")
    client = client_for("litellm", model, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]
    assert isinstance(client, LiteLLMClient)
    return client


def _repl(code: str) -> str:
    return f"Running some code.\n```repl\n{code}\n```"


# -- the whole loop --------------------------------------------------------------------


def test_rlm_completion_end_to_end_through_litellm(fake_openai: FakeOpenAIServer) -> None:
    def respond(body: dict) -> Reply:
        messages = body["messages"]
        if not any(m.get("role") == "system" for m in messages):
            return Reply.text("sub says 42", prompt_tokens=30, completion_tokens=5)  # an llm_query
        if not any(m.get("role") == "assistant" for m in messages):
            return Reply.text(_repl("answer = llm_query('what is it?')\nprint(answer)"), prompt_tokens=500)
        return Reply.text("FINAL(42)", prompt_tokens=600, completion_tokens=4, cached_tokens=200)

    fake_openai.set_responder(respond)
    rlm = RLM(
        model="openai/fake-root",
        sub_model="openai/fake-sub",
        provider="litellm",
        base_url=fake_openai.base_url,
        api_key="sk-test",
        sandbox=False,
        limits=Limits(max_output_tokens=1000),
    )
    assert isinstance(rlm.client, LiteLLMClient) and rlm.sub_client is rlm.client
    result = rlm.completion("some context", "what is it?")
    assert (result.stop_reason, result.answer) == ("final", "42"), result.error
    # The sub-model's call went through the same provider, under its LiteLLM name.
    assert [r.model for r in fake_openai.requests] == ["fake-root", "fake-sub", "fake-root"]
    usage = result.usage
    assert set(usage.models) == {"openai/fake-root", "openai/fake-sub"}
    assert usage.models["openai/fake-sub"].input_tokens == 30
    assert usage.models["openai/fake-root"].input_tokens == 1100
    assert usage.models["openai/fake-root"].cached_input_tokens == 200
    assert usage.total.calls == fake_openai.request_count == 3
    # Every call carried the output cap, under the field LiteLLM maps for every provider.
    assert all(r.body is not None and r.body.get("max_tokens") == 1000 for r in fake_openai.requests)
    assert all(r.headers["authorization"] == "Bearer sk-test" for r in fake_openai.requests)


# -- usage and cost ------------------------------------------------------------------------


def test_usage_is_recorded_in_the_budget_as_for_the_openai_client(fake_openai: FakeOpenAIServer) -> None:
    reply = Reply.text("x", prompt_tokens=1000, completion_tokens=200, cached_tokens=400, reasoning_tokens=50)
    fake_openai.push(reply, reply)
    budget = {kind: Budget(Limits()) for kind in ("openai", "litellm")}
    complete_within_budget(_client(fake_openai, "openai/gpt-4o-mini"), budget["litellm"], MESSAGES)
    openai_client = client_for("openai", "openai/gpt-4o-mini", base_url=fake_openai.base_url, api_key="k")
    complete_within_budget(openai_client, budget["openai"], MESSAGES)
    through_litellm = budget["litellm"].usage().models["openai/gpt-4o-mini"]
    assert (through_litellm.input_tokens, through_litellm.output_tokens) == (1000, 200)
    assert (through_litellm.cached_input_tokens, through_litellm.reasoning_tokens) == (400, 50)
    assert through_litellm == budget["openai"].usage().models["openai/gpt-4o-mini"]  # cost included
    assert through_litellm.cost_usd > 0


def test_cost_comes_from_our_price_table_with_litellm_only_for_models_it_lacks(fake_openai: FakeOpenAIServer) -> None:
    mine = {"gpt-4o-mini": Price(input_per_mtok=7.0, output_per_mtok=0.0)}
    fake_openai.push(Reply(prompt_tokens=1_000_000, completion_tokens=0))
    assert _client(fake_openai, "openai/gpt-4o-mini", prices=mine).complete(MESSAGES).cost_usd == pytest.approx(7.0)
    # A model genai-prices does not know but LiteLLM's bundled map does: LiteLLM's price.
    tuned = "openai/ft:gpt-4.1-mini-2025-04-14"
    assert lookup_price(tuned) is None
    fake_openai.push(Reply(prompt_tokens=1_000_000, completion_tokens=1_000_000))
    assert _client(fake_openai, tuned).complete(MESSAGES).cost_usd == pytest.approx(0.8 + 3.2)
    # Known to neither: free, and still counted.
    fake_openai.push(Reply(prompt_tokens=1_000_000, completion_tokens=1_000_000))
    assert _client(fake_openai).complete(MESSAGES).cost_usd == 0.0


# -- the output cap ----------------------------------------------------------------------


def test_a_rejected_cap_field_is_switched_once(fake_openai: FakeOpenAIServer) -> None:
    with FakeOpenAIServer(cap_params=("max_completion_tokens",)) as server:
        client = _client(server)
        assert client.complete(MESSAGES, max_output_tokens=50).text == "ok"
        assert client.complete(MESSAGES, max_output_tokens=60).text == "ok"
        bodies = [r.body or {} for r in server.requests]
    assert [("max_tokens" in b, b.get("max_completion_tokens")) for b in bodies] == [
        (True, None),
        (False, 50),
        (False, 60),
    ]
    assert client.cap_param == "max_completion_tokens"


def test_a_reply_cut_at_the_cap_says_length(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(Reply.text("z" * 400))
    response = _client(fake_openai).complete(MESSAGES, max_output_tokens=10)
    assert (response.finish_reason, response.output_tokens) == ("length", 10)


# -- context windows -----------------------------------------------------------------------


@pytest.mark.parametrize("wording", WINDOW_ERRORS)
def test_a_context_length_error_is_context_window_exceeded(wording: WindowError) -> None:
    with FakeOpenAIServer(context_window=50, window_error=wording) as server:
        client = _client(server)
        with pytest.raises(ContextWindowExceededError) as caught:
            client.complete(MESSAGES, max_output_tokens=10)
        assert server.request_count == 1  # not retried
    # llama.cpp names its window only in a field LiteLLM does not pass on.
    named = None if wording == "llamacpp" else 50
    assert caught.value.window == named
    assert client.context_window() == named


def test_context_window_from_the_server_then_litellm_then_our_data() -> None:
    served = [{"id": "fake-root", "max_model_len": 4096}, {"id": "fake-sub", "max_model_len": 2048}]
    models = {"object": "list", "data": served}
    with FakeOpenAIServer(models=models) as server:
        assert _client(server).context_window() == 4096  # vLLM's /v1/models, asked under the served name
        assert _client(server).context_window("openai/gpt-4o-mini") == 128_000  # not served: LiteLLM's map
    with FakeOpenAIServer() as server:
        assert _client(server).context_window() is None  # known nowhere: learned from errors, if ever
    assert LiteLLMClient("anthropic/claude-sonnet-4-5", api_key="k").context_window() == 200_000


# -- failures ------------------------------------------------------------------------------


def test_http_500_is_retried_then_lm_error(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.set_responder(lambda body: Reply.error(500, retry_after=0.01, message="upstream broke"))
    with pytest.raises(LMError, match=r"HTTP 500.*upstream broke"):
        _client(fake_openai, max_retries=2).complete(MESSAGES)
    assert fake_openai.request_count == 3


def test_a_hung_server_is_abandoned_at_the_deadline(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.set_responder(lambda body: Reply.hang_forever())
    client = _client(fake_openai)
    started = time.monotonic()
    with pytest.raises(LMError, match=r"no answer within 1s"):
        client.complete(MESSAGES, timeout_s=1.0)
    assert time.monotonic() - started < 5.0


def test_unknown_provider_is_refused_at_once() -> None:
    with pytest.raises(UnknownProviderError, match="'openai', 'litellm'") as caught:
        RLM(model="m", provider="anthropic", sandbox=False)
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ValueError)


def test_litellm_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlm_sandbox.litellm_client as module

    monkeypatch.setattr(module, "_loaded", None)
    monkeypatch.setitem(sys.modules, "litellm", None)  # what `import litellm` meets when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'rlm-sandbox\[litellm\]'"):
        RLM(model="anthropic/claude-sonnet-4-5", provider="litellm", api_key="k", sandbox=False)


# -- keys ----------------------------------------------------------------------------------


def test_missing_key_names_the_providers_variable() -> None:
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        RLM(model="anthropic/claude-sonnet-4-5", provider="litellm", sandbox=False)


def test_keys_from_argument_environment_and_dotenv(
    fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    def sent_key(**kwargs: object) -> str:
        LiteLLMClient("openai/m", base_url=fake_openai.base_url, **kwargs).complete(MESSAGES)  # type: ignore[arg-type]
        return fake_openai.requests[-1].headers["authorization"]

    assert sent_key() == "Bearer not-needed"  # a keyless local server
    (isolated_env / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\n")
    assert sent_key() == "Bearer sk-from-dotenv"
    assert "OPENAI_API_KEY" not in os.environ  # read, not injected into the process
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-wins")
    assert sent_key() == "Bearer sk-env-wins"  # LiteLLM's own lookup
    assert sent_key(api_key="sk-argument-wins") == "Bearer sk-argument-wins"
    assert "sk-argument-wins" not in repr(LiteLLMClient("openai/m", api_key="sk-argument-wins"))


# -- import hygiene ------------------------------------------------------------------------


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_rlm_sandbox_does_not_import_litellm(tmp_path: Path) -> None:
    done = _python(
        """
        import sys
        import rlm_sandbox, rlm_sandbox.lm, rlm_sandbox.rlm, rlm_sandbox.cli
        assert "litellm" not in sys.modules, "litellm imported"
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_litellm_is_used_offline_and_leaves_the_environment_alone(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RLM_TEST_FROM_DOTENV=1\n")
    done = _python(
        """
        import ipaddress, os, socket, sys
        outside = []
        def watch(event, args):
            if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
                host = args[1][0]
                if not ipaddress.ip_address(host).is_loopback:
                    outside.append(host)
            elif event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "localhost", "::1"):
                outside.append(args[0])
        sys.addaudithook(watch)
        from rlm_sandbox.providers import client_for
        from tests.fakes.fake_openai import FakeOpenAIServer
        with FakeOpenAIServer() as server:
            client = client_for("litellm", "openai/gpt-4o-mini", base_url=server.base_url, api_key="k")
            assert client.complete([{"role": "user", "content": "hi"}]).text == "ok"
            client.context_window("anthropic/claude-sonnet-4-5")
        assert outside == [], outside
        assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
        assert "RLM_TEST_FROM_DOTENV" not in os.environ, "litellm's import loaded .env into the environment"
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr


# -- the CLI -------------------------------------------------------------------------------


def test_cli_run_with_provider_litellm(tmp_path: Path) -> None:
    def respond(body: dict) -> Reply:
        if any(m.get("role") == "assistant" for m in body["messages"]):
            return Reply.text("FINAL(8675309)")
        return Reply.text(_repl("print(context[:20])"))

    context = tmp_path / "notes.txt"
    context.write_text("The magic number is 8675309.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with FakeOpenAIServer(respond) as server:
        args = ["run", "--context", str(context), "--query", "What number?", "--no-sandbox", "--json"]
        args += ["--provider", "litellm", "--model", "openai/local-model", "--base-url", server.base_url]
        done = subprocess.run(
            [sys.executable, "-m", "rlm_sandbox.cli", *args, "--log-dir", str(tmp_path / "logs")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert [r.model for r in server.requests] == ["local-model", "local-model"]
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "8675309"
    assert set(result["usage"]["models"]) == {"openai/local-model"}
