"""The fake server itself, driven by the real openai client and by raw HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.fake_openai import FakeOpenAIServer, Reply, fake_openai_server

fake_openai = pytest.fixture(fake_openai_server)

MESSAGES = [{"role": "user", "content": "x" * 40}]


def _client(server: FakeOpenAIServer, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(api_key="test-key", base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def _post(
    server: FakeOpenAIServer, body: object, path: str = "/v1/chat/completions"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_base_url_and_default_reply(fake_openai: FakeOpenAIServer) -> None:
    assert fake_openai.base_url.startswith("http://127.0.0.1:")
    assert fake_openai.base_url.endswith("/v1")
    completion = _client(fake_openai).chat.completions.create(model="gpt-5-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "ok"
    assert completion.model == "gpt-5-mini"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10  # 40 chars / 4
    assert completion.usage.completion_tokens == 1


def test_requests_are_recorded_with_body_and_headers(fake_openai: FakeOpenAIServer) -> None:
    _client(fake_openai).chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
    (request,) = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.model == "m1"
    assert request.messages == MESSAGES
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.finished_at is not None and request.finished_at >= request.received_at


def test_queue_then_responder_then_default() -> None:
    seen: list[str] = []

    def responder(body: dict[str, object]) -> Reply:
        seen.append(str(body["model"]))
        return Reply.text("from responder", prompt_tokens=7, completion_tokens=3)

    with FakeOpenAIServer(replies=[Reply.text("queued")]) as server:
        client = _client(server)
        first = client.chat.completions.create(model="a", messages=MESSAGES)  # type: ignore[arg-type]
        server.set_responder(responder)
        second = client.chat.completions.create(model="b", messages=MESSAGES)  # type: ignore[arg-type]
        server.set_responder(None)
        third = client.chat.completions.create(model="c", messages=MESSAGES)  # type: ignore[arg-type]
    assert [first.choices[0].message.content, second.choices[0].message.content, third.choices[0].message.content] == [
        "queued",
        "from responder",
        "ok",
    ]
    assert second.usage is not None and (second.usage.prompt_tokens, second.usage.completion_tokens) == (7, 3)
    assert seen == ["b"]


def test_error_status_with_retry_after(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(Reply.error(429, retry_after=1.5, message="slow down"))
    status, headers, body = _post(fake_openai, {"model": "m", "messages": []})
    assert status == 429
    assert headers["retry-after"] == "1.5"
    assert json.loads(body)["error"]["message"] == "slow down"


def test_malformed_and_empty_choices_bodies(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(Reply.malformed_json(), Reply.no_choices(), Reply(include_usage=False), Reply(content=None))
    status, _, body = _post(fake_openai, {"model": "m", "messages": []})
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    _, _, body = _post(fake_openai, {"model": "m", "messages": []})
    assert json.loads(body)["choices"] == []
    _, _, body = _post(fake_openai, {"model": "m", "messages": []})
    assert "usage" not in json.loads(body)
    _, _, body = _post(fake_openai, {"model": "m", "messages": []})
    assert json.loads(body)["choices"][0]["message"]["content"] is None


def test_connection_reset(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.push(Reply.connection_reset())
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _post(fake_openai, {"model": "m", "messages": []})
    assert fake_openai.request_count == 1


def test_unknown_path_is_404(fake_openai: FakeOpenAIServer) -> None:
    status, _, _ = _post(fake_openai, {}, path="/v1/embeddings")
    assert status == 404
    assert fake_openai.request_count == 0


def test_delay_and_concurrency_are_observable(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.set_responder(lambda body: Reply(delay_s=0.3))
    client = _client(fake_openai)
    threads = [
        threading.Thread(target=client.chat.completions.create, kwargs={"model": "m", "messages": MESSAGES})
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert fake_openai.request_count == 6
    assert fake_openai.peak_concurrency == 6  # all six were in flight at once
    requests = fake_openai.requests
    first_answer = min(r.finished_at or 0.0 for r in requests)
    assert all(r.received_at <= first_answer for r in requests)
    assert all((r.finished_at or 0.0) - r.received_at >= 0.3 for r in requests)


def test_responder_exception_becomes_500_and_is_reported(fake_openai: FakeOpenAIServer) -> None:
    def broken(body: dict[str, object]) -> Reply:
        raise RuntimeError("bug in test responder")

    fake_openai.set_responder(broken)
    status, _, body = _post(fake_openai, {"model": "m", "messages": []})
    assert status == 500
    assert "bug in test responder" in body.decode()
    assert fake_openai.handler_errors == ["RuntimeError: bug in test responder"]


def test_close_does_not_wait_for_hung_handlers() -> None:
    server = FakeOpenAIServer(replies=[Reply.hang_forever(), Reply.hang_forever()])
    errors: list[BaseException] = []

    def call() -> None:
        try:
            _post(server, {"model": "m", "messages": []})
        except BaseException as exc:  # the connection is dropped on close
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert server.wait_for_requests(2)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 2
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert len(errors) == 2
    server.close()  # idempotent


def test_fixture_generator_closes_the_server() -> None:
    generator: Iterator[FakeOpenAIServer] = fake_openai_server()
    server = next(generator)
    port = server.port
    with pytest.raises(StopIteration):
        next(generator)
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
