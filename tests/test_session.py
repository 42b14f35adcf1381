"""Sessions: one sandbox and one conversation for many queries."""

from __future__ import annotations

import os
import time

import pytest

from rlm_sandbox import Limits
from rlm_sandbox.errors import SandboxClosedError
from tests.reliability.test_host_process import containers_of, wait_for

from .test_rlm import containers_created_since, fake_openai, make_rlm, program, repl  # noqa: F401


def questions_seen(body: dict) -> int:
    return sum(
        1
        for m in body["messages"]
        if m["role"] == "user" and ("Question:" in m["content"] or "Next question:" in m["content"])
    )


def session_program(body: dict) -> str:
    """Query 1 sets x; every later query adds one to it. Each query: code, then FINAL."""
    last = body["messages"][-1]
    if last["role"] == "user" and ("Question:" in last["content"] or "Next question:" in last["content"]):
        return repl("x = 41" if questions_seen(body) == 1 else "x += 1")
    return repl("FINAL(x)")


def test_five_queries_use_one_container_and_keep_variables(fake_openai, docker_client):
    fake_openai.set_responder(program(session_program))
    rlm = make_rlm(fake_openai, sandbox=True)
    since = time.time() - 0.01
    answers = []
    with rlm.session("the shared context") as chat:
        for i in range(5):
            result = chat.completion(f"query {i}")
            assert result.stop_reason == "final", result.error
            answers.append(result.answer)
        assert chat.queries == 5
        assert chat.sandboxes_started == 1
        assert chat.usage.calls == 10
    assert answers == ["41", "42", "43", "44", "45"], "REPL variables carried over"
    assert containers_created_since(docker_client, since) == 1
    # The conversation carried over too: the last request holds all five questions
    # and one system prompt, the context described once.
    last = fake_openai.requests[-1].body
    assert questions_seen(last) == 5
    assert sum(1 for m in last["messages"] if m["role"] == "system") == 1
    assert wait_for(lambda: not containers_of(docker_client, os.getpid()), 10), "closing removes the container"


def test_a_closed_session_refuses_queries(fake_openai):
    fake_openai.set_responder(program(session_program))
    chat = make_rlm(fake_openai).session("ctx")
    assert chat.completion("q").answer == "41"
    chat.close()
    chat.close()
    with pytest.raises(SandboxClosedError, match="session is closed"):
        chat.completion("again")


def test_the_session_budget_caps_all_queries_together(fake_openai):
    fake_openai.set_responder(program(session_program))
    rlm = make_rlm(fake_openai, max_llm_calls=10)
    with rlm.session("ctx", budget=Limits(max_llm_calls=3)) as chat:
        first = chat.completion("q1")
        second = chat.completion("q2")  # one call left: code, then the budget is gone
        third = chat.completion("q3")
    assert (first.stop_reason, first.usage.total.calls) == ("final", 2)
    assert (second.stop_reason, second.usage.total.calls) == ("budget", 1)
    assert third.stop_reason == "budget" and "session budget is used up" in third.error
    assert third.usage.total.calls == 0
    assert fake_openai.request_count == 3


def test_per_query_limits_still_apply(fake_openai):
    fake_openai.set_responder(program(lambda body: repl("print('working')")))
    with make_rlm(fake_openai, max_iterations=2).session("ctx") as chat:
        for _ in range(2):
            result = chat.completion("q")
            assert (result.stop_reason, result.iterations) == ("max_iterations", 2)
