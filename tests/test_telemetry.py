"""OpenTelemetry spans of real runs: the real SDK, the real openai client against the fake
server, real (local) sandboxes; and an OTLP/HTTP export to a receiver in this process."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra (in dev)")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rlm_sandbox import RLM, Limits
from rlm_sandbox.telemetry import OpenTelemetryListener

from .fakes.fake_openai import FakeOpenAIServer, Reply


@pytest.fixture
def fake_openai():
    with FakeOpenAIServer() as server:
        yield server


def tree_program(body: dict) -> Reply:
    """Every node: fan out two rlm_query calls and one llm_query, then answer."""
    messages = body["messages"]
    if not any(m.get("role") == "system" for m in messages):
        return Reply.text("leaf")
    if not any(m.get("role") == "assistant" for m in messages):
        return Reply.text(
            "Splitting the work.\n```repl\n"
            "parts = rlm_query_batched(['part a', 'part b'])\n"
            "note = llm_query('summarise ' + context[:20])\n"
            "print(parts, note)\n```"
        )
    return Reply.text("FINAL(done)")


def traced_run(server: FakeOpenAIServer, *, include_content: bool = False, max_depth: int = 3):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.set_responder(tree_program)
    rlm = RLM(
        model="fake-root",
        sub_model="fake-sub",
        base_url=server.base_url,
        api_key="test-key",
        sandbox=False,
        limits=Limits(max_depth=max_depth, max_iterations=4),
        listeners=[OpenTelemetryListener(provider, include_content=include_content)],
    )
    result = rlm.completion("the root context", "combine the parts")
    provider.shutdown()
    return result, exporter.get_finished_spans()


def by_id(spans: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans}


def parent_of(span: ReadableSpan, index: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return index.get(span.parent.span_id) if span.parent is not None else None


def test_a_depth_two_run_is_one_span_tree_mirroring_the_nodes(fake_openai):
    result, spans = traced_run(fake_openai)
    assert result.stop_reason == "final", result.error
    index = by_id(spans)
    assert len({span.context.trace_id for span in spans}) == 1

    roots = [span for span in spans if span.parent is None]
    assert [span.name for span in roots] == ["invoke_agent rlm"]
    completion = roots[0]
    assert completion.attributes["rlm.stop_reason"] == "final"
    assert completion.attributes["gen_ai.request.model"] == "fake-root"
    assert completion.attributes["gen_ai.usage.input_tokens"] == result.usage.total.input_tokens
    assert completion.attributes["gen_ai.usage.output_tokens"] == result.usage.total.output_tokens

    nodes = {span.attributes["rlm.node.id"]: span for span in spans if span.name == "rlm.node"}
    # depth 0 -> two at depth 1 -> four at depth 2 (whose rlm_query is a plain call).
    assert sorted(span.attributes["rlm.depth"] for span in nodes.values()) == [0, 1, 1, 2, 2, 2, 2]
    for node_id, span in nodes.items():
        assert span.attributes["rlm.stop_reason"] == "final"
        parent = parent_of(span, index)
        if span.attributes["rlm.depth"] == 0:
            assert parent is completion
            continue
        # A child node sits under the rlm_query call of its parent node.
        assert parent is not None and parent.name == "rlm.rlm_query"
        assert parent.attributes["rlm.child"] == node_id
        assert parent.attributes["rlm.stop_reason"] == "final"
        grandparent = parent_of(parent, index)
        assert grandparent is nodes[span.attributes["rlm.node.parent"]]
        assert grandparent.attributes["rlm.depth"] == span.attributes["rlm.depth"] - 1

    # Every node's own steps hang from it: its model turns, its code and its llm_query.
    for node in nodes.values():
        children = [span for span in spans if span.parent is not None and span.parent.span_id == node.context.span_id]
        names = sorted(span.name for span in children)
        turns = [span for span in children if span.name == "chat fake-root"]
        assert len(turns) == 2, names
        assert all(span.attributes["gen_ai.usage.input_tokens"] > 0 for span in turns)
        assert all(span.attributes["gen_ai.request.model"] == "fake-root" for span in turns)
        execs = [span for span in children if span.name == "rlm.exec"]
        assert len(execs) == 1 and execs[0].attributes["rlm.exec.outcome"] == "ok"
        assert execs[0].attributes["rlm.exec.duration_s"] > 0
        plain = [span for span in children if span.name == "chat fake-sub"]
        # llm_query, plus the two rlm_query that fall back to plain calls at the last level.
        assert len(plain) == (3 if node.attributes["rlm.depth"] == 2 else 1), names
        assert all(span.attributes["gen_ai.usage.output_tokens"] > 0 for span in plain)

    # Tokens: the model-call spans add up to the run's usage, nothing missed or doubled.
    chats = [span for span in spans if span.name.startswith("chat ")]
    assert len(chats) == result.usage.total.calls
    assert sum(span.attributes["gen_ai.usage.input_tokens"] for span in chats) == result.usage.total.input_tokens

    # Real times: every span inside its parent (to a millisecond of event rounding).
    slack = 2_000_000
    for span in spans:
        assert span.end_time >= span.start_time
        parent = parent_of(span, index)
        if parent is not None:
            assert span.start_time >= parent.start_time - slack, span.name
            assert span.end_time <= parent.end_time + slack, span.name


def test_exec_spans_carry_no_output_unless_asked(fake_openai):
    _, spans = traced_run(fake_openai, max_depth=1)
    execs = [span for span in spans if span.name == "rlm.exec"]
    assert execs and not any(
        "rlm.exec.stdout" in span.attributes or "rlm.exec.code" in span.attributes for span in execs
    )
    assert not any("gen_ai.completion" in span.attributes for span in spans)

    _, spans = traced_run(fake_openai, include_content=True, max_depth=1)
    execs = [span for span in spans if span.name == "rlm.exec"]
    assert any("leaf" in str(span.attributes.get("rlm.exec.stdout")) for span in execs)
    assert any("rlm_query_batched" in str(span.attributes.get("gen_ai.completion")) for span in spans)


def test_failed_code_is_an_error_span_with_the_exception_type_only(fake_openai):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake_openai.push(Reply.text("```repl\nraise ValueError('secret-data-123')\n```"), Reply.text("FINAL(ok)"))
    rlm = RLM(model="m", base_url=fake_openai.base_url, api_key="k", sandbox=False,
              listeners=[OpenTelemetryListener(provider)])  # fmt: skip
    assert rlm.completion("ctx", "q").stop_reason == "final"
    (span,) = [span for span in exporter.get_finished_spans() if span.name == "rlm.exec"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["rlm.exec.outcome"] == "error"
    assert span.attributes["rlm.exec.error_type"] == "ValueError"
    assert "secret-data-123" not in str(span.attributes) + str(span.status.description)


def test_one_listener_keeps_concurrent_completions_apart(fake_openai):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake_openai.set_responder(tree_program)
    listener = OpenTelemetryListener(provider)
    rlm = RLM(model="fake-root", sub_model="fake-sub", base_url=fake_openai.base_url, api_key="k", sandbox=False,
              limits=Limits(max_depth=2), listeners=[listener])  # fmt: skip
    threads = [threading.Thread(target=rlm.completion, args=("ctx", "q")) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = exporter.get_finished_spans()
    traces = {span.context.trace_id for span in spans}
    assert len(traces) == 3
    for trace_id in traces:
        names = [span.name for span in spans if span.context.trace_id == trace_id]
        assert names.count("invoke_agent rlm") == 1 and names.count("rlm.node") == 3


# ------------------------------------------------------------------ OTLP over HTTP


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


def test_otlp_http_export_reaches_a_collector_in_the_wire_format(fake_openai):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="needs the OTLP/HTTP exporter (in dev)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "rlm-test"}))
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=10)))
        fake_openai.set_responder(tree_program)
        rlm = RLM(model="fake-root", sub_model="fake-sub", base_url=fake_openai.base_url, api_key="k", sandbox=False,
                  limits=Limits(max_depth=2), listeners=[OpenTelemetryListener(provider)])  # fmt: skip
        result = rlm.completion("ctx", "q")
        assert result.stop_reason == "final", result.error
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()

    assert _Receiver.received, "the exporter sent nothing"
    spans = []
    for path, content_type, body in _Receiver.received:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            service = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            assert service["service.name"] == "rlm-test"
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "rlm_sandbox"
                spans.extend(scope_spans.spans)
    names = sorted(span.name for span in spans)
    assert names.count("invoke_agent rlm") == 1 and names.count("rlm.node") == 3 and names.count("rlm.rlm_query") == 2
    ids = {span.span_id: span for span in spans}
    for span in spans:
        if span.name == "rlm.node" and span.parent_span_id:
            assert ids[span.parent_span_id].name in ("invoke_agent rlm", "rlm.rlm_query")
    chat = next(span for span in spans if span.name == "chat fake-root")
    attributes = {kv.key: kv.value for kv in chat.attributes}
    assert attributes["gen_ai.request.model"].string_value == "fake-root"
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0
    assert chat.end_time_unix_nano > chat.start_time_unix_nano


# ------------------------------------------------------------------ events other engineers add


def test_tool_calls_unknown_events_and_an_interrupted_tree():
    """Fed events directly: a tool call becomes an execute_tool span under its node, an
    untimed unknown event a span event, and an interrupted run closes what is open."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    listener = OpenTelemetryListener(provider)
    run = {"run_id": "r1"}
    for event in [
        {"type": "metadata", "t": 0.0, "model": "m", "sub_model": "s", "query": "q", "context": {}, "limits": {}},
        {"type": "node_start", "t": 0.01, "node": 0, "parent": None, "depth": 0, "query": "q"},
        {"type": "tool_call", "t": 0.5, "node": 0, "name": "web_search", "duration_s": 0.2, "error": None},
        {"type": "compaction", "t": 0.6, "node": 0, "dropped_messages": 4},
        {"type": "node_start", "t": 0.7, "node": 1, "parent": 0, "depth": 1, "query": "child"},
        {"type": "interrupted", "t": 0.9},
    ]:
        listener(event | run)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    tool = spans["execute_tool web_search"]
    assert tool.attributes["gen_ai.tool.name"] == "web_search"
    assert (tool.end_time - tool.start_time) == pytest.approx(0.2e9, abs=1e3)
    nodes = [span for span in exporter.get_finished_spans() if span.name == "rlm.node"]
    assert len(nodes) == 2 and all(span.status.status_code is StatusCode.ERROR for span in nodes)
    root = next(span for span in nodes if span.attributes["rlm.depth"] == 0)
    assert tool.parent.span_id == root.context.span_id
    assert [event.name for event in root.events] == ["rlm.compaction"]
    assert root.events[0].attributes["rlm.dropped_messages"] == 4
    completion = spans["invoke_agent rlm"]
    assert completion.attributes["rlm.stop_reason"] == "interrupted"
    assert spans["rlm.rlm_query"].end_time is not None
