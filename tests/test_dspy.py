"""SandboxInterpreter: DSPy's CodeInterpreter protocol against real Docker, and dspy.RLM
end to end against the fake OpenAI server (real dspy, real litellm, real HTTP)."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import json
import subprocess
import sys
import threading
import time

import dspy
import pytest
from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
)

from rlm_sandbox.integrations.dspy import SandboxInterpreter
from rlm_sandbox.sandbox.config import SandboxConfig

from .fakes.fake_openai import FakeOpenAIServer, Reply

pytestmark = pytest.mark.docker

fake_openai = pytest.fixture(lambda: (yield from _server()))


def _server():
    with FakeOpenAIServer() as server:
        yield server


def _my_containers(docker_client) -> list[dict]:
    from rlm_sandbox.sandbox.docker import LABEL_OWNER_PID

    return docker_client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})


def _gone(docker_client, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _my_containers(docker_client):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture
def interpreter(sandbox_image, docker_client):
    interp = SandboxInterpreter()
    yield interp
    interp.shutdown()
    assert _gone(docker_client), "shutdown() left a container behind"


# ---------------------------------------------------------------- imports


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)


def test_import_rlm_sandbox_does_not_import_dspy():
    done = _python(
        "import sys, rlm_sandbox; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dspy', 'litellm')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_integration_imports_dspy_without_touching_the_network():
    """LITELLM_LOCAL_MODEL_COST_MAP is set before dspy (and litellm) import; no socket connects."""
    code = (
        "import socket, time\n"
        "attempts = []\n"
        "real = socket.socket.connect\n"
        "def connect(self, address):\n"
        "    attempts.append(address)\n"
        "    raise OSError('no network in this test')\n"
        "socket.socket.connect = connect\n"
        "socket.create_connection = lambda address, *a, **k: (attempts.append(address), connect(None, address))[1]\n"
        "started = time.monotonic()\n"
        "import os, rlm_sandbox.integrations.dspy, litellm\n"
        "print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'], attempts, round(time.monotonic() - started, 1))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    flag, rest = done.stdout.split(" ", 1)
    assert flag == "True"
    assert rest.startswith("[] "), f"network attempted at import: {rest}"
    assert float(rest.split()[-1]) < 60


# ---------------------------------------------------------------- protocol


def test_is_a_dspy_code_interpreter_with_runtime_instructions():
    assert isinstance(SandboxInterpreter(), CodeInterpreter)
    assert "no network" in SandboxInterpreter.execution_instructions
    assert "standard library" in SandboxInterpreter.execution_instructions


def test_factory_carries_options_and_the_instructions_dspy_reads():
    make = SandboxInterpreter.factory(config=SandboxConfig(mem_limit="1g"), exec_timeout_s=5)
    assert make.execution_instructions == SandboxInterpreter.execution_instructions
    made = make()
    assert isinstance(made, SandboxInterpreter) and made.config.mem_limit == "1g" and made.exec_timeout_s == 5
    with pytest.raises(ValueError):
        SandboxInterpreter.factory(exec_timeout_s=0)


def test_variables_state_and_output(interpreter):
    assert interpreter.execute("print('Hello, World!')") == "Hello, World!\n"
    assert interpreter.execute("result = number + 1\nresult", variables={"number": 4}) == 5
    assert interpreter.execute("result * 10") == 50  # state persists across execute()
    assert interpreter.execute("x = 1") is None
    assert interpreter.execute("(a, b, len(c))", variables={"a": (1, 2), "b": {3, 1, 2}, "c": "xyz"}) == [
        [1, 2],
        [1, 2, 3],
        3,
    ]
    assert interpreter.execute("import math\nmath.sqrt(4)") == 2.0
    assert interpreter.execute("object()").startswith("<object object at")  # not JSON: its repr
    # `context` is streamed in as the sandbox's context and stays that value.
    assert interpreter.execute("context[:5]", variables={"context": "hello world"}) == "hello"
    listed = ["a", "b"]
    assert interpreter.execute("type(context).__name__", variables={"context": listed}) == "list"
    sandbox = interpreter.sandbox
    assert sandbox is not None
    sent: list[object] = []
    real_load = sandbox.load_context
    sandbox.load_context = lambda value: (sent.append(value), real_load(value))[1]  # type: ignore[method-assign]
    assert interpreter.execute("context.append('c'); len(context)", variables={"context": listed}) == 3
    assert interpreter.execute("len(context)", variables={"context": "x" * 10}) == 10
    assert interpreter.execute("len(context)", variables={"context": "x" * 10}) == 10  # an equal str: not resent
    assert sent == ["x" * 10]  # the same object and an equal str were not sent again


def test_bad_variables_fail_before_anything_runs(interpreter):
    with pytest.raises(CodeInterpreterError, match="Invalid variable name"):
        interpreter.execute("print(x)", variables={"for": 42})
    with pytest.raises(CodeInterpreterError, match="'thing' cannot cross into the sandbox"):
        interpreter.execute("thing", variables={"thing": object()})
    with pytest.raises(CodeInterpreterError, match="not a str"):
        interpreter.execute("d", variables={"d": {1: "a"}})
    with pytest.raises(CodeInterpreterError, match="function of the sandbox"):
        interpreter.execute("1", variables={"SUBMIT": 1})
    assert interpreter.sandbox is None  # nothing was started for any of them
    assert interpreter.execute("1 + 1") == 2  # and the session is usable


def test_host_tools_including_ones_added_after_start(interpreter):
    calls: list[tuple[str, int]] = []

    def lookup(name: str, limit: int = 10) -> dict:
        """Look a name up on the host."""
        calls.append((name, limit))
        return {"name": name, "limit": limit, "pid": os.getpid()}

    interpreter.tools["lookup"] = lookup
    interpreter.start()
    assert interpreter.execute("r = lookup('ada', limit=3)\nr") == {"name": "ada", "limit": 3, "pid": os.getpid()}
    assert calls == [("ada", 3)]
    interpreter.tools["shout"] = lambda text: text.upper()  # added to DSPy's dict after start
    assert interpreter.execute("shout(text=r['name'])") == "ADA"
    # A tool's failure is a RuntimeError in the code, with the type and message.
    interpreter.tools["boom"] = lambda: 1 / 0
    out = interpreter.execute("try:\n    boom()\nexcept RuntimeError as e:\n    out = str(e)\nout")
    assert "ZeroDivisionError" in out
    # Arguments are validated against the hints on the host before the tool runs.
    out = interpreter.execute("try:\n    lookup(name=['x'])\nexcept RuntimeError as e:\n    out = str(e)\nout")
    assert "lookup: argument name" in out and calls == [("ada", 3)]


def test_async_tools_and_llm_query_see_the_callers_dspy_context(interpreter):
    async def fetch(key: str) -> str:
        return f"async:{key}"

    seen: list[object] = []

    def llm_query(prompt: str) -> str:
        seen.append(dspy.settings.lm)
        return f"sub:{prompt}"

    def llm_query_batched(prompts: list[str]) -> list[str]:
        return [f"batch:{p}" for p in prompts]

    interpreter.tools.update(fetch=fetch, llm_query=llm_query, llm_query_batched=llm_query_batched)
    marker = dspy.LM("openai/marker", api_key="k", cache=False)
    with dspy.context(lm=marker):
        assert interpreter.execute("fetch(key='k')") == "async:k"
        assert interpreter.execute("llm_query('hi')") == "sub:hi"
        assert interpreter.execute("llm_query_batched(['a', 'b'])") == ["batch:a", "batch:b"]
    assert seen == [marker]


def test_submit_is_typed_by_output_fields(interpreter):
    assert interpreter.execute("SUBMIT(['The result is', 7])") == FinalOutput({"output": ["The result is", 7]})
    interpreter.output_fields = [{"name": "answer", "type": "str"}, {"name": "confidence", "type": "float"}]
    interpreter._tools_registered = False  # what dspy.RLM does after setting output_fields
    assert interpreter.execute('SUBMIT(answer="yes", confidence=0.9)') == FinalOutput(
        {"answer": "yes", "confidence": 0.9}
    )
    assert interpreter.execute('print("ignored"); SUBMIT("yes", 1)') == FinalOutput({"answer": "yes", "confidence": 1})
    with pytest.raises(CodeExecutionError, match="missing 1 required positional argument"):
        interpreter.execute("x = 1; SUBMIT(x)")
    with pytest.raises(CodeExecutionError, match="cannot cross to the host"):
        interpreter.execute("SUBMIT({1, 2}, 0.5)")
    interpreter.output_fields = [{"name": "nothing", "type": "NoneType"}]
    assert interpreter.execute("SUBMIT(nothing=None)") == FinalOutput({"nothing": None})  # changes seen unflagged


def test_error_types(interpreter):
    with pytest.raises(SyntaxError, match="Invalid Python syntax"):
        interpreter.execute("+++")
    with pytest.raises(CodeExecutionError, match="ZeroDivisionError") as raised:
        interpreter.execute("print('before'); 1 + 0 / 0")
    assert "1 + 0 / 0" in str(raised.value) and "_rlm_dspy" not in str(raised.value)  # the user's line
    assert "Output before the error:\nbefore" in str(raised.value)
    with pytest.raises(CodeExecutionError, match="SystemExit"):
        interpreter.execute("import sys\nsys.exit(0)")
    with pytest.raises(CodeExecutionError, match="KeyboardInterrupt"):
        interpreter.execute("raise KeyboardInterrupt('stop')")
    with pytest.raises(CodeExecutionError, match="CodeInterpreterError") as raised:
        interpreter.execute("class CodeInterpreterError(Exception):\n    pass\nraise CodeInterpreterError('spoof')")
    assert type(raised.value) is CodeExecutionError
    assert interpreter.execute("print('still alive')") == "still alive\n"


def test_exec_timeout_keeps_state_when_the_code_stops(sandbox_image, docker_client):
    with SandboxInterpreter(exec_timeout_s=1.0) as interp:
        interp.execute("kept = 41")
        with pytest.raises(CodeExecutionError, match="TimeoutError"):
            interp.execute("import time\nwhile True: time.sleep(0.05)")
        assert interp.execute("kept + 1") == 42
    assert _gone(docker_client)


def test_a_killed_container_raises_code_interpreter_error_and_ends_the_session(interpreter, docker_client):
    interpreter.execute("state = 'precious'")
    containers = _my_containers(docker_client)
    assert len(containers) == 1
    docker_client.api.kill(containers[0]["Id"])
    with pytest.raises(CodeInterpreterError) as raised:
        interpreter.execute("print(state)")
    assert not isinstance(raised.value, CodeExecutionError)  # not something the code can fix
    assert _gone(docker_client)  # closed, and no replacement was started
    with pytest.raises(CodeInterpreterError, match="session has ended"):
        interpreter.execute("print(1)")
    with pytest.raises(CodeInterpreterError, match="session has ended"):
        interpreter.start()


def test_context_manager_and_shutdown_leave_no_container(sandbox_image, docker_client):
    with SandboxInterpreter(config=SandboxConfig(mem_limit="256m")) as interp:
        assert interp.execute("1 + 1") == 2
        assert len(_my_containers(docker_client)) == 1
    assert _gone(docker_client)
    interp.shutdown()  # idempotent


# ---------------------------------------------------------------- dspy.RLM end to end


def _chat(**fields: str) -> str:
    """A reply in DSPy's ChatAdapter format."""
    return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items()) + "[[ ## completed ## ]]\n"


