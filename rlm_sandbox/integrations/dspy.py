"""DSPy's `CodeInterpreter`, with every line of model code run in our sandbox.

    import dspy
    from rlm_sandbox.integrations.dspy import SandboxInterpreter

    rlm = dspy.RLM("context, query -> answer", interpreter_factory=SandboxInterpreter)

`dspy.RLM` (and `dspy.Flex`, anything taking an `interpreter_factory`) creates one
`SandboxInterpreter` per call; it runs the model's code in a `DockerSandbox` (no
network, read-only root, no capabilities) and the host keeps the keys:

- `tools` is DSPy's mutable dict of host functions. Each is offered to the sandbox as
  one of our host tools: called by name in the sandbox, run on the host (arguments
  validated against its type hints where it has them), JSON both ways. Entries added
  after `start()` are sent before the next `execute()`.
- `llm_query` / `llm_query_batched`, which `dspy.RLM` puts in `tools`, answer the
  sandbox's built-in functions of those names, so DSPy's sub-LM, budget and
  `dspy.context` settings apply. DSPy's sandbox `dspy` facade (`__dspy_construct__`,
  `__dspy_call__`) is reached the same way: `import dspy` in the sandbox builds
  predictors that run on the host.
- `SUBMIT(...)` returns `FinalOutput`, with the signature `output_fields` gives it.
- Errors in the code raise `CodeExecutionError`, invalid syntax `SyntaxError`; a lost
  sandbox (container killed, out of memory, code that ignores the exec timeout's
  interrupt) raises `CodeInterpreterError` and ends the session: it is never restarted
  behind the caller's back.
- `variables` are injected before each execute(). They must be JSON values, or what
  pydantic turns into JSON values (models, dataclasses, datetimes, enums, tuples and
  sets become dicts, strings and lists); anything else, or a dict with a non-str key,
  raises `CodeInterpreterError` before anything runs. A variable named `context` is
  streamed in as the sandbox's context (memory sized for it, sent again only when a
  different object is passed) and is restored to that value after every exec.

dspy imports litellm, which fetches a model cost map from GitHub at import unless
told not to; this module sets LITELLM_LOCAL_MODEL_COST_MAP=True (unless already set)
before importing dspy, so nothing is fetched.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import dataclasses
import hashlib
import inspect
import json
import keyword
import os
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..contexts import check_context
from ..errors import MissingExtraError, RLMSandboxError, ToolDefinitionError, ToolError
from ..sandbox.base import ExecResult, Sandbox
from ..sandbox.config import SandboxConfig
from ..tools import RESERVED_NAMES, Tool

try:
    from dspy.primitives.code_interpreter import (
        CodeExecutionError,
        CodeInterpreterError,
        FinalOutput,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("rlm_sandbox.integrations.dspy needs DSPy: pip install 'rlm-sandbox[dspy]'") from exc

__all__ = ["SandboxInterpreter"]

# Tools dspy.RLM passes that answer the sandbox's own built-ins rather than becoming tools.
_LLM_TOOLS = ("llm_query", "llm_query_batched")
# Names the interpreter owns in the sandbox.
_OWN_NAMES = frozenset({"SUBMIT", "__builtins__"})
_MARK = "__rlm_dspy__"
_SIMPLE_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "NoneType"}
DEFAULT_TOOL_TIMEOUT_S = 300.0
_SHOW = "_rlm_dspy_show(("

# Defined once per sandbox. SUBMIT and a final bare expression hand their value to the
# host through FINAL (a JSON document with a marker), so it crosses as JSON, not text.
_PRELUDE = f"""
import json as _rlm_dspy_json

class _RLMDspySubmit(BaseException):
    '''SUBMIT's control flow: ends the code; the host returns FinalOutput.'''

def _rlm_dspy_submit(values):
    for _name, _value in values.items():
        try:
            _rlm_dspy_json.dumps(_value)
        except (TypeError, ValueError) as _exc:
            raise TypeError(
                f"SUBMIT({{_name}}=...): a {{type(_value).__name__}} cannot cross to the host; "
                "give JSON values (str, int, float, bool, None, list, dict with str keys)"
            ) from None
    FINAL(_rlm_dspy_json.dumps({{"{_MARK}": "submit", "value": values}}))
    raise _RLMDspySubmit()

def _rlm_dspy_show(value):
    if value is None:
        return
    try:
        text = _rlm_dspy_json.dumps({{"{_MARK}": "value", "value": value}})
    except (TypeError, ValueError):
        text = _rlm_dspy_json.dumps({{"{_MARK}": "repr", "value": repr(value)}})
    FINAL(text)
