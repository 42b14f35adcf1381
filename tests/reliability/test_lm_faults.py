"""The model API misbehaves, in a root turn or in an llm_query from sandboxed code.

tests/test_lm.py covers the client on its own. Here each fault strikes inside a whole
completion with a real sandbox, through the real openai client and the fake server:
transient faults are retried and the run finishes; persistent ones end in a clear error
(in the sandbox, as LLMQueryError; for the root, as stop_reason "error"); usage counts
one call per logical request whatever the retries, a failed call with no tokens; the
key appears in no error text; no thread or container is left.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from rlm_sandbox import RLM, Limits
from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID
from tests.fakes.fake_openai import FakeOpenAIServer, Reply

KEY = "sk-fault-test-key-0123456789abcdef"
LLM_TIMEOUT_S = 2.0

FAULTS = {
    "429": (lambda: Reply.error(429, retry_after=0.05), True),
    "500": (lambda: Reply.error(500), True),
    "connection reset": (Reply.connection_reset, True),
    "hang past llm_timeout_s": (Reply.hang_forever, False),
    "malformed JSON": (Reply.malformed_json, False),
    "empty choice list": (Reply.no_choices, False),
}
CLEAR_WORDS = {
    "hang past llm_timeout_s": "no answer within",
    "malformed JSON": "malformed response",
    "empty choice list": "no choices",
}

SUB_CODE = "try:\n    print('OK', llm_query('question'))\nexcept LLMQueryError as exc:\n    print('ERR', exc)\n"


def is_root(body: dict) -> bool:
    return any(m.get("role") == "system" for m in body.get("messages", []))


def turn_of(body: dict) -> int:
    return sum(1 for m in body["messages"] if m.get("role") == "assistant")


def our_containers(docker_client) -> int:
    return len(docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"}))


@pytest.mark.parametrize("where", ["root turn", "llm_query in the sandbox"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_lm_fault(fault, where, docker_client, sandbox_image):
    make_fault, transient = FAULTS[fault]
    faults_left = {"n": 2 if transient else 10**6}
    lock = threading.Lock()
    seen_by_model: list[str] = []

    def faulty() -> Reply | None:
        with lock:
            if faults_left["n"] > 0:
                faults_left["n"] -= 1
                return make_fault()
        return None

    def respond(body: dict) -> Reply:
        if not is_root(body):
            return (faulty() if where != "root turn" else None) or Reply.text(
                "sub-answer", prompt_tokens=7, completion_tokens=3
            )
        if where == "root turn" and turn_of(body) == 0:
            reply = faulty()
            if reply is not None:
                return reply
        if turn_of(body) == 0:
            return Reply.text("```repl\n" + SUB_CODE + "```", prompt_tokens=100, completion_tokens=20)
        seen_by_model.append([m for m in body["messages"] if m["role"] == "user"][-1]["content"])
        return Reply.text("FINAL(done)", prompt_tokens=100, completion_tokens=5)

    threads_before = threading.active_count()
    containers_before = our_containers(docker_client)
    with FakeOpenAIServer(respond) as server:
        rlm = RLM(
            model="fake-root",
            sub_model="fake-sub",
            base_url=server.base_url,
            api_key=KEY,
            sandbox=True,
            limits=Limits(llm_timeout_s=LLM_TIMEOUT_S, timeout_s=120),
        )
        started = time.monotonic()
        result = rlm.completion("ctx", "q")
        took = time.monotonic() - started
        attempts = {"fake-root": 0, "fake-sub": 0}
        for request in server.requests:
            attempts[request.model] += 1
        rlm.client.close()
    usage = result.usage.models
    shown = "\n".join(seen_by_model) + (result.error or "")
    assert KEY not in shown and KEY not in (result.answer or "")
    assert took < 60, f"{fault} held the completion {took:.1f} s"

    if where == "root turn":
        if transient:
            assert result.stop_reason == "final", result.error
            assert attempts["fake-root"] == 2 + 2, "two faults retried, then two turns"
            assert usage["fake-root"].calls == 2, "retries are one logical call"
        else:
            assert result.stop_reason == "error" and "LMError" in result.error
            assert CLEAR_WORDS[fault] in result.error, result.error
            assert usage["fake-root"].calls == 1 and usage["fake-root"].tokens == 0
            assert "fake-sub" not in usage
    else:
        assert result.stop_reason == "final", result.error
        assert len(seen_by_model) == 1
        assert usage["fake-sub"].calls == 1, "one llm_query is one call, retries included"
        if transient:
            assert "OK sub-answer" in seen_by_model[0]
            assert attempts["fake-sub"] == 3
            assert (usage["fake-sub"].input_tokens, usage["fake-sub"].output_tokens) == (7, 3)
        else:
            assert "ERR" in seen_by_model[0] and CLEAR_WORDS[fault] in seen_by_model[0], seen_by_model[0]
            assert usage["fake-sub"].tokens == 0
        assert usage["fake-root"].calls == 2
    # Nothing left: containers go in the background, threads with them.
    deadline = time.monotonic() + 20
    while (our_containers(docker_client) > containers_before or threading.active_count() > threads_before) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert our_containers(docker_client) <= containers_before
    assert threading.active_count() <= threads_before
