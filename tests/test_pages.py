"""The HTML pages in a real browser (Debian's chromium, headless): they draw the run, and
no HTML or script carried by a model reply, an output or a results file ever runs."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest

from benchmarks.page_load import find_chromium, run_chromium, synthetic_trajectory
from rlm_sandbox import RLM, Limits
from rlm_sandbox.cli import main as cli_main
from rlm_sandbox.evals.report import Run
from rlm_sandbox.pages import report_page, trajectory_page
from rlm_sandbox.pages.page import embed_json
from rlm_sandbox.trajectory import read_trajectory

from .fakes.fake_openai import FakeOpenAIServer, Reply

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_chromium()
    if path is None:
        reason = "no chromium on PATH (Debian package `chromium`; .ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI needs this, and it is missing: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def open_page(html: str, folder: Path, name: str = "page.html"):
    page = folder / name
    page.write_text(html, encoding="utf-8")
    run = run_chromium(page)
    errors = [line for line in run.console if "Uncaught" in line or "Content Security Policy" in line]
    return run.dom, errors


def count(dom: str, css_class: str) -> int:
    return len(re.findall(r'class="[^"]*\b' + re.escape(css_class) + r'\b[^"]*"', dom))


# ------------------------------------------------------------------ a real run, drawn


def tree_program(body: dict) -> Reply:
    messages = body["messages"]
    if not any(m.get("role") == "system" for m in messages):
        return Reply.text("leaf answer")
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    if turn == 0:
        return Reply.text(
            "Let me split it.\n```repl\nparts = rlm_query_batched(['part a', 'part b'])\n"
            "note = llm_query('summarise')\nprint(parts, note)\n```"
        )
    if turn == 1:
        return Reply.text("```repl\nundefined_name + 1\n```")
    return Reply.text("FINAL(all parts combined)")


@pytest.fixture(scope="module")
def real_trajectory(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    with FakeOpenAIServer() as server:
        server.set_responder(tree_program)
        rlm = RLM(model="fake-root", sub_model="fake-sub", base_url=server.base_url, api_key="k", sandbox=False,
                  limits=Limits(max_depth=2, max_iterations=5), log_dir=folder)  # fmt: skip
        result = rlm.completion("a context to split", "combine the parts")
    assert result.stop_reason == "final", result.error
    path = Path(result.trajectory_path)
    # Event types other engineers add (tool calls, compaction...) must show up too.
    with path.open("a", encoding="utf-8") as handle:
        handle.write(
            json.dumps({"type": "compaction", "t": 0.5, "node": 0, "iteration": 2, "dropped_messages": 7}) + "\n"
        )
        handle.write(
            json.dumps({"type": "tool_call", "t": 0.6, "node": 0, "name": "web_search", "duration_s": 0.1}) + "\n"
        )
    return path


def test_the_page_of_a_run_shows_nodes_turns_timeline_and_totals(browser, real_trajectory, tmp_path):
    out = tmp_path / "run.html"
    assert cli_main(["view", "--html", str(out), str(real_trajectory)]) == 0
    run = run_chromium(out)
    assert not [line for line in run.console if "Uncaught" in line or "Content Security Policy" in line], run.console
    dom = run.dom
    assert 'data-ready="1"' in dom
    events = read_trajectory(real_trajectory)
    nodes = sum(1 for e in events if e["type"] == "node_start")
    assert nodes == 3
    # The tree: the root is open with its turns; its two children sit under the code that started them.
    assert count(dom, "node") >= nodes
    assert count(dom, "turn") >= 3
    assert "rlm_query_batched" in dom and 'class="tok-rlm"' in dom  # the code, highlighted
    assert "NameError" in dom  # the failing block's error
    # The timeline: an axis, the concurrency strip and one row per node.
    assert count(dom, "tl-row") == nodes + 2
    assert count(dom, "tl-bar") >= sum(1 for e in events if e["type"] in ("model_call", "exec"))
    assert "critical path: node 0" in dom
    # Totals and problems (the NameError).
    assert "model calls" in dom and count(dom, "stat") >= 6
    assert "3 problems" in dom  # each node's failing block
    # Unknown event types are shown, not dropped.
    assert "compaction" in dom and "dropped_messages" in dom and "web_search" in dom

    # Search across the run: every event that mentions the error, each a link to it.
    found = run_chromium(out, fragment="#search=undefined_name").dom
    assert re.search(r'class="search-count">(\d+) events<', found).group(1) == str(
        sum("undefined_name" in json.dumps(e) for e in events)
    )
    assert count(found, "search-hit") >= 3 and "<mark>undefined_name</mark>" in found

    shot = tmp_path / "run.png"
    run_chromium(out, screenshot=shot, size="1400,1600")
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (width, height) == (1400, 1600)
    assert shot.stat().st_size > 40_000  # a drawn page, not a blank one


def test_a_large_trajectory_draws_lazily_and_completely(browser, tmp_path):
    events = synthetic_trajectory(3000, seed=3)
    dom, errors = open_page(trajectory_page(events), tmp_path)
    assert not errors, errors
    assert 'data-ready="1"' in dom
    assert "3,000 events" in dom or f"{len(events):,} events" in dom
    # The tree draws the first turns and offers the rest, rather than building everything.
    assert count(dom, "turn") <= 25 + 25 * sum(1 for e in events if e["type"] == "node_start")
    # Revealing an event deep in the tree builds and opens the way to it: the child node
    # inside its parent's (closed, large) batch of calls, then its turn, then the block.
    index = max(i for i, e in enumerate(events) if e["type"] == "exec" and e["depth"] == 1)
    assert f'data-event="{index}"' not in dom
    page = tmp_path / "page.html"
    opened = run_chromium(page, fragment=f"#event={index}").dom
    assert re.search(rf'<div class="card exec[^"]*flash[^"]*" data-event="{index}"', opened)
    child = events[index]["node"]
    assert re.search(
        rf'<details class="node depth-1" data-event="\d+" open="">\s*<summary><span class="node-summary"><span class="node-name">node {child}<',
        opened,
    )


# ------------------------------------------------------------------ hostile content

MARK = "pwned-marker"
PAYLOADS = [
    f"<script>document.title='PWNED';document.body.appendChild(document.createElement('{MARK}'))</script>",
    f"<img src=x onerror=\"document.title='PWNED';document.body.appendChild(document.createElement('{MARK}'))\">",
    f"</script><script>document.title='PWNED';document.body.appendChild(document.createElement('{MARK}'))</script>",
    f"<svg onload=\"document.body.appendChild(document.createElement('{MARK}'))\"></svg>",
    "<a href=\"javascript:document.title='PWNED'\">click me</a> [link](javascript:document.title='PWNED')",
    "<pwned-static id=pwned>raw element</pwned-static>",
    f"\u2028\u2029</SCRIPT ><!-- <script>document.body.appendChild(document.createElement('{MARK}'))</script>",
    "<style>body{display:none}</style><link rel=stylesheet href=http://127.0.0.1:9/x.css>",
]
HOSTILE = "\n".join(PAYLOADS)


def hostile_trajectory() -> list[dict]:
    run = "<b>run</b>"
    return [
        {"type": "metadata", "t": 0, "run_id": run, "model": HOSTILE, "sub_model": HOSTILE, "query": HOSTILE,
         "context": {"type_name": HOSTILE, "total_chars": 10, "preview": HOSTILE}, "limits": {"max_depth": HOSTILE}},
        {"type": "node_start", "t": 0.1, "run_id": run, "node": 0, "parent": None, "depth": 0, "query": HOSTILE},
        {"type": "model_call", "t": 1.0, "run_id": run, "node": 0, "depth": 0, "iteration": 1, "model": HOSTILE,
         "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.0, "duration_s": 0.5, "prompt": HOSTILE,
         "response": HOSTILE + "\n```repl\n" + HOSTILE + "\n```\n" + HOSTILE, HOSTILE: HOSTILE},
        {"type": "sub_call", "t": 1.2, "run_id": run, "kind": "llm", "node": 0, "depth": 0, "model": HOSTILE,
         "prompt_chars": 3, "duration_s": 0.1, "error": HOSTILE},
        {"type": "node_start", "t": 1.1, "run_id": run, "node": 1, "parent": 0, "depth": 1, "query": HOSTILE},
        {"type": "node_end", "t": 1.3, "run_id": run, "node": 1, "answer": HOSTILE, "stop_reason": HOSTILE,
         "iterations": 1, "error": HOSTILE},
        {"type": "exec", "t": 1.5, "run_id": run, "node": 0, "depth": 0, "iteration": 1, "block": 0, "code": HOSTILE,
         "stdout": HOSTILE, "stderr": HOSTILE, "error": HOSTILE, "final": HOSTILE, "timed_out": True,
         "restarted": False, "truncated": True, "duration_s": 0.4},
        {"type": HOSTILE, "t": 1.6, "run_id": run, "node": 0, "iteration": 1, HOSTILE: HOSTILE, "duration_s": 0.1},
        {"type": HOSTILE, "t": 1.7, "run_id": run, HOSTILE: [HOSTILE, {"x": HOSTILE}]},
        {"type": "node_end", "t": 2.0, "run_id": run, "node": 0, "answer": HOSTILE, "stop_reason": "final",
         "iterations": 1, "error": None},
        {"type": "result", "t": 2.1, "run_id": run, "answer": HOSTILE, "stop_reason": HOSTILE, "error": HOSTILE,
         "usage": {"models": {HOSTILE: {"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": 0}},
                   "total": {"calls": 1}}, "iterations": 1, "elapsed_s": 2.1},
    ]  # fmt: skip


def assert_nothing_ran(dom: str) -> None:
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and "PWNED" not in title.group(1)
    assert f"<{MARK}" not in dom  # no script or handler from the data ran
    assert "<pwned-static" not in dom and 'id="pwned"' not in dom  # no element from the data exists
    assert not re.search(r"<a\b[^>]*href", dom, re.I)  # no link at all from the data
    assert not re.search(r"<(img|svg|link|iframe)\b", dom, re.I)
    assert dom.count("<script") == 2  # the data block and our own script: nothing else


def test_payloads_in_a_trajectory_run_nothing_and_show_as_text(browser, tmp_path):
    dom, errors = open_page(trajectory_page(hostile_trajectory()), tmp_path)
    assert 'data-ready="1"' in dom, errors  # the page drew everything
    assert not [line for line in errors if "Uncaught" in line], errors
    assert_nothing_ran(dom)
    # ...and the payloads are there, as text, where a reader can see them.
    assert "&lt;img src=x onerror=" in dom and "&lt;/script&gt;&lt;script&gt;" in dom


def test_payloads_in_results_run_nothing(browser, tmp_path):
    records = [
        {"task_id": HOSTILE, "query": HOSTILE, "answer": HOSTILE, "expected": HOSTILE, "stop_reason": HOSTILE,
         "error": HOSTILE, "suite": HOSTILE, "correct": False, "score": 0.0, "config": {"model": HOSTILE}},
        {"task_id": "ok", "query": "q", "answer": "42", "expected": "42", "stop_reason": "final", "correct": True,
         "score": 1.0, "config": {"model": "m"}},
    ]  # fmt: skip
    runs = [Run(label=HOSTILE, source=HOSTILE, fingerprint="f", records=records)]
    dom, errors = open_page(report_page(runs), tmp_path)
    assert 'data-ready="1"' in dom, errors
    assert_nothing_ran(dom)
    assert count(dom, "task-row") == 2


def test_the_detector_sees_a_payload_that_does_run(browser, tmp_path):
    """Control: the same checks fail on a page that lets a payload through."""
    unsafe = f"<!DOCTYPE html><html><head><title>t</title></head><body>{PAYLOADS[1]}</body></html>"
    dom, _ = open_page(unsafe, tmp_path, "unsafe.html")
    with pytest.raises(AssertionError):
        assert_nothing_ran(dom)


def test_the_policy_blocks_markup_that_slipped_through(browser, tmp_path):
    """Defence in depth: if a rendering bug let a payload into the markup, the CSP stops it."""
    page = trajectory_page(synthetic_trajectory(50))
    tampered = page.replace('<div id="app"></div>', '<div id="app"></div>' + PAYLOADS[1] + PAYLOADS[0], 1)
    dom, errors = open_page(tampered, tmp_path, "tampered.html")
    assert f"<{MARK}" not in dom and 'data-ready="1"' in dom
    assert any("Content Security Policy" in line for line in errors)


# ------------------------------------------------------------------ the file itself


def test_embedded_data_cannot_close_its_element_and_round_trips():
    data = {"a": "</script><script>x</script>", "b": "<!--", "c": "\u2028\u2029&amp;"}
    text = embed_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == data


def test_the_page_loads_nothing_and_allows_only_its_own_script():
    page = trajectory_page(hostile_trajectory())
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp and "http" not in csp
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)", csp)
    # The data block is inert text; outside it, no external resource of any kind.
    start = page.index('<script type="application/json"')
    outside = page[:start] + page[page.index("</script>", start) :]
    block = page[start : page.index("</script>", start)]
    assert "<" not in block[block.index(">") + 1 :]  # the hostile data holds plenty of "<"
    assert not re.search(r"\b(src|href)=", outside)


# ------------------------------------------------------------------ eval report


def results_line(task: int, depth: int, correct: bool) -> dict:
    return {
        "task_id": f"niah-{task}", "fingerprint": f"fp{depth}", "config": {"model": "gpt-5-mini", "max_depth": depth},
        "suite": "niah", "size_tokens": 4096 * (task + 1), "query": "What is the magic number?",
        "answer": "1234" if correct else "99", "expected": "1234", "scorer": "exact", "score": float(correct),
        "correct": correct, "stop_reason": "final" if correct else "max_iterations", "cost_usd": 0.002 * (task + 1),
        "input_tokens": 1000, "output_tokens": 100, "model_calls": 3, "sub_calls": 2, "elapsed_s": 1.5 + task,
        "worker": "host:1", "finished_at": "2026-11-30T00:00:00+00:00",
    }  # fmt: skip


def test_report_html_compares_runs_and_lists_every_task(browser, tmp_path):
    results = tmp_path / "results.jsonl"
    lines = [results_line(task, depth, correct=(task + depth) % 3 != 0) for depth in (1, 2) for task in range(5)]
    results.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "report.html"
    assert cli_main(["report", str(results), "--html", str(out)]) == 0
    run = run_chromium(out)
    assert not [line for line in run.console if "Uncaught" in line or "Content Security Policy" in line], run.console
    assert 'data-ready="1"' in run.dom
    assert "gpt-5-mini, depth 1" in run.dom and "gpt-5-mini, depth 2" in run.dom
    assert count(run.dom, "task-row") == len(lines)
    assert count(run.dom, "wrong") == sum(1 for line in lines if not line["correct"])
    shot = tmp_path / "report.png"
    run_chromium(out, screenshot=shot, size="1400,900")
    assert shot.stat().st_size > 20_000


def test_the_scripts_have_no_way_to_parse_markup():
    """A guard for future edits; the browser tests above are the proof."""
    from importlib import resources

    for asset in resources.files("rlm_sandbox.pages").joinpath("assets").iterdir():
        if asset.name.endswith(".js"):
            source = asset.read_text(encoding="utf-8")
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                         "setAttribute(\"on", "createContextualFragment", "DOMParser"):  # fmt: skip
                assert sink not in source, f"{asset.name} uses {sink}"