"""


class SandboxInterpreter:
    """A DSPy `CodeInterpreter` that runs code in an rlm-sandbox sandbox (Docker by default).

    Args:
        tools: host functions callable from the code by name (DSPy's protocol; the
            dict is copied, and the copy, `self.tools`, may be changed at any time).
        output_fields: `[{"name": ..., "type": ...}]`, SUBMIT's parameters; `dspy.RLM`
            sets it. None: `SUBMIT(output)`.
        config: the sandbox's `SandboxConfig` (hardening, image, runtime, limits).
        sandbox: a zero-argument callable returning an unstarted or started `Sandbox`
            (e.g. `SandboxPool.acquire`), used instead of `DockerSandbox(config)`.
        exec_timeout_s: per execute(); None takes `config.exec_timeout_s`. Code that
            runs past it is interrupted (state kept, CodeExecutionError); code that
            ignores the interrupt loses the sandbox (CodeInterpreterError).
        tool_timeout_s: per host call (a tool, or one llm_query); a call past it
            fails in the sandbox with ToolError.

    >>> with SandboxInterpreter(tools={"lookup": lookup}) as interpreter:  # doctest: +SKIP
    ...     interpreter.execute("print(lookup(id=n))", variables={"n": 42})
    """

    execution_instructions = (
        "Code runs as CPython in a locked-down Docker container, not on the host: there is no network at all, "
        "the filesystem is read-only apart from a small /tmp, memory, CPU and processes are limited, and only "
        "the Python standard library is installed (nothing can be pip-installed). Variables, functions and "
        "imports persist across executions. Host tools, llm_query, llm_query_batched and SUBMIT are global "
        "functions that run on the host: only JSON values (str, int, float, bool, None, list, dict) cross as "
        "their arguments and results. Use print() to see values; each execution has a time limit."
    )

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        *,
        config: SandboxConfig | None = None,
        sandbox: Callable[[], Sandbox] | None = None,
        exec_timeout_s: float | None = None,
        tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
    ) -> None:
        if tool_timeout_s <= 0 or (exec_timeout_s is not None and exec_timeout_s <= 0):
            raise ValueError("exec_timeout_s and tool_timeout_s must be positive")
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        # dspy.RLM clears this when it changes tools or output_fields: register again.
        self._tools_registered = False
        self.config = config or SandboxConfig()
        self._make_sandbox = sandbox
        self.exec_timeout_s = exec_timeout_s
        self.tool_timeout_s = float(tool_timeout_s)
        self._sandbox: Sandbox | None = None
        self._ended = False
        self._lock = threading.Lock()
        self._registered: object = None
        self._aliases: dict[str, str] = {}
        self._checked_tools: dict[str, tuple[Callable[..., Any], Tool | None]] = {}
        # (the object given, a key): the same `context` again is not sent again.
        self._context_loaded: tuple[object, str] | None = None
        # The caller's contextvars (dspy.context(lm=...)), copied into each host call.
        self._caller_context = contextvars.copy_context()

    @classmethod
    def factory(cls, **options: Any) -> Callable[[], SandboxInterpreter]:
        """An `interpreter_factory` for dspy.RLM with these options, carrying the
        `execution_instructions` that dspy reads off the factory::

            dspy.RLM(sig, interpreter_factory=SandboxInterpreter.factory(config=SandboxConfig(mem_limit="2g")))
        """
        cls(**options)  # bad options fail here, not at the first call

        def make() -> SandboxInterpreter:
            return cls(**options)

        make.execution_instructions = cls.execution_instructions  # type: ignore[attr-defined]
        return make

    # ------------------------------------------------------------- lifecycle

    @property
    def sandbox(self) -> Sandbox | None:
        """The running sandbox, if any (for inspection; do not execute in it directly)."""
        return self._sandbox

    def start(self) -> None:
        """Start the sandbox (idempotent). After shutdown() or a lost sandbox: CodeInterpreterError."""
        if self._ended:
            raise CodeInterpreterError("this SandboxInterpreter's session has ended; create a new one")
        if self._sandbox is not None:
            return
        if self._make_sandbox is not None:
            sandbox = self._make_sandbox()
        else:
            from ..sandbox.docker import DockerSandbox

            sandbox = DockerSandbox(self.config)
        sandbox.restart_on_failure = False
        sandbox.llm_handler = self._answer_llm_query
        sandbox.rlm_handler = _refuse_rlm_query
        try:
            sandbox.start()
            self._sandbox = sandbox
            self._run_setup(_PRELUDE, "installing SUBMIT")
        except RLMSandboxError as exc:
            self._end()
            sandbox.close()
            raise CodeInterpreterError(f"the sandbox could not start: {exc}") from exc

    def shutdown(self) -> None:
        """Remove the container and end the session. Idempotent."""
        self._ended = True
        self._end()

    def _end(self) -> None:
        self._ended = True
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()

    def __enter__(self) -> SandboxInterpreter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    # ------------------------------------------------------------- execute

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run `code` in the sandbox's persistent namespace, after injecting `variables`.

        Returns FinalOutput if the code called SUBMIT, else the value of a final bare
        expression if it has one (as JSON brings it back; its repr if it is not JSON),
        else the printed output (stdout, then stderr), or None if there was none.
        """
        if not isinstance(code, str):
            raise CodeInterpreterError(f"code must be a str, not {type(code).__name__}")
        if not self._lock.acquire(blocking=False):
            raise CodeInterpreterError("this SandboxInterpreter is already executing code (one execute at a time)")
        try:
            if self._ended:
                raise CodeInterpreterError("this SandboxInterpreter's session has ended; create a new one")
            self._caller_context = contextvars.copy_context()
            context, others = self._encode_variables(variables or {})
            self.start()
            self._register()
            self._inject(context, others)
            result = self._run(_capture_last_expression(code))
            return self._outcome(result)
        finally:
            self._lock.release()

    def _run(self, code: str) -> ExecResult:
        sandbox = self._sandbox
        assert sandbox is not None
        try:
            return sandbox.execute(code, timeout_s=self.exec_timeout_s)
        except RLMSandboxError as exc:
            self._end()
            raise CodeInterpreterError(f"the sandbox was lost and the session ended: {exc}") from exc

    def _run_setup(self, code: str, what: str) -> None:
        result = self._run(code)
        if result.error is not None:
            self._end()
            raise CodeInterpreterError(f"{what} in the sandbox failed: {result.error}")

    def _outcome(self, result: ExecResult) -> Any:
        marked = _marked(result)
        if result.error_type == "_RLMDspySubmit" and marked is not None and marked[0] == "submit":
            return FinalOutput(marked[1])
        if result.error is not None:
            if result.error_type in ("SyntaxError", "IndentationError", "TabError", "ValueError") and not (
                result.error.startswith("Traceback")
            ):
                raise SyntaxError(f"Invalid Python syntax. message: {result.error}")
            output = _printed(result)
            detail = f"\n\nOutput before the error:\n{output}" if output else ""
            raise CodeExecutionError(f"{_unwrapped(result.error)}{detail}")
        if marked is not None and marked[0] in ("value", "repr"):
            return marked[1]
        return _printed(result) or None

    # ------------------------------------------------------------- variables

    def _encode_variables(self, variables: dict[str, Any]) -> tuple[tuple[object, object, str] | None, dict[str, str]]:
        """(`context` as (given, plain, key) or None, {name: JSON text} of the others); raises before anything runs."""
        if not isinstance(variables, dict):
            raise CodeInterpreterError("variables must be a dict of name -> JSON value")
        context: tuple[object, object, str] | None = None
        others: dict[str, str] = {}
        for name, value in variables.items():
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise CodeInterpreterError(f"Invalid variable name: {name!r} (a Python identifier, not a keyword)")
            if name in _OWN_NAMES or name in self.tools or (name in RESERVED_NAMES and name != "context"):
                raise CodeInterpreterError(f"Invalid variable name: {name!r} is a function of the sandbox")
            if name == "context":
                if self._context_loaded is not None and self._context_loaded[0] is value:
                    continue  # the object already loaded (dspy passes the same inputs every iteration)
                plain = _jsonable_variable(name, value)
                context = (value, plain, _context_key(value, plain))
                continue
            plain = _jsonable_variable(name, value)
            try:
                others[name] = json.dumps(plain, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise CodeInterpreterError(f"variable {name!r} cannot cross into the sandbox: {exc}") from None
        return context, others

    def _inject(self, context: tuple[object, object, str] | None, others: dict[str, str]) -> None:
        sandbox = self._sandbox
        assert sandbox is not None
        if context is not None:
            given, plain, key = context
            loaded = self._context_loaded
            if loaded is None or loaded[1] != key or key.startswith("id:"):
                before = getattr(sandbox, "container_id", None)
                try:
                    sandbox.load_context(plain)  # type: ignore[arg-type]
                except RLMSandboxError as exc:
                    self._end()
                    raise CodeInterpreterError(f"the sandbox was lost loading `context`: {exc}") from exc
                if before is not None and getattr(sandbox, "container_id", None) != before:
                    # Growing memory for the context needed a new container (gVisor cannot grow
                    # one in place): the state of the old one is gone, which must not pass silently.
                    self._end()
                    raise CodeInterpreterError(
                        "the sandbox had to be replaced to fit `context` in memory, losing its state; give it "
                        "room from the start with SandboxConfig(mem_limit=...) large enough for the context"
                    )
            self._context_loaded = (given, key)
        if others:
            document = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in others.items()) + "}"
            self._run_setup(f"globals().update(__import__('json').loads({document!r}))", "injecting variables")

    # ------------------------------------------------------------- tools

    def _register(self) -> None:
        """Offer the current `tools` and SUBMIT's signature to the sandbox, if they changed."""
        state = (
            tuple((name, id(fn)) for name, fn in self.tools.items()),
            json.dumps(self.output_fields, sort_keys=True, default=str),
        )
        if self._tools_registered and state == self._registered:
            return
        specs: list[dict[str, str]] = []
        aliases: dict[str, str] = {}
        for name, fn in self.tools.items():
            if name in _LLM_TOOLS:
                continue  # answered through the sandbox's own llm_query / llm_query_batched
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name in _OWN_NAMES:
                raise CodeInterpreterError(f"tool name {name!r} is not usable: a Python identifier, not SUBMIT")
            if name in RESERVED_NAMES:
                raise CodeInterpreterError(f"tool name {name!r} would replace a built-in of the sandbox; rename it")
            wire = name if _wire_name_ok(name) else _alias_for(name, self.tools)
            aliases[wire] = name
            specs.append(self._spec(wire, name, fn))
        sandbox = self._sandbox
        assert sandbox is not None
        self._aliases = aliases
        try:
            sandbox.set_tools(specs, self._answer_tool)
        except (RLMSandboxError, OSError) as exc:
            self._end()
            raise CodeInterpreterError(f"the sandbox was lost while offering tools: {exc}") from exc
        lines = [f"globals()[{name!r}] = {wire}" for wire, name in aliases.items() if wire != name]
        lines.append(_submit_source(self.output_fields))
        self._run_setup("\n".join(lines), "defining SUBMIT and the tools")
        self._registered = state
        self._tools_registered = True

    def _spec(self, wire: str, name: str, fn: Callable[..., Any]) -> dict[str, str]:
        tool = self._checked(name, fn)
        if tool is not None:
            spec = tool.spec()
        else:
            try:
                signature = str(inspect.signature(fn))
            except (TypeError, ValueError):
                signature = "(...)"
            spec = {"signature": signature, "doc": inspect.cleandoc(getattr(fn, "__doc__", None) or "")[:2000]}
        spec["name"] = wire
        return spec

    def _checked(self, name: str, fn: Callable[..., Any]) -> Tool | None:
        """Our Tool for `fn` (arguments validated against its hints), or None when its
        signature is one our tools do not take (*args, **kwargs...): then it is called as is."""
        cached = self._checked_tools.get(name)
        if cached is not None and cached[0] is fn:
            return cached[1]
        tool: Tool | None = None
        # Named as the tool when our rules allow the name (it shows in messages), else neutrally.
        for label in (name, "host_tool"):
            try:
                tool = Tool(fn, name=label)
                break
            except ToolDefinitionError:
                continue
        self._checked_tools[name] = (fn, tool)
        return tool

    def _answer_tool(self, wire: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        """Runs on a host-call worker thread: one tool call from the sandbox, as JSON text."""
        name = self._aliases.get(wire, wire)
        fn = self.tools.get(name)
        if fn is None or name in _LLM_TOOLS:
            raise ToolError(f"there is no tool named {name!r} here; available: {sorted(self.tools)}")
        tool = self._checked(name, fn)
        if tool is not None:
            values = tool.validate(args, kwargs)

            def call() -> Any:
                return fn(**values)
        else:

            def call() -> Any:
                return fn(*args, **kwargs)

        value = self._call_on_host(name, call)
        return _encode_result(name, value)

    def _answer_llm_query(self, prompts: list[str], model: str | None, images: Any = None) -> list[str]:
        if images is not None:
            raise ValueError("images are not supported here: DSPy's llm_query takes a prompt only")
        if model is not None:
            raise ValueError("llm_query(model=...) is not supported here: the RLM's sub_lm answers")
        if len(prompts) == 1 and "llm_query" in self.tools:
            fn = self.tools["llm_query"]
            texts = [self._call_on_host("llm_query", lambda: fn(prompts[0]))]
        elif "llm_query_batched" in self.tools:
            batched = self.tools["llm_query_batched"]
            texts = self._call_on_host("llm_query_batched", lambda: batched(list(prompts)))
        elif "llm_query" in self.tools:
            fn = self.tools["llm_query"]
            texts = [self._call_on_host("llm_query", lambda p=p: fn(p)) for p in prompts]  # type: ignore[misc]
        else:
            raise RuntimeError("no llm_query tool is registered with this interpreter")
        if not isinstance(texts, list) or len(texts) != len(prompts):
            raise TypeError(f"llm_query returned {type(texts).__name__} for {len(prompts)} prompts")
        return [str(text) for text in texts]

    def _call_on_host(self, name: str, call: Callable[[], Any]) -> Any:
        """Run a host call in the caller's contextvars, awaited if it is async, within tool_timeout_s."""
        outcome: dict[str, Any] = {}
        context = self._caller_context.copy()

        def run() -> None:
            try:
                value = call()
                if inspect.isawaitable(value):
                    value = asyncio.run(_awaited(value))
                outcome["value"] = value
            except BaseException as exc:
                outcome["error"] = exc

        # A daemon thread: a call that hangs for ever cannot keep the process alive.
        thread = threading.Thread(target=context.run, args=(run,), name=f"rlm-dspy-{name}", daemon=True)
        thread.start()
        thread.join(self.tool_timeout_s)
        if thread.is_alive():
            raise ToolError(f"{name} timed out after {self.tool_timeout_s:g} s")
        if "error" in outcome:
            exc = outcome["error"]
            raise ToolError(f"{name} failed: {type(exc).__name__}: {exc}")
        return outcome.get("value")


# ----------------------------------------------------------------- helpers


def _refuse_rlm_query(prompts: list[str], model: str | None) -> list[str]:
    raise RuntimeError("rlm_query is not available under DSPy: use llm_query, or dspy.RLM(...) in the code")


async def _awaited(value: Any) -> Any:
    return await value


def _wire_name_ok(name: str) -> bool:
    return name[0].isascii() and name[0].isalpha() and name.isascii() and len(name) <= 64


def _alias_for(name: str, tools: dict[str, Any]) -> str:
    """A protocol-legal name for a tool like `__dspy_call__`; the sandbox binds the real name to it."""
    base = "dspy_tool_" + "".join(c for c in name if c.isascii() and (c.isalnum() or c == "_")).strip("_")
    alias, n = base[:60], 1
    while alias in tools or alias in RESERVED_NAMES:
        n += 1
        alias = f"{base[:56]}_{n}"
    return alias


def _submit_source(output_fields: list[dict[str, Any]] | None) -> str:
    if not output_fields:
        return 'def SUBMIT(output):\n    _rlm_dspy_submit({"output": output})\n'
    parameters, entries = [], []
    for field in output_fields:
        name = field.get("name") if isinstance(field, dict) else None
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise CodeInterpreterError(f"output field name {name!r} is not a Python identifier")
        kind = field.get("type")
        if kind in _SIMPLE_TYPE_NAMES:
            annotation = "type(None)" if kind == "NoneType" else kind
            parameters.append(f"{name}: {annotation}")
        else:
            parameters.append(name)
        entries.append(f"{name!r}: {name}")
    return f"def SUBMIT({', '.join(parameters)}):\n    _rlm_dspy_submit({{{', '.join(entries)}}})\n"


def _capture_last_expression(code: str) -> str:
    """`code` with a final bare expression `e` turned into `_rlm_dspy_show(e)`, in place
    (same lines, so tracebacks still point at the user's lines). Code the host's Python
    cannot parse is sent as it is: the sandbox reports its syntax error, or runs it."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code
    node = tree.body[-1].value
    if node.end_lineno is None or node.end_col_offset is None:
        return code
    lines = code.splitlines(keepends=True)

    def offset(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return sum(len(line) for line in lines[: lineno - 1]) + len(
            lines[lineno - 1].encode("utf-8")[:col].decode("utf-8", "replace")
        )

    start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
    return f"{code[:start]}{_SHOW}{code[start:end]}\n)){code[end:]}"


def _unwrapped(error: str) -> str:
    """A traceback as the user wrote the code: without `_rlm_dspy_show((` (and the position
    markers under that line, which it shifted)."""
    lines: list[str] = []
    shown = False
    for line in error.split("\n"):
        if _SHOW in line:
            lines.append(line.replace(_SHOW, "", 1))
            shown = True
            continue
        if shown and line.strip() and set(line.strip()) <= set("^~"):
            shown = False
            continue
        shown = False
        lines.append(line)
    return "\n".join(lines)


def _marked(result: ExecResult) -> tuple[str, Any] | None:
    if result.final is None:
        return None
    try:
        document = json.loads(result.final)
    except ValueError:
        return None
    if isinstance(document, dict) and set(document) == {_MARK, "value"}:
        return document[_MARK], document["value"]
    return None


def _printed(result: ExecResult) -> str:
    output = result.stdout + result.stderr
    if result.truncated:
        output += f"\n[output truncated: {result.stdout_bytes + result.stderr_bytes:,} bytes in all]\n"
    return output


def _jsonable_variable(name: str, value: Any) -> Any:
    """A variable as JSON values: pydantic's JSON mode for models, dataclasses, datetimes,
    enums, tuples and sets; CodeInterpreterError for anything else."""
    try:
        plain = to_jsonable_python(_plain(value, str_keys=True))
    except PydanticSerializationError as exc:
        raise CodeInterpreterError(
            f"variable {name!r} cannot cross into the sandbox ({type(value).__name__}: {exc}); "
            "pass JSON values: str, int, float, bool, None, list, dict with str keys"
        ) from None
    except CodeInterpreterError as exc:
        raise CodeInterpreterError(f"variable {name!r}: {exc}") from None
    try:
        # check_context judges a whole context; any other variable is judged as an item of one.
        check_context(plain if name == "context" else [plain])
    except RLMSandboxError as exc:
        raise CodeInterpreterError(f"variable {name!r} cannot cross into the sandbox: {exc}") from None
    if name != "context" and _holds_bytes(plain):
        raise CodeInterpreterError(f"variable {name!r} holds bytes, which only the `context` variable may carry")
    return plain


def _plain(value: Any, *, str_keys: bool = False) -> Any:
    """Models, dataclasses and namedtuples as dicts (field names kept), sets sorted where they can be.

    `str_keys`: a dict key that is not a str raises (JSON would silently make `1` into `"1"`)."""
    if isinstance(value, BaseModel):
        try:
            return value.model_dump(mode="json")
        except PydanticSerializationError as exc:
            raise CodeInterpreterError(f"Unable to serialize {type(value).__name__} as JSON: {exc}") from None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        if str_keys:
            for key in value:
                if not isinstance(key, str):
                    raise CodeInterpreterError(
                        f"a dict key {key!r} is a {type(key).__name__}, not a str; JSON would turn it into a str "
                        "(convert it first, e.g. {str(k): v for k, v in d.items()})"
                    )
        return {k: _plain(v, str_keys=str_keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, str_keys=str_keys) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_plain(v, str_keys=str_keys) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    return value


def _holds_bytes(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, dict):
        return any(_holds_bytes(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_bytes(v) for v in value)
    return False


def _context_key(given: object, plain: object) -> str:
    """What says a `context` is the one already loaded: a str's hash (an equal str is not
    sent again), else the object's identity (kept referenced, so its id is not reused)."""
    if isinstance(plain, str):
        return "str:" + hashlib.blake2b(plain.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"id:{id(given)}"


def _encode_result(name: str, value: Any) -> str:
    """A tool's result as JSON text: pydantic's JSON mode for models, dataclasses and the
    like; a model that cannot be serialised is an error; anything else not JSON becomes str()."""
    if isinstance(value, BaseModel):
        try:
            value = value.model_dump(mode="json")
        except PydanticSerializationError as exc:
            raise ToolError(
                f"{name} failed: CodeInterpreterError: Unable to serialize {type(value).__name__} as JSON: {exc}"
            ) from None
    try:
        plain = to_jsonable_python(_plain(value))
        return json.dumps(plain, ensure_ascii=False, allow_nan=False)
    except (PydanticSerializationError, CodeInterpreterError, TypeError, ValueError):
        return json.dumps(str(value), ensure_ascii=False)
