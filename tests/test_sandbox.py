"""REPL behaviour, the same whether the server runs locally, under runc or under gVisor."""

from __future__ import annotations

import pytest

from rlm_sandbox.errors import BudgetExceededError, SandboxClosedError
from rlm_sandbox.sandbox.config import SandboxConfig

from .conftest import make_sandbox


def upper_handler(prompts: list[str], model: str | None) -> list[str]:
    return [f"{model or 'default'}:{prompt.upper()}" for prompt in prompts]


@pytest.fixture
def sandbox(sandbox_kind):
    with make_sandbox(sandbox_kind, llm_handler=upper_handler) as sb:
        yield sb


def test_state_persists_across_execs(sandbox):
    assert sandbox.execute("x = 41").ok
    assert sandbox.execute("def bump(v):\n    return v + 1").ok
    result = sandbox.execute("print(bump(x))")
    assert result.stdout == "42\n"
    assert result.error is None


def test_last_expression_is_displayed_like_a_repl(sandbox):
    assert sandbox.execute("y = [1, 2]\ny + [3]").stdout == "[1, 2, 3]\n"
    assert sandbox.execute("None").stdout == ""
    assert sandbox.execute("'text'").stdout == "'text'\n"
    # An expression that is not last is not displayed.
    assert sandbox.execute("1 + 1\nz = 3").stdout == ""


def test_runtime_error_has_type_message_and_user_traceback(sandbox):
    result = sandbox.execute("def f():\n    return {}['missing']\n\nf()")
    assert result.error_type == "KeyError"
    assert "KeyError: 'missing'" in result.error
    assert "<cell-" in result.error and "return {}['missing']" in result.error
    assert "repl_server" not in result.error, "the server's own frames are trimmed away"


def test_syntax_error_is_reported_clearly(sandbox):
    result = sandbox.execute("for x in range(3) print(x)")
    assert result.error_type == "SyntaxError"
    assert "SyntaxError" in result.error
    assert "line 1" in result.error
    # Nothing ran, and the sandbox is fine.
    assert sandbox.execute("1 + 1").stdout == "2\n"


def test_reserved_names_are_restored_after_each_exec(sandbox):
    sandbox.load_context("the context")
    result = sandbox.execute("context = 'overwritten'; llm_query = None; FINAL = print")
    assert result.ok
    assert sandbox.execute("context").stdout == "'the context'\n"
    assert sandbox.execute("llm_query('q')").stdout == "'default:Q'\n"


def test_stdout_stderr_and_child_processes_are_captured(sandbox):
    code = (
        "import os, subprocess, sys\n"
        "print('from print')\n"
        "print('to stderr', file=sys.stderr)\n"
        "os.system('echo from-shell')\n"
        "subprocess.run(['sh', '-c', 'echo child-err >&2'])\n"
        "written = os.write(1, b'raw fd write\\n')\n"
    )
    result = sandbox.execute(code)
    assert result.error is None
    assert result.stdout.splitlines() == ["from print", "from-shell", "raw fd write"]
    assert "to stderr" in result.stderr and "child-err" in result.stderr


def test_output_over_the_cap_is_marked_truncated(sandbox_kind):
    config = SandboxConfig(max_output_bytes=10_000)
    with make_sandbox(sandbox_kind, config) as sandbox:
        result = sandbox.execute("print('x' * 50_000)")
        assert result.truncated
        assert result.stdout_bytes == 50_001
        assert len(result.stdout.encode()) <= 10_000
        small = sandbox.execute("print('ok')")
        assert not small.truncated and small.stdout == "ok\n", "each exec starts with empty capture"


def test_sleep_forever_times_out_and_state_is_kept(sandbox):
    sandbox.execute("kept = 'yes'")
    result = sandbox.execute("import time\ntime.sleep(10**9)", timeout_s=1)
    assert result.timed_out
    assert not result.restarted
    assert "TimeoutError" in result.error and "KeyboardInterrupt" in result.error
    assert sandbox.execute("kept").stdout == "'yes'\n"


def test_busy_loop_times_out_and_sandbox_stays_usable(sandbox):
    result = sandbox.execute("while True:\n    pass", timeout_s=1)
    assert result.timed_out
    assert sandbox.execute("2 * 21").stdout == "42\n"


def test_code_that_ignores_sigint_gets_the_sandbox_replaced(sandbox_kind):
    config = SandboxConfig(interrupt_grace_s=0.5)
    with make_sandbox(sandbox_kind, config) as sandbox:
        sandbox.load_context("ctx")
        sandbox.execute("lost = 1")
        result = sandbox.execute(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass", timeout_s=1
        )
        assert result.timed_out and result.restarted
        assert "variables were lost" in result.error and "context was reloaded" in result.error
        assert "NameError" in sandbox.execute("lost").error
        assert sandbox.execute("context").stdout == "'ctx'\n"


