"""Host tools: Python callables on the host that sandbox code calls by name.

A tool runs on the host, with the host's access, so what reaches it must be exactly
what its signature promises. Every call arrives as a `tool_request` frame of JSON
values; before the function runs, the arguments are bound to its signature and each
one is validated with pydantic against its type hint (a parameter without a hint
takes any JSON value). Anything else is refused with a ToolError inside the sandbox,
and the function never sees it.

The result must be JSON-serialisable (pydantic models and dataclasses are, through
pydantic) and at most `max_result_bytes` long. A tool that raises reaches sandbox code
as `ToolError` with the exception's class and message, never a host traceback. A tool
that runs past its timeout is abandoned (a Python thread cannot be killed: it runs on
in the background, but the caller gets a ToolError and its slot is freed); each such
thread was also a counted call, so `Limits.max_tool_calls` bounds how many can pile up.
"""

from __future__ import annotations

import builtins
import inspect
import json
import keyword
import re
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from .errors import BudgetExceededError, ToolDefinitionError, ToolError

# Names sandbox code already uses; a tool may never replace one of them.
RESERVED_NAMES = frozenset(
    {
        "context",
        "llm_query",
        "llm_query_batched",
        "rlm_query",
        "rlm_query_batched",
        "FINAL",
        "FINAL_VAR",
        "SHOW_VARS",
        "LLMQueryError",
        "BudgetExceededError",
        "ToolError",
        "RequestTooLargeError",
    }
)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
DEFAULT_TOOL_TIMEOUT_S = 60.0
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
_ACCEPTED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class Tool:
    """One host tool. Pass plain functions to `RLM(tools=...)`, or a `Tool` to set its
    name, timeout or result cap::

        def lookup(customer_id: int) -> dict: ...
        RLM(tools=[lookup, Tool(slow_search, timeout_s=120)])

    (A plain class rather than a pydantic model: it holds a callable, and a bad name
    must raise ToolDefinitionError, not a wrapped validation error.)
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str = "",
        timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"a tool must be callable, not {type(fn).__name__}")
        if not timeout_s > 0 or max_result_bytes <= 0:
            raise ToolDefinitionError("a tool's timeout_s and max_result_bytes must be positive")
        self.fn = fn
        self.timeout_s = float(timeout_s)
        self.max_result_bytes = int(max_result_bytes)
        name = name or getattr(fn, "__name__", "")
        if not _NAME.match(name) or keyword.iskeyword(name):
            raise ToolDefinitionError(
                f"tool name {name!r} is not usable: letters, digits and _, starting with a letter, up to 64"
            )
        if name in RESERVED_NAMES or hasattr(builtins, name):
            raise ToolDefinitionError(f"tool name {name!r} would shadow a built-in of the sandbox; rename it")
        self.name = name
        try:
            signature = inspect.signature(fn)
            hints = typing.get_type_hints(fn)
        except (TypeError, ValueError, NameError) as exc:
            raise ToolDefinitionError(f"tool {name!r}: cannot read its signature and type hints: {exc}") from None
        adapters: dict[str, TypeAdapter[Any]] = {}
        for parameter in signature.parameters.values():
            if parameter.kind not in _ACCEPTED_KINDS:
                raise ToolDefinitionError(
                    f"tool {name!r}: parameter {parameter.name!r} is {parameter.kind.description}; "
                    "tools take named parameters only (no positional-only, *args or **kwargs)"
                )
            try:
                adapters[parameter.name] = TypeAdapter(hints.get(parameter.name, Any))
            except Exception as exc:
                raise ToolDefinitionError(f"tool {name!r}: parameter {parameter.name!r}: {exc}") from None
        # Shown with the hints resolved: `x: int`, not the string `x: 'int'` of postponed annotations.
        empty = inspect.Signature.empty
        self._signature = signature.replace(
            parameters=[p.replace(annotation=hints.get(p.name, empty)) for p in signature.parameters.values()],
            return_annotation=hints.get("return", empty),
        )
        self._adapters = adapters

    def renamed(self, name: str) -> Tool:
        return Tool(self.fn, name=name, timeout_s=self.timeout_s, max_result_bytes=self.max_result_bytes)

    def __repr__(self) -> str:
        return f"Tool({self.name}{self.signature}, timeout_s={self.timeout_s:g})"

    @property
    def signature(self) -> str:
        return str(self._signature)

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "")

    def spec(self) -> dict[str, str]:
        """What the sandbox and the system prompt are told about this tool."""
        return {"name": self.name, "signature": self.signature, "doc": self.doc[:2000]}

    def validate(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments, bound and validated, or ToolError. Never runs the tool."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ToolError(f"{self.name}{self.signature}: {exc}") from None
        values: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            try:
                values[key] = self._adapters[key].validate_python(value)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in (key, *first.get("loc", ())))
                raise ToolError(f"{self.name}: argument {where}: {first.get('msg')}") from None
        return values

    def encode_result(self, value: Any) -> str:
        try:
            encoded = pydantic_core.to_json(value)
        except pydantic_core.PydanticSerializationError as exc:
            raise ToolError(f"{self.name} returned a value that is not JSON-serialisable: {exc}") from None
        if len(encoded) > self.max_result_bytes:
            raise ToolError(
                f"{self.name} returned {len(encoded):,} bytes of JSON; the cap is {self.max_result_bytes:,}"
            )
        return encoded.decode("utf-8")


ToolsArg = Sequence[Callable[..., Any] | Tool] | Mapping[str, Callable[..., Any] | Tool] | None


def normalize_tools(tools: ToolsArg) -> dict[str, Tool]:
    """`RLM(tools=...)` as {name: Tool}: a list of callables or Tools, or a {name: callable} dict."""
    if tools is None:
        return {}
    items: list[Tool] = []
    if isinstance(tools, Mapping):
        for name, fn in tools.items():
            if isinstance(fn, Tool):
                items.append(fn if fn.name == name else fn.renamed(name))
            else:
                items.append(Tool(fn, name=name))
    else:
        items = [fn if isinstance(fn, Tool) else Tool(fn) for fn in tools]
    by_name: dict[str, Tool] = {}
    for tool in items:
        if tool.name in by_name:
            raise ToolDefinitionError(f"two tools are named {tool.name!r}")
        by_name[tool.name] = tool
    return by_name


def render_tools(tools: Mapping[str, Tool]) -> str:
    """The tools section of a system prompt: each with its signature and docstring."""
    lines = []
    for tool in tools.values():
        lines.append(f"- `{tool.name}{tool.signature}`")
        for line in tool.doc.splitlines()[:20]:
            lines.append(f"    {line}")
    return "\n".join(lines)


class ToolCalls:
    """Runs the tool calls of one completion tree: counted, timed, validated."""

    def __init__(
        self,
        *,
        max_calls: int | None,
        deadline_s: Callable[[], float | None],
        on_call: Callable[..., None],
    ) -> None:
        self._max_calls = max_calls
        self._remaining_s = deadline_s
        self._on_call = on_call
        self._lock = threading.Lock()
        self.count = 0

    def _claim(self) -> None:
        with self._lock:
            if self._max_calls is not None and self.count >= self._max_calls:
                raise BudgetExceededError(
                    f"max_tool_calls={self._max_calls} reached: all {self.count} tool calls are used"
                )
            self.count += 1

    def call(self, tool: Tool, args: list[Any], kwargs: dict[str, Any], **where: Any) -> str:
        """Validate, run within the timeout, encode. Raises ToolError or BudgetExceededError."""
        started = time.monotonic()
        error: str | None = None
        result_bytes = 0
        try:
            # Counted before validation: a sandbox spraying malformed calls spends the
            # same budget as one making real ones.
            self._claim()
            values = tool.validate(args, kwargs)
            timeout = tool.timeout_s
            remaining = self._remaining_s()
            if remaining is not None:
                timeout = min(timeout, remaining)
            value = _run_with_timeout(tool, values, timeout)
            encoded = tool.encode_result(value)
            result_bytes = len(encoded)
            return encoded
        except (ToolError, BudgetExceededError) as exc:
            error = str(exc)
            raise
        finally:
            self._on_call(
                name=tool.name,
                args=_preview(args),
                kwargs=_preview(kwargs),
                duration_s=round(time.monotonic() - started, 6),
                result_bytes=result_bytes,
                error=error,
                **where,
            )

    def unknown(self, name: str, available: list[str], **where: Any) -> NoReturn:
        """A call to a tool this node was not granted: counted, logged, refused."""
        error = f"there is no tool named {name!r} here; available: {available or 'none'}"
        try:
            self._claim()
        except BudgetExceededError as exc:
            error = str(exc)
            raise
        finally:
            self._on_call(name=name, args="", kwargs="", duration_s=0.0, result_bytes=0, error=error, **where)
        raise ToolError(error)


def _run_with_timeout(tool: Tool, values: dict[str, Any], timeout: float) -> Any:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = tool.fn(**values)
        except BaseException as exc:
            outcome["error"] = exc

    # A daemon thread, so a tool that hangs for ever cannot keep the process alive.
    thread = threading.Thread(target=run, name=f"rlm-tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ToolError(f"{tool.name} timed out after {timeout:g} s")
    if "error" in outcome:
        exc = outcome["error"]
        raise ToolError(f"{tool.name} failed: {type(exc).__name__}: {exc}")
    return outcome.get("value")


def _preview(value: Any, limit: int = 500) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