def test_dspy_rlm_runs_every_line_in_the_container(fake_openai, sandbox_image, docker_client):
    containers_seen: set[str] = set()
    turns: list[str] = []

    def responder(body: dict) -> Reply:
        text = "\n".join(str(m.get("content")) for m in body["messages"])
        if "[[ ## code ## ]]" not in text:  # an llm_query from the sandbox: a plain prompt
            return Reply.text(f"sub-answer to {body['messages'][-1]['content']!r}")
        containers_seen.update(c["Id"] for c in _my_containers(docker_client))
        turns.append(text)
        if len(turns) == 1:
            code = (
                "```python\n"
                "import socket\n"
                "host = socket.gethostname()\n"
                "sub = llm_query('capital of ' + query)\n"
                "scale = multiplier(n=len(context))\n"
                "print(host, sub, scale)\n"
                "```"
            )
            return Reply.text(_chat(reasoning="Look around first.", code=code))
        return Reply.text(_chat(reasoning="Done.", code="SUBMIT(answer=f'{host}|{sub}|{scale}')"))

    fake_openai.set_responder(responder)
    lm = dspy.LM("openai/fake-root", api_base=fake_openai.base_url, api_key="k", cache=False, num_retries=0)

    def multiplier(n: int) -> int:
        """n times three, computed on the host."""
        return n * 3

    rlm = dspy.RLM("context, query -> answer", max_iters=4, tools=[multiplier], interpreter_factory=SandboxInterpreter)
    with dspy.context(lm=lm):
        result = rlm(context="0123456789", query="France")

    host, sub, scale = result.answer.split("|")
    assert any(cid.startswith(host) for cid in containers_seen), (host, containers_seen)  # ran in our container
    assert sub == "sub-answer to 'capital of France'"
    assert scale == "30"
    assert len(turns) == 2
    assert "Docker container" in turns[0]  # execution_instructions reached the model
    assert host in turns[1]  # the printed output was shown to the model
    assert _gone(docker_client)  # dspy.RLM shut the interpreter down


