"""Sandbox code that writes its own frames to the protocol descriptor.

Code in the sandbox can reach everything the server can, so it can always forge a
frame. What must hold: the host neither crashes nor hangs, accepts nothing it would not
accept from the server itself, and ends up with a fresh, working sandbox.
"""

from __future__ import annotations

import time

import pytest

from .conftest import make_sandbox

# Finds the server's channel the way an attacker would, through the garbage collector.
WRITE_RAW = (
    "import gc, os\n"
    "channel = next(o for o in gc.get_objects() if type(o).__name__ == 'Channel')\n"
    "def raw(data):\n"
    "    os.write(channel.write_fd, data)\n"
    "def frame(body):\n"
    "    raw(len(body).to_bytes(4, 'big') + body)\n"
)

FORGERIES = {
    "not json": "frame(b'this is not json')",
    "non-utf8": 'frame(b\'{"type": "ready", "version": "\\xff\\xfe"}\')',
    "oversized header": "raw(b'\\xff\\xff\\xff\\xff' + b'x' * 100)",
    "unknown type": 'frame(b\'{"type": "become_root"}\')',
    "ready again": 'frame(b\'{"type": "ready", "version": "1"}\')',
    "result for another exec": 'frame(b\'{"type": "exec_result", "id": 999999}\')',
    "request for another exec": ('frame(b\'{"type": "llm_request", "id": 1, "exec_id": 0, "prompts": ["x"]}\')'),
    "request claiming a depth": (
        "import json\n"
        "frame(json.dumps({'type': 'llm_request', 'id': 7, 'exec_id': channel_exec_id(), "
        "'prompts': ['x'], 'recursive': True, 'depth': 0}).encode())"
    ),
    "wrong field types": (
        "import json\n"
        "frame(json.dumps({'type': 'llm_request', 'id': 'seven', 'exec_id': channel_exec_id(), "
        "'prompts': 'not a list'}).encode())"
    ),
    "truncated then exit": "raw((1000).to_bytes(4, 'big') + b'{\"type\"')\nos._exit(0)",
}

CHANNEL_EXEC_ID = (
    "def channel_exec_id():\n"
    "    bridge = next(o for o in gc.get_objects() if type(o).__name__ == 'LLMBridge')\n"
    "    return bridge.exec_id\n"
)


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_frame_ends_the_sandbox_cleanly(sandbox_kind, forgery):
    calls = []

    def handler(prompts, model):
        calls.append(prompts)
        return ["answer"] * len(prompts)

    with make_sandbox(sandbox_kind, llm_handler=handler) as sandbox:
        sandbox.load_context("ctx")
        sandbox.execute("precious = 1")
        started = time.monotonic()
        result = sandbox.execute(WRITE_RAW + CHANNEL_EXEC_ID + FORGERIES[forgery] + "\nimport time\ntime.sleep(5)")
        assert time.monotonic() - started < 30, "the host must not hang on a forged frame"
        assert result.restarted, result
        assert result.error_type in ("ProtocolError", "SandboxDied")
        assert calls == [], "no forged request reaches the model"
        # A fresh sandbox: the old variables are gone, the context is back, it works.
        assert "NameError" in sandbox.execute("precious").error
        assert sandbox.execute("context").stdout == "'ctx'\n"


def test_forged_request_for_this_exec_is_just_another_budgeted_call(sandbox_kind):
    """A well-formed request from sandbox code is indistinguishable from llm_query: it
    goes through the same handler (where the host's budget applies) and nothing more."""
    calls = []

    def handler(prompts, model):
        calls.append((prompts, model))
        return ["ok"] * len(prompts)

    with make_sandbox(sandbox_kind, llm_handler=handler) as sandbox:
        code = (
            WRITE_RAW + CHANNEL_EXEC_ID + "import json\n"
            "frame(json.dumps({'type': 'llm_request', 'id': 10**6, 'exec_id': channel_exec_id(), "
            "'prompts': ['forged'], 'model': 'm', 'recursive': False}).encode())\n"
            "import time\ntime.sleep(0.5)\n"
            "print('still here')"
        )
        result = sandbox.execute(code)
        assert result.error is None and result.stdout == "still here\n"
        assert calls == [(["forged"], "m")]
