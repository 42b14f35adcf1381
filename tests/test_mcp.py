"""`rlm-sandbox mcp`: the official MCP SDK's client drives the server over stdio (issue #12).

The server is a real subprocess, its model is the fake OpenAI server over HTTP, and
its code runs in a real Docker sandbox. The path and limit rules are also checked
directly, where every edge can be reached.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from rlm_sandbox.errors import ContextTooLargeError, PathNotAllowedError
from rlm_sandbox.integrations.mcp import ContextRoots, ToolLimits, clamp_limits
from rlm_sandbox.limits import Limits

from .fakes.fake_openai import FakeOpenAIServer, Reply

mcp = pytest.importorskip("mcp", reason="pip install 'rlm-sandbox[mcp]'")


def _turn_of(body: dict) -> int:
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


def _model(body: dict) -> Reply:
    # Turn 1 reads the context in the sandbox; turn 2 answers from what it printed.
    if "PLEASE FAIL" in json.dumps(body):
        return Reply.error(400, message="scripted bad request")
    if _turn_of(body) == 0:
        return Reply.text("Let me look.\n```repl\nprint(context.split()[-1])\n```")
    return Reply.text("FINAL(green)")


def _mcp_child_pids() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"mcp" in cmdline and b"rlm_sandbox.cli" in cmdline:
                pids.append(int(pid))
    return pids


async def _session_run(server_args: list[str], env: dict[str, str], script) -> None:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "rlm_sandbox.cli", "mcp", *server_args], env=env)
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await script(session)


@pytest.mark.docker
def test_mcp_client_lists_calls_gets_progress_and_is_refused_outside_the_roots(tmp_path, sandbox_image, docker_client):
    from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID

    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("The blue house has a door painted green")
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the model")
    (root / "escape.txt").symlink_to(outside)

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = "server-own-key"  # the only key the server may use
    seen: dict = {}

    async def script(session) -> None:
        seen["pids"] = _mcp_child_pids()
        tools = (await session.list_tools()).tools
        seen["tools"] = {tool.name: tool for tool in tools}
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        seen["ok"] = await session.call_tool(
            "rlm_complete",
            {"query": "What colour is the door?", "context_path": "notes.txt", "limits": {"max_iterations": 50}},
            progress_callback=on_progress,
        )
        seen["progress"] = progress
        seen["outside"] = await session.call_tool("rlm_complete", {"query": "q", "context_path": str(outside)})
        seen["symlink"] = await session.call_tool("rlm_complete", {"query": "q", "context_path": "escape.txt"})
        seen["dotdot"] = await session.call_tool("rlm_complete", {"query": "q", "context_path": "../secret.txt"})
        seen["both"] = await session.call_tool(
            "rlm_complete", {"query": "q", "context_text": "a", "context_path": "notes.txt"}
        )
        seen["extra"] = await session.call_tool(
            "rlm_complete", {"query": "q", "context_text": "a", "limits": {"api_key": "sk-caller"}}
        )
        seen["failed"] = await session.call_tool("rlm_complete", {"query": "PLEASE FAIL", "context_text": "a"})

    with FakeOpenAIServer(_model) as fake:
        args = ["--root", str(root), "--model", "fake-root", "--base-url", fake.base_url, "--max-iterations", "3"]
        anyio.run(_session_run, args, env, script)
        requests = fake.requests

    tool = seen["tools"]["rlm_complete"]
    assert set(tool.input_schema["properties"]) >= {"query", "context_text", "context_path", "limits"}
    assert "api_key" not in json.dumps(tool.input_schema) and "base_url" not in json.dumps(tool.input_schema)

    ok = seen["ok"]
    assert not ok.is_error, ok.content
    summary = ok.structured_content
    assert summary["answer"] == "green" and summary["stop_reason"] == "final"
    assert summary["limits"]["max_iterations"] == 3, "a caller's 50 is clamped to the server's --max-iterations 3"
    assert summary["usage"]["total"]["calls"] == 2
    # The sandbox really read the file: the model's second turn saw its last word.
    assert "green" in json.dumps(requests[1].messages[-1])
    auth = [{k.lower(): v for k, v in r.headers.items()}.get("authorization") for r in requests]
    assert auth == ["Bearer server-own-key"] * len(requests), auth
    assert all(r.model == "fake-root" for r in requests)

    messages = [m for _, _, m in seen["progress"]]
    values = [v for v, _, _ in seen["progress"]]
    assert len(values) >= 4 and values == sorted(values) and len(set(values)) == len(values), seen["progress"]
    assert any("model turn 1" in (m or "") for m in messages) and any("code block ran" in (m or "") for m in messages)
    assert messages[-1] == "done: final"

    for name in ("outside", "symlink", "dotdot"):
        refused = seen[name]
        assert refused.is_error, name
        assert "outside the directories this server may read" in refused.content[0].text, name
        assert "not for the model" not in refused.content[0].text
    assert seen["both"].is_error and "exactly one of" in seen["both"].content[0].text
    assert seen["extra"].is_error, "limits accept only limit fields"
    failed = seen["failed"]
    assert failed.is_error and "the run failed" in failed.content[0].text and "HTTP 400" in failed.content[0].text
    assert len(requests) == 3, "refused calls never reach the model; the failing one made one request"

    assert len(seen["pids"]) == 1
    left = docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={seen['pids'][0]}"})
    assert not left, f"the MCP server left containers: {[c['Id'][:12] for c in left]}"


def test_mcp_server_without_a_key_or_url_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "rlm_sandbox.cli", "mcp", "--root", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 1
    assert "OPENAI_API_KEY" in done.stderr and done.stdout == ""


# ------------------------------------------------------------------ the rules, directly


def test_limits_are_clamped_to_the_servers_maxima():
    maxima = Limits(max_iterations=5, max_depth=2, max_cost_usd=1.0, timeout_s=60)
    applied = clamp_limits(ToolLimits(max_iterations=500, max_cost_usd=0.5, timeout_s=1e9, max_llm_calls=7), maxima)
    assert (applied.max_iterations, applied.max_cost_usd, applied.timeout_s) == (5, 0.5, 60)
    assert applied.max_llm_calls == 7, "where the server sets no maximum a caller may still tighten"
    assert applied.max_depth == 2 and clamp_limits(None, maxima) == maxima
    with pytest.raises(ValueError):
        ToolLimits(max_iterations=0)
    with pytest.raises(ValueError):
        ToolLimits(api_key="sk-from-the-caller")


def test_context_roots_follow_symlinks_and_refuse_what_lies_outside(tmp_path):
    root, other = tmp_path / "root", tmp_path / "other"
    (root / "sub").mkdir(parents=True)
    other.mkdir()
    (root / "sub" / "a.txt").write_text("inside")
    (root / "data.json").write_text('{"k": [1, 2]}')
    (other / "b.txt").write_text("outside")
    (root / "link-out").symlink_to(other)
    (root / "link-in").symlink_to(root / "sub")
    roots = ContextRoots([root])

    assert roots.read("sub/a.txt", 100) == "inside"
    assert roots.read(str(root / "link-in" / "a.txt"), 100) == "inside", "a symlink that stays inside is fine"
    assert roots.read("data.json", 100) == {"k": [1, 2]}
    for path in ("link-out/b.txt", str(other / "b.txt"), "../other/b.txt", "/etc/passwd"):
        with pytest.raises(PathNotAllowedError, match="outside"):
            roots.read(path, 100)
    with pytest.raises(PathNotAllowedError, match="cannot be read"):
        roots.read("missing.txt", 100)
    with pytest.raises(PathNotAllowedError, match="regular file"):
        roots.read("sub", 100)
    os.mkfifo(root / "fifo")
    with pytest.raises(PathNotAllowedError, match="regular file"):
        roots.read("fifo", 100)
    with pytest.raises(ContextTooLargeError, match="up to 3"):
        roots.read("sub/a.txt", 3)
    with pytest.raises(PathNotAllowedError, match="not a directory"):
        ContextRoots([root / "sub" / "a.txt"])


def _listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port`, from /proc/net/tcp{,6} (state 0A = LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_mcp_over_streamable_http_listens_on_loopback_only(tmp_path):
    import socket
    import subprocess
    import time

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "rlm_sandbox.cli", "mcp", "--http", "--port", str(port), "--root", str(tmp_path),
         "--base-url", "http://127.0.0.1:9/v1"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _listening_addresses(port):
            assert server.poll() is None and time.monotonic() < deadline, "the HTTP server did not start"
            time.sleep(0.2)
        assert _listening_addresses(port) == {"0100007F"}, "bound to 127.0.0.1 and nothing else"

        async def script() -> tuple[list[str], object]:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    names = [tool.name for tool in (await session.list_tools()).tools]
                    refused = await session.call_tool("rlm_complete", {"query": "q", "context_path": "/etc/passwd"})
                    return names, refused

        names, refused = anyio.run(script)
        assert names == ["rlm_complete"]
        assert refused.is_error and "outside the directories" in refused.content[0].text
    finally:
        server.terminate()
        server.wait(timeout=30)