def test_dspy_facade_predictors_run_on_the_host(fake_openai, sandbox_image, docker_client):
    """`import dspy` in the sandbox gets DSPy's shim; its Predict runs on the host through our tools."""

    def responder(body: dict) -> Reply:
        text = "\n".join(str(m.get("content")) for m in body["messages"])
        if "[[ ## code ## ]]" not in text:
            return Reply.text(_chat(answer="forty-two"))  # the host-side Predict's LM call
        if "forty-two" not in text:
            code = "import dspy\nqa = dspy.Predict('question -> answer')\nprint(qa(question='6*7?').answer)"
            return Reply.text(_chat(reasoning="Use a sub-agent.", code=code))
        return Reply.text(_chat(reasoning="Done.", code="SUBMIT(answer='forty-two')"))

    fake_openai.set_responder(responder)
    lm = dspy.LM("openai/fake-root", api_base=fake_openai.base_url, api_key="k", cache=False, num_retries=0)
    rlm = dspy.RLM("query -> answer", max_iters=3, interpreter_factory=SandboxInterpreter)
    with dspy.context(lm=lm):
        result = rlm(query="what is 6*7?")
    assert result.answer == "forty-two"
    outputs = [step["output"] for step in result.trajectory]
    assert "forty-two" in outputs[0]
    assert _gone(docker_client)


