"""Host tools: called by name from sandbox code, validated on the host before they run."""

from __future__ import annotations

import base64
import re
import threading

import pytest

from rlm_sandbox import RLM, Limits, Tool
from rlm_sandbox.errors import ToolDefinitionError
from rlm_sandbox.trajectory import read_trajectory

from .fakes.fake_openai import FakeOpenAIServer, Reply
from .test_rlm import is_root, last_user_message, repl, turn_of

fake_openai = pytest.fixture(lambda: (yield from _server()))


def _server():
    with FakeOpenAIServer() as server:
        yield server


def make_rlm(server, *, tools=None, sub_tools=None, sandbox=False, log_dir=None, **limits) -> RLM:
    return RLM(
        model="fake-root",
        sub_model="fake-sub",
        base_url=server.base_url,
        api_key="test-key",
        sandbox=sandbox,
        limits=Limits(**limits),
        tools=tools,
        sub_tools=sub_tools,
        log_dir=log_dir,
    )


def root_runs(code: str):
    def respond(body: dict) -> Reply:
        if not is_root(body):
            return Reply.text("sub")
        if turn_of(body) == 0:
            return Reply.text(repl(code))
        return Reply.text("FINAL(" + last_user_message(body).splitlines()[1] + ")")

    return respond


class Recorder:
    """Host functions that note every call they receive, with the exact values."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def add(self, a: int, b: int = 1) -> int:
        """Add two integers."""
        with self.lock:
            self.calls.append(("add", a, b))
        assert type(a) is int and type(b) is int  # never reached with anything else
        return a + b

    def secret(self) -> str:
        """Only the root may call this."""
        self.calls.append(("secret",))
        return "s3cret"


def system_prompt_of(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "system")


def test_tools_at_depth_0_and_2_respect_the_grants(fake_openai):
    recorder = Recorder()
    prompts: dict[int, str] = {}

    def respond(body: dict) -> Reply:
        if not is_root(body):
            return Reply.text("sub")
        system = system_prompt_of(body)
        level = int(m.group(1)) if (m := re.search(r"nesting level (\d+)", system)) else 0
        prompts[level] = system
        if turn_of(body) == 0:
            if level < 2:
                return Reply.text(repl("print(rlm_query('go deeper'))"))
            code = "r = add(40, b=2)\ntry:\n    secret()\nexcept NameError:\n    r = f'{r} no-secret'\nprint(r)"
            return Reply.text(repl(code))
        if level == 0:
            return Reply.text(repl("print(secret(), add(1))"))
        return Reply.text("FINAL(" + last_user_message(body).splitlines()[1] + ")")

    def respond_root_final(body: dict) -> Reply:
        if is_root(body) and "nesting level" not in system_prompt_of(body) and turn_of(body) == 2:
            return Reply.text("FINAL(" + last_user_message(body).splitlines()[1] + ")")
        return respond(body)

    fake_openai.set_responder(respond_root_final)
    rlm = make_rlm(fake_openai, tools=[recorder.add, recorder.secret], sub_tools=[recorder.add], max_depth=3)
    result = rlm.completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == "s3cret 2"
    assert ("add", 40, 2) in recorder.calls  # the grandchild's call, at depth 2
    assert recorder.calls.count(("secret",)) == 1  # only the root's
    # Each system prompt lists exactly what that node may call, with signature and doc.
    assert "`add(a: int, b: int = 1) -> int`" in prompts[0] and "Add two integers." in prompts[0]
    assert "secret()" in prompts[0]
    assert "add(a: int" in prompts[2] and "secret" not in prompts[2]


HOSTILE = r"""
import gc, json, time
bridge = next(o for o in gc.get_objects() if type(o).__name__ == 'LLMBridge')
def forged(message):
    answer = bridge._call(dict(message), 'forged')
    if answer.get('error'):
        raise ToolError(answer['error'])
    return answer
out = []
def attempt(label, fn):
    try:
        out.append(f"{label}: ok {fn()!r}")
    except Exception as e:
        out.append(f"{label}: {type(e).__name__}")
