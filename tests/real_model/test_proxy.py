"""The recording proxy the real-model tests trust for the server's own token counts.

Driven here through the real openai SDK against the fake server, where the truth is
known: what it records must be exactly what the server sent, and an answer the
client had given up on must be marked as never delivered.
"""

from __future__ import annotations

import openai
import pytest

from ..fakes.fake_openai import FakeOpenAIServer, Reply
from .proxy import RecordingProxy


def test_the_proxy_records_the_servers_usage_and_passes_answers_through_unchanged():
    replies = [
        Reply.text("first", prompt_tokens=11, completion_tokens=3),
        Reply.text("second", prompt_tokens=17, completion_tokens=5),
    ]
    with FakeOpenAIServer(replies=replies) as fake, RecordingProxy(fake.base_url.removesuffix("/v1")) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        texts = [
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": q}]) for q in ("a", "b")
        ]
        assert [t.choices[0].message.content for t in texts] == ["first", "second"]
        assert [t.usage.prompt_tokens for t in texts] == [11, 17]
        chat = proxy.chat_exchanges()
        assert [(e.status, e.prompt_tokens, e.completion_tokens, e.delivered) for e in chat] == [
            (200, 11, 3, True),
            (200, 17, 5, True),
        ]
        assert [r.messages[0]["content"] for r in fake.requests] == ["a", "b"]


def test_an_answer_the_client_abandoned_is_recorded_as_undelivered():
    with FakeOpenAIServer(replies=[Reply(content="late", delay_s=1.5, prompt_tokens=9, completion_tokens=9)]) as fake:
        with RecordingProxy(fake.base_url.removesuffix("/v1")) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0, timeout=0.3)
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
            proxy.wait_idle(timeout_s=10)
            (exchange,) = proxy.chat_exchanges()
            assert exchange.prompt_tokens == 9 and exchange.delivered is False


def test_a_server_that_went_away_is_a_502_not_a_crash():
    with FakeOpenAIServer() as fake:
        origin = fake.base_url.removesuffix("/v1")
    with RecordingProxy(origin) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        (exchange,) = proxy.chat_exchanges()
        assert exchange.status == 502 and "upstream failed" in (exchange.error or "")