# ---------------------------------------------------------------- DSPy's own interpreter cases
# The inputs and expectations of dspy's tests/primitives/test_python_interpreter.py cases
# that do not depend on Deno, written against this interpreter (see the report in the PR).

DSPY_VALUE_CASES = [
    ("import math\nresult = math.sqrt(4)\nresult", None, 2),
    ("result = 1 if x == float('inf') else 0\nresult", {"x": float("inf")}, 1),
    ("result = 1 if x == float('-inf') else 0\nresult", {"x": float("-inf")}, 1),
    ("import math\nresult = 1 if math.isnan(x) else 0\nresult", {"x": float("nan")}, 1),
    ("x", {"x": (1, 2, 3)}, [1, 2, 3]),
    ("sorted(x)", {"x": {3, 1, 2}}, [1, 2, 3]),
    (
        "data",
        {"data": {"tags": {1, 2, 3}, "coords": (10, 20), "nested": [{"s": {"a", "b"}}]}},
        {"tags": [1, 2, 3], "coords": [10, 20], "nested": [{"s": ["a", "b"]}]},
    ),
    ("f'{small} has {len(small)} chars'", {"small": "hello"}, "hello has 5 chars"),
]


def test_dspy_value_cases(interpreter):
    for code, variables, expected in DSPY_VALUE_CASES:
        assert interpreter.execute(code, variables=variables) == expected, code


def test_dspy_tool_cases(interpreter):
    from pydantic import BaseModel

    class Hit(BaseModel):
        document_id: int
        title: str

    class Custom:
        def __str__(self) -> str:
            return "custom-object"

    interpreter.tools.update(
        search=lambda query, limit=10: f"query={query}, limit={limit}",
        add=lambda a, b, c: f"{a + b + c}",
        get_custom=lambda: Custom(),
        get_nan=lambda: float("nan"),
        get_hits=lambda: [Hit(document_id=1, title="a"), Hit(document_id=2, title="b")],
        get_none=lambda: None,
    )
    assert interpreter.execute('search("hello")') == "query=hello, limit=10"
    assert interpreter.execute('search(query="hello", limit=5)') == "query=hello, limit=5"
    assert interpreter.execute("add(10, 20, c=30)") == "60"
    assert "custom-object" in interpreter.execute("print(get_custom())")
    assert interpreter.execute("type(get_nan()).__name__") == "str"
    assert interpreter.execute("sum(h['document_id'] for h in get_hits())") == 3
    assert interpreter.execute("repr(get_none())") == "None"  # Pyodide gives '' here; None is None


def test_concurrent_execute_is_refused(interpreter):
    interpreter.tools["wait"] = lambda: time.sleep(1.5) or "done"
    interpreter.start()
    errors: list[Exception] = []
    worker = threading.Thread(target=lambda: interpreter.execute("wait()"))
    worker.start()
    time.sleep(0.5)
    try:
        interpreter.execute("1")
    except CodeInterpreterError as exc:
        errors.append(exc)
    worker.join()
    assert errors and "already executing" in str(errors[0])
    assert json.dumps(interpreter.execute("wait()")) == '"done"'


def test_a_context_that_needs_more_memory_never_costs_state_silently(runtime, docker_client):
    """runc grows the container in place (state kept); gVisor cannot, and the replacement
    that loading needs is reported as CodeInterpreterError, never a silent reset."""
    big = "x" * (200 * 1024 * 1024)  # needs more than the default 512 MiB
    interp = SandboxInterpreter(config=SandboxConfig(runtime=runtime))
    try:
        interp.execute("kept = 41")
        if runtime == "runc":
            assert interp.execute("kept + len(context) // len(context)", variables={"context": big}) == 42
        else:
            with pytest.raises(CodeInterpreterError, match="replaced to fit `context`"):
                interp.execute("kept", variables={"context": big})
    finally:
        interp.shutdown()
    assert _gone(docker_client)