attempt('unknown', lambda: forged({'type': 'tool_request', 'name': 'rm_rf', 'args': [], 'kwargs': {}}))
attempt('ill-typed', lambda: add('forty', 2))
attempt('float', lambda: add(1.5, 2))
attempt('extra kwarg', lambda: add(1, 2, shell='rm -rf /'))
attempt('missing', lambda: add())
attempt('forged kwargs', lambda: forged({'type': 'tool_request', 'name': 'add', 'args': [], 'kwargs': {'a': [1], 'b': {'x': 1}}}))
attempt('not json', lambda: add(object()))
attempt('reserved', lambda: forged({'type': 'tool_request', 'name': 'llm_query', 'args': ['x'], 'kwargs': {}}))
attempt('good', lambda: add(2, 3))
print(json.dumps(out))
"""


def test_hostile_tool_calls_fail_in_the_sandbox_and_never_reach_the_function(fake_openai):
    recorder = Recorder()
    fake_openai.set_responder(root_runs(HOSTILE))
    result = make_rlm(fake_openai, tools=[recorder.add]).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    outcomes = dict(line.split(": ", 1) for line in __import__("json").loads(result.answer))
    assert outcomes == {
        "unknown": "ToolError",
        "ill-typed": "ToolError",
        "float": "ToolError",
        "extra kwarg": "ToolError",
        "missing": "ToolError",
        "forged kwargs": "ToolError",
        "not json": "TypeError",
        "reserved": "ToolError",
        "good": "ok 5",
    }
    assert recorder.calls == [("add", 2, 3)]


def test_tool_errors_carry_the_message_not_a_host_traceback(fake_openai):
    def explode(x: str) -> str:
        raise ValueError(f"cannot handle {x}")

    def not_json() -> object:
        return object()

    def huge() -> str:
        return "x" * 2_000_000

    code = (
        "msgs = []\n"
        "for f in (lambda: explode('this'), not_json, huge):\n"
        "    try:\n        f()\n    except ToolError as e:\n        msgs.append(str(e))\n"
        "print(' | '.join(msgs).replace('(', '[').replace(')', ']'))"
    )
    fake_openai.set_responder(root_runs(code))
    result = make_rlm(fake_openai, tools=[explode, not_json, huge]).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert "explode failed: ValueError: cannot handle this" in result.answer
    assert "not JSON-serialisable" in result.answer
    assert "cap is 1,048,576" in result.answer
    assert "Traceback" not in result.answer and "File " not in result.answer


def test_a_hanging_tool_times_out(fake_openai):
    release = threading.Event()

    def hang() -> str:
        release.wait(30)
        return "late"

    code = "import time\nt = time.time()\ntry:\n    hang()\nexcept ToolError as e:\n    print(str(e), round(time.time() - t))"
    fake_openai.set_responder(root_runs(code))
    try:
        result = make_rlm(fake_openai, tools=[Tool(hang, timeout_s=0.5)]).completion("ctx", "q")
    finally:
        release.set()
    assert result.stop_reason == "final", result.error
    assert result.answer.startswith("hang timed out after 0.5 s")


def test_a_flood_of_tool_calls_stops_at_max_tool_calls(fake_openai, tmp_path):
    recorder = Recorder()
    code = (
        "import threading\nres = []\n"
        "def go(i):\n    try:\n        res.append(add(i, 0))\n    except BudgetExceededError:\n        res.append('refused')\n"
        "ts = [threading.Thread(target=go, args=(i,)) for i in range(40)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(res.count('refused'))"
    )
    fake_openai.set_responder(root_runs(code))
    result = make_rlm(fake_openai, tools=[recorder.add], max_tool_calls=5, log_dir=tmp_path).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == "35"
    assert len(recorder.calls) == 5
    events = [e for e in read_trajectory(result.trajectory_path) if e["type"] == "tool_call"]
    assert len(events) == 40 and sum(e["error"] is None for e in events) == 5


def test_tool_calls_in_docker(fake_openai, sandbox_image):
    recorder = Recorder()
    fake_openai.set_responder(root_runs("print(add(20, 22))"))
    result = make_rlm(fake_openai, tools={"add": recorder.add}, sandbox=True).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == "42"


@pytest.mark.parametrize("name", ["llm_query", "context", "FINAL", "print", "open", "class", "_private", "a-b"])
def test_tool_names_cannot_shadow_reserved_names(name):
    with pytest.raises(ToolDefinitionError):
        RLM(model="m", api_key="k", sandbox=False, tools={name: lambda: 1})


def test_sub_tools_only_narrow():
    def a() -> int:
        return 1

    def b() -> int:
        return 2

    with pytest.raises(ToolDefinitionError, match="narrow"):
        RLM(model="m", api_key="k", sandbox=False, tools=[a], sub_tools=[b])


# ------------------------------------------------------------------ images

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize("sandbox", [False, True], ids=["local", "docker"])
def test_images_reach_the_model_as_image_parts(fake_openai, sandbox, request):
    if sandbox:
        request.getfixturevalue("sandbox_image")
    code = (
        "img = context['scan.png']\n"
        "ans = llm_query('what is in this image?', images=[img])\n"
        "try:\n    llm_query('x', images=[b'not an image'])\nexcept ValueError:\n    ans += ' bad-refused'\n"
        "print(type(img).__name__, len(img), ans)"
    )
    fake_openai.set_responder(root_runs(code))
    context = {"scan.png": PNG, "notes": ["a", {"inner": b"\x00\xff raw"}]}
    result = make_rlm(fake_openai, sandbox=sandbox).completion(context, "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == f"bytes {len(PNG)} sub bad-refused"
    sub_requests = [r for r in fake_openai.requests if not is_root(r.body)]
    assert len(sub_requests) == 1
    content = sub_requests[0].body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is in this image?"}
    assert content[1]["type"] == "image_url"
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == PNG


def test_bytes_in_a_context_arrive_raw_at_any_depth():
    from .conftest import make_sandbox

    context = {"a": b"\x00\x01\xff", "list": [1, b"two", {"k": b""}], "3": b"int key"}
    with make_sandbox("local") as sandbox:
        sandbox.load_context(context)
        out = sandbox.execute("print(context['a'], context['list'][1], context['list'][2]['k'], context['3'])")
        assert out.stdout.strip() == "b'\\x00\\x01\\xff' b'two' b'' b'int key'"
        sandbox.load_context(b"\xde\xad")
        assert sandbox.execute("print(context)").stdout.strip() == "b'\\xde\\xad'"


def test_forged_images_are_refused_on_the_host(fake_openai):
    code = (
        "import gc\nbridge = next(o for o in gc.get_objects() if type(o).__name__ == 'LLMBridge')\n"
        "bad = ['https://evil.example/x.png', 'data:image/png;base64,AAAA', 'data:text/html;base64,PGI+']\n"
        "n = 0\nfor url in bad:\n    try:\n"
        "        bridge._call({'type': 'llm_request', 'prompts': ['p'], 'model': None, 'recursive': False, "
        "'images': [[url]]}, 'x')\n"
        "        n += 1\n    except Exception:\n        pass\n"
        "print(n)"
    )
    fake_openai.set_responder(root_runs(code))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    # The forged calls got error answers (a dict with 'error'), and no sub-model call was made.
    assert not [r for r in fake_openai.requests if not is_root(r.body)]


def test_tools_given_to_a_running_sandbox_and_kept_across_a_restart():
    from rlm_sandbox.tools import ToolCalls

    from .conftest import make_sandbox

    def double(x: int) -> int:
        return 2 * x

    tool = Tool(double)
    calls = ToolCalls(max_calls=None, deadline_s=lambda: None, on_call=lambda **event: None)
    with make_sandbox("local") as sandbox:
        sandbox.set_tools([tool.spec()], lambda name, args, kwargs: calls.call(tool, args, kwargs))
        assert sandbox.execute("print(double(21))").stdout.strip() == "42"
        assert "double(x: int) -> int" in sandbox.execute("print(double.__doc__)").stdout
        sandbox.restart()
        assert sandbox.execute("print(double(5))").stdout.strip() == "10"
        assert sandbox.execute("SHOW_VARS()").stdout.strip() == "no variables defined yet"


def test_image_checks_on_the_host():
    from rlm_sandbox.images import MAX_IMAGE_BYTES, ImageError, check_image

    assert check_image("data:image/png;base64," + base64.b64encode(PNG).decode()) == len(PNG)
    too_big = PNG + b"\0" * MAX_IMAGE_BYTES
    for url in (
        "data:image/png;base64," + base64.b64encode(too_big).decode(),
        "data:image/jpeg;base64," + base64.b64encode(PNG).decode(),  # the bytes are a PNG
        "data:image/png;base64,not base64!",
        "data:image/svg+xml;base64,PHN2Zy8+",
        "http://127.0.0.1/x.png",
    ):
        with pytest.raises(ImageError):
            check_image(url)


def test_tool_calls_share_the_max_concurrency_bound(fake_openai):
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(i: int) -> int:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.2)
        with lock:
            state["now"] -= 1
        return i

    code = (
        "import threading\nout = []\n"
        "ts = [threading.Thread(target=lambda i=i: out.append(slow(i))) for i in range(12)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\nprint(sorted(out) == list(range(12)))"
    )
    fake_openai.set_responder(root_runs(code))
    result = make_rlm(fake_openai, tools=[slow], max_concurrency=3).completion("ctx", "q")
    assert result.stop_reason == "final", result.error
    assert result.answer == "True"
    assert state["peak"] == 3