def test_crash_restarts_with_a_clear_error(sandbox):
    sandbox.load_context(["a", "b"])
    result = sandbox.execute("import os\nos._exit(7)")
    assert result.restarted
    assert result.error_type == "SandboxDied"
    assert "exited with code 7" in result.error
    assert sandbox.execute("context").stdout == "['a', 'b']\n"


def test_llm_query_and_batched_round_trip(sandbox):
    assert sandbox.execute("llm_query('hello')").stdout == "'default:HELLO'\n"
    assert sandbox.execute("llm_query('hi', model='small')").stdout == "'small:HI'\n"
    result = sandbox.execute("llm_query_batched(['a', 'b', 'c'])")
    assert result.stdout == "['default:A', 'default:B', 'default:C']\n"


def test_batched_query_is_one_handler_call(sandbox_kind):
    calls = []

    def recording_handler(prompts, model):
        calls.append(list(prompts))
        return prompts

    with make_sandbox(sandbox_kind, llm_handler=recording_handler) as sandbox:
        sandbox.execute("llm_query_batched([str(i) for i in range(20)])")
    assert calls == [[str(i) for i in range(20)]]


def test_handler_error_surfaces_as_python_exception_in_sandbox(sandbox_kind):
    def failing_handler(prompts, model):
        raise RuntimeError("upstream model is down")

    with make_sandbox(sandbox_kind, llm_handler=failing_handler) as sandbox:
        result = sandbox.execute("try:\n    llm_query('q')\nexcept LLMQueryError as exc:\n    print('caught:', exc)")
        assert result.stdout == "caught: RuntimeError: upstream model is down\n"
        uncaught = sandbox.execute("llm_query('q')")
        assert uncaught.error_type == "LLMQueryError"
        assert "upstream model is down" in uncaught.error


def test_budget_error_keeps_its_class_inside_the_sandbox(sandbox_kind):
    def spent(prompts, model):
        raise BudgetExceededError("max_llm_calls=3 reached")

    with make_sandbox(sandbox_kind, llm_handler=spent) as sandbox:
        result = sandbox.execute("llm_query('q')")
        assert result.error_type == "BudgetExceededError"
        assert "max_llm_calls=3" in result.error


def test_rlm_query_uses_the_recursive_handler_when_given(sandbox_kind):
    def child(prompts, model):
        return [f"child:{p}" for p in prompts]

    with make_sandbox(sandbox_kind, llm_handler=upper_handler, rlm_handler=child) as sandbox:
        assert sandbox.execute("rlm_query('x')").stdout == "'child:x'\n"
        assert sandbox.execute("rlm_query_batched(['y'])").stdout == "['child:y']\n"
        assert sandbox.execute("llm_query('z')").stdout == "'default:Z'\n"
    with make_sandbox(sandbox_kind, llm_handler=upper_handler) as sandbox:
        assert sandbox.execute("rlm_query('x')").stdout == "'default:X'\n", "falls back to a plain call"


def test_final_and_final_var(sandbox):
    assert sandbox.execute("FINAL('answer (with parens)')").final == "answer (with parens)"
    assert sandbox.execute("result = 6 * 7\nFINAL_VAR('result')").final == "42"
    missing = sandbox.execute("FINAL_VAR('nope')")
    assert missing.final is None
    assert "no variable named 'nope'" in missing.error
    assert sandbox.execute("x = 1").final is None, "a final answer is per exec"


def test_show_vars_lists_user_variables_only(sandbox):
    sandbox.execute("import json\nalpha = 1\nbeta = 'b'")
    out = sandbox.execute("SHOW_VARS()").stdout
    assert "'alpha': 'int'" in out and "'beta': 'str'" in out
    assert "json" not in out and "llm_query" not in out


@pytest.mark.parametrize(
    "context, shown",
    [
        ("plain text", "'plain text'"),
        (["one", "two"], "['one', 'two']"),
        ({"k": [1, 2]}, "{'k': [1, 2]}"),
        ("", "''"),
        ("ünïcödé ✓", "'ünïcödé ✓'"),
    ],
)
def test_context_types_round_trip(sandbox, context, shown):
    sandbox.load_context(context)
    assert sandbox.execute("context").stdout == shown + "\n"


def test_context_must_be_str_list_or_dict(sandbox):
    with pytest.raises(TypeError, match="context must be"):
        sandbox.load_context(42)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        sandbox.load_context({"k": object()})


def test_100_mb_context_loads(sandbox):
    line = "lorem ipsum dolor sit amet 0123456789\n"
    context = line * (100_000_000 // len(line))
    sandbox.load_context(context)
    result = sandbox.execute("len(context), context[:11], context.count('\\n')")
    assert result.stdout == f"({len(context)}, 'lorem ipsum', {context.count(chr(10))})\n"


def test_use_after_close_is_a_clear_error(sandbox_kind):
    sandbox = make_sandbox(sandbox_kind)
    sandbox.start()
    sandbox.close()
    with pytest.raises(SandboxClosedError):
        sandbox.execute("1")
