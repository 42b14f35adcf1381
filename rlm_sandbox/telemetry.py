"""OpenTelemetry traces of RLM runs: `RLM(listeners=[OpenTelemetryListener()])`.

Needs the `otel` extra (`pip install 'rlm-sandbox[otel]'`); exporting is the
application's choice (an OTLP exporter to Langfuse, Phoenix, Logfire, a collector...),
set on the tracer provider it passes, or on the global one.

The listener turns trajectory events into spans, one tree per completion:

    invoke_agent rlm                      the completion
      rlm.node                            a node (the root; children below sub-calls)
        chat {model}                      a model turn of the node
        rlm.exec                          a code block run in the node's sandbox
        chat {model}  (rlm.call=llm_query) a plain sub-call from the code
        rlm.rlm_query                     a recursive sub-call...
          rlm.node                        ...and the child node it ran
        execute_tool {name}               a tool call (and any other timed event)

Parents come from the node and parent ids in the events, never from thread context:
batched sub-calls and child nodes run on other threads. Events are emitted when a
step ends, carrying its duration, so spans get their real start and end times.
Attributes follow the GenAI semantic conventions (gen_ai.request.model,
gen_ai.usage.input_tokens / output_tokens, gen_ai.usage.cost); exec spans carry the
duration and outcome of the code, not its text or output unless `include_content`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import MissingExtraError

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - the extra is installed in dev and CI
    raise MissingExtraError(
        "OpenTelemetry is not installed: pip install 'rlm-sandbox[otel]' (opentelemetry-api and -sdk)"
    ) from exc

__all__ = ["OpenTelemetryListener"]

_TRACER_NAME = "rlm_sandbox"
# What an attribute carries at most when content is included; tracing back ends cap too.
_CONTENT_CHARS = 8_000


@dataclass
class _Run:
    """The open spans of one completion."""

    origin_ns: int
    model: str | None = None
    sub_model: str | None = None
    completion: Span | None = None
    nodes: dict[str, Span] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    # rlm_query sub-call spans, by the child node they ran.
    sub_calls: dict[str, Span] = field(default_factory=dict)
    # Per parent node: children that ended whose sub_call event has not come yet.
    ended_children: dict[str, list[str]] = field(default_factory=dict)

    def ns(self, seconds: Any) -> int:
        return self.origin_ns + int(float(seconds or 0.0) * 1e9)


class OpenTelemetryListener:
    """A trajectory listener that records each completion as a tree of spans.

    `tracer_provider`: where spans go; None uses the global provider (set with
    `opentelemetry.trace.set_tracer_provider`). `include_content=True` also records
    prompts, replies, code and outputs (cut at 8,000 characters each); by default
    spans carry sizes, durations and outcomes only, since outputs may hold the data.
    Listeners run inside the completion: export with a `BatchSpanProcessor`, so a slow
    collector never holds up the run.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> rlm = RLM(model="gpt-5-mini", listeners=[OpenTelemetryListener(TracerProvider())])
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *, include_content: bool = False) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(_TRACER_NAME, _version())
        self._include_content = include_content
        self._runs: dict[str, _Run] = {}
        # Several completions (threads, async tasks) may share one listener.
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._handle(event)

    # ------------------------------------------------------------- dispatch

    def _handle(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type"))
        key = str(event.get("run_id"))
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = _Run(origin_ns=time.time_ns() - int(float(event.get("t") or 0.0) * 1e9))
        if kind == "metadata":
            self._start_completion(run, event)
        elif kind == "node_start":
            self._start_node(run, event)
        elif kind == "node_end":
            self._end_node(run, event)
        elif kind == "model_call":
            self._model_call(run, event)
        elif kind == "exec":
            self._exec(run, event)
        elif kind == "sub_call":
            self._sub_call(run, event)
        elif kind in ("result", "interrupted"):
            self._end_completion(run, event)
            del self._runs[key]
        else:
            self._other(run, event)

    def _parent(self, run: _Run, node: Any) -> Any:
        span = run.nodes.get(str(node)) if node is not None else None
        span = span or run.completion or self._start_completion(run, {"t": 0.0})
        return trace.set_span_in_context(span)

    def _span(self, run: _Run, name: str, parent_node: Any, event: dict[str, Any], attributes: dict[str, Any]) -> Span:
        """A finished span of a step that took `duration_s` and ended at `t`."""
        end = run.ns(event.get("t"))
        start = end - int(float(event.get("duration_s") or 0.0) * 1e9)
        span = self._tracer.start_span(
            name,
            context=self._parent(run, parent_node),
            kind=SpanKind.CLIENT if name.startswith(("chat", "execute_tool")) else SpanKind.INTERNAL,
            start_time=start,
            attributes=_clean(attributes),
        )
        if event.get("error"):
            span.set_status(Status(StatusCode.ERROR, _error_type(event["error"])))
        span.end(end_time=end)
        return span

    # ------------------------------------------------------------- completion and nodes

    def _start_completion(self, run: _Run, event: dict[str, Any]) -> Span:
        run.model = event.get("model")
        run.sub_model = event.get("sub_model")
        context = event.get("context") or {}
        limits = event.get("limits") or {}
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "rlm",
            "gen_ai.request.model": run.model,
            "rlm.run_id": event.get("run_id"),
            "rlm.sub_model": run.sub_model,
            "rlm.context.type": context.get("type_name"),
            "rlm.context.chars": context.get("total_chars"),
            "rlm.max_depth": limits.get("max_depth"),
            "rlm.max_iterations": limits.get("max_iterations"),
        }
        if self._include_content:
            attributes["rlm.query"] = _cut(event.get("query"))
        run.completion = self._tracer.start_span(
            "invoke_agent rlm", kind=SpanKind.INTERNAL, start_time=run.ns(event.get("t")), attributes=_clean(attributes)
        )
        return run.completion

    def _end_completion(self, run: _Run, event: dict[str, Any]) -> None:
        end = run.ns(event.get("t"))
        interrupted = event.get("type") == "interrupted"
        # Whatever is still open (an interrupted tree) ends now, marked as such.
        for span in [*reversed(list(run.nodes.values())), *run.sub_calls.values()]:
            span.set_status(Status(StatusCode.ERROR, "interrupted"))
            span.end(end_time=end)
        run.sub_calls.clear()
        run.nodes.clear()
        completion = run.completion
        if completion is None:
            return
        if interrupted:
            completion.set_attribute("rlm.stop_reason", "interrupted")
            completion.set_status(Status(StatusCode.ERROR, "interrupted"))
        else:
            total = (event.get("usage") or {}).get("total") or {}
            completion.set_attributes(
                _clean(
                    {
                        "rlm.stop_reason": event.get("stop_reason"),
                        "rlm.iterations": event.get("iterations"),
                        "rlm.sandboxes_started": event.get("sandboxes_started"),
                        "gen_ai.usage.input_tokens": total.get("input_tokens"),
                        "gen_ai.usage.output_tokens": total.get("output_tokens"),
                        "gen_ai.usage.cost": total.get("cost_usd"),
                        "rlm.model_calls": total.get("calls"),
                    }
                )
            )
            if self._include_content:
                completion.set_attribute("rlm.answer", _cut(event.get("answer")) or "")
            if event.get("error"):
                completion.set_status(Status(StatusCode.ERROR, _error_type(event["error"])))
        completion.end(end_time=end)

    def _start_node(self, run: _Run, event: dict[str, Any]) -> None:
        node = str(event.get("node"))
        parent = event.get("parent")
        run.parents[node] = None if parent is None else str(parent)
        start = run.ns(event.get("t"))
        context = self._parent(run, parent)
        if parent is not None:
            # A child node runs inside its parent's rlm_query call: open that span now.
            call = self._tracer.start_span(
                "rlm.rlm_query",
                context=context,
                start_time=start,
                attributes=_clean({"rlm.call": "rlm_query", "rlm.node.id": str(parent), "rlm.child": node}),
            )
            run.sub_calls[node] = call
            context = trace.set_span_in_context(call)
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "rlm.node",
            "gen_ai.request.model": run.model,
            "rlm.node.id": node,
            "rlm.node.parent": None if parent is None else str(parent),
            "rlm.depth": event.get("depth"),
        }
        if self._include_content:
            attributes["rlm.query"] = _cut(event.get("query"))
        run.nodes[node] = self._tracer.start_span(
            "rlm.node", context=context, start_time=start, attributes=_clean(attributes)
        )

    def _end_node(self, run: _Run, event: dict[str, Any]) -> None:
        node = str(event.get("node"))
        span = run.nodes.pop(node, None)
        if span is None:
            return
        stop = event.get("stop_reason")
        span.set_attributes(_clean({"rlm.stop_reason": stop, "rlm.iterations": event.get("iterations")}))
        if self._include_content:
            span.set_attribute("rlm.answer", _cut(event.get("answer")) or "")
        if event.get("error"):
            span.set_status(Status(StatusCode.ERROR, _error_type(event["error"])))
        span.end(end_time=run.ns(event.get("t")))
        parent = run.parents.get(node)
        if parent is not None:
            run.ended_children.setdefault(parent, []).append(node)

    # ------------------------------------------------------------- steps

    def _model_call(self, run: _Run, event: dict[str, Any]) -> None:
        model = event.get("model") or run.model
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": run.model or model,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": event.get("input_tokens"),
            "gen_ai.usage.output_tokens": event.get("output_tokens"),
            "gen_ai.usage.cost": event.get("cost_usd"),
            "rlm.node.id": str(event.get("node")),
            "rlm.depth": event.get("depth"),
            "rlm.iteration": event.get("iteration"),
        }
        if self._include_content:
            attributes["gen_ai.prompt"] = _cut(event.get("prompt"))
            attributes["gen_ai.completion"] = _cut(event.get("response"))
        self._span(run, f"chat {model}", event.get("node"), event, attributes)

    def _exec(self, run: _Run, event: dict[str, Any]) -> None:
        if event.get("timed_out"):
            outcome = "timeout"
        elif event.get("error"):
            outcome = "error"
        elif event.get("final") is not None:
            outcome = "final"
        else:
            outcome = "ok"
        attributes = {
            "rlm.exec.outcome": outcome,
            "rlm.exec.duration_s": event.get("duration_s"),
            "rlm.exec.error_type": _error_type(event["error"]) if event.get("error") else None,
            "rlm.exec.timed_out": bool(event.get("timed_out")),
            "rlm.exec.restarted": bool(event.get("restarted")),
            "rlm.exec.truncated": bool(event.get("truncated")),
            "rlm.exec.code_chars": len(str(event.get("code") or "")),
            "rlm.exec.stdout_chars": len(str(event.get("stdout") or "")),
            "rlm.node.id": str(event.get("node")),
            "rlm.iteration": event.get("iteration"),
            "rlm.exec.block": event.get("block"),
        }
        if self._include_content:
            for name in ("code", "stdout", "stderr", "error"):
                attributes[f"rlm.exec.{name}"] = _cut(event.get(name))
        self._span(run, "rlm.exec", event.get("node"), event, attributes)

    def _sub_call(self, run: _Run, event: dict[str, Any]) -> None:
        if event.get("kind") == "rlm":
            parent = str(event.get("node"))
            waiting = run.ended_children.get(parent, [])
            # Producers that do not name the child: the earliest child of that node to end.
            child = str(event["child"]) if event.get("child") is not None else (waiting[0] if waiting else None)
            if child in waiting:
                waiting.remove(child)
            call = run.sub_calls.pop(child, None) if child is not None else None
            if call is None:
                return
            call.set_attributes(
                _clean({"rlm.stop_reason": event.get("stop_reason"), "rlm.prompt_chars": event.get("prompt_chars")})
            )
            if event.get("error"):
                call.set_status(Status(StatusCode.ERROR, _error_type(event["error"])))
            call.end(end_time=run.ns(event.get("t")))
            return
        model = event.get("model") or run.sub_model
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": event.get("input_tokens"),
            "gen_ai.usage.output_tokens": event.get("output_tokens"),
            "gen_ai.usage.cost": event.get("cost_usd"),
            "rlm.call": f"{event.get('kind', 'llm')}_query",
            "rlm.prompt_chars": event.get("prompt_chars"),
            "rlm.node.id": str(event.get("node")),
        }
        self._span(run, f"chat {model}", event.get("node"), event, attributes)

    def _other(self, run: _Run, event: dict[str, Any]) -> None:
        """Events this listener has no mapping for: a span if timed, else a span event."""
        kind = str(event.get("type"))
        simple = {
            f"rlm.{key}": value
            for key, value in event.items()
            if key not in ("type", "t", "run_id")
            and isinstance(value, (str, bool, int, float))
            and (self._include_content or not isinstance(value, str) or key in ("name", "tool", "error", "kind"))
        }
        if "duration_s" in event:
            tool = event.get("name") or event.get("tool")
            if "tool" in kind and tool:
                name = f"execute_tool {tool}"
                simple.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(tool)})
            else:
                name = f"rlm.{kind}"
            self._span(run, name, event.get("node"), event, simple)
            return
        holder = run.nodes.get(str(event.get("node"))) or run.completion
        if holder is not None:
            holder.add_event(f"rlm.{kind}", attributes=_clean(simple), timestamp=run.ns(event.get("t")))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rlm-sandbox")
    except Exception:  # a source tree that was never installed
        return "0"


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float: drop None, stringify anything else."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, (str, bool, int, float)) else str(value)
    return out


def _cut(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _CONTENT_CHARS else text[:_CONTENT_CHARS] + f"[... {len(text) - _CONTENT_CHARS:,} more]"


def _error_type(error: Any) -> str:
    """The exception type of an error text ("NameError: ..."), not its message: messages may hold data."""
    # A traceback names the exception on its last line; an error of ours on its first.
    for line in reversed(str(error).strip().splitlines()):
        head = line.split(":", 1)[0].strip()
        if head and all(part.isidentifier() for part in head.split(".")):
            return head
    return "error"
