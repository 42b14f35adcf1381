"""The event log of one completion: a JSONL file, and live listeners (verbose output).

Line one is metadata; then one event per model call, exec and sub-call, each naming
its node, parent and depth. Events carry only what is new at that step (the model's
reply, the code, its output), never the whole history again, so a long run's log
grows linearly.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Listener = Callable[[dict[str, Any]], None]

# Long fields are cut in the log; the model saw at most this much of an output anyway.
MAX_FIELD_CHARS = 50_000


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + f"[... {len(value) - MAX_FIELD_CHARS:,} more characters not logged]"
    return value


class Trajectory:
    """Thread-safe: nodes of one tree run concurrently (batched rlm_query)."""

    def __init__(self, log_dir: str | Path | None = None, listeners: list[Listener] | None = None) -> None:
        self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.path: Path | None = None
        self._file = None
        if log_dir is not None:
            directory = Path(log_dir)
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / f"rlm-{self.run_id}.jsonl"
            # A lone surrogate in a model reply is written as its JSON escape, not a crash.
            self._file = self.path.open("w", encoding="utf-8", errors="backslashreplace")
        self._listeners = list(listeners or [])
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def emit(self, event_type: str, **fields: Any) -> None:
        # run_id on every event: one listener may serve several completions at once.
        event = {"type": event_type, "t": round(time.monotonic() - self._started, 6), "run_id": self.run_id}
        event.update({key: _clip(value) for key, value in fields.items()})
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
                self._file.flush()
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # a broken display must never break the run
                    pass

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_trajectory(path: str | Path) -> list[dict[str, Any]]:
    """All events of a saved trajectory; a torn last line (crash mid-write) or a foreign one is skipped."""
    events = []
    with open(path, "rb") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                events.append(event)
    return events


def load_trajectory(path: str | Path) -> list[dict[str, Any]]:
    """`read_trajectory` for a path a user gave: InputError, saying what to do, unless it is a trajectory."""
    from .errors import InputError

    where = Path(path)
    if not where.exists():
        raise InputError(f"no such trajectory file: {path}", "run and niah write them to ./rlm_logs, or to --log-dir")
    if where.is_dir():
        raise InputError(f"{path} is a directory", "give one rlm-*.jsonl file from it")
    try:
        events = read_trajectory(where)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    if events:
        return events
    with open(where, "rb") as handle:
        first = handle.readline(1 << 20)
    try:
        record = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if isinstance(record, dict) and "fingerprint" in record and ("id" in record or "task_id" in record):
        raise InputError(f"{path} is an eval results file, not a trajectory", f"use rlm-sandbox report {path}")
    raise InputError(f"{path} holds no trajectory events", "give a file written by run or niah (rlm_logs/rlm-*.jsonl)")


# ------------------------------------------------------------------ rendering
# One formatter serves both the live view (verbose=True) and `rlm-sandbox view FILE`.

from rich.console import Console, Group  # noqa: E402
from rich.panel import Panel  # noqa: E402
from rich.syntax import Syntax  # noqa: E402
from rich.text import Text  # noqa: E402
from rich.tree import Tree  # noqa: E402

from .terminal import SafeConsole  # noqa: E402

_SHOWN_CHARS = 1_500


def _short(text: Any, limit: int = _SHOWN_CHARS) -> str:
    text = ("" if text is None else str(text)).rstrip()
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def _num(value: Any) -> float:
    """A number from a saved file, which may hold anything: 0 for what is not one."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _node_label(event: dict[str, Any]) -> str:
    return f"node {event.get('node')} · depth {event.get('depth', '?')}"


def render_event(event: dict[str, Any]):
    """A rich renderable for one event, or None for events not worth showing."""
    kind = event.get("type")
    if kind == "metadata":
        context = event.get("context")
        context = context if isinstance(context, dict) else {}
        return Text.assemble(
            ("RLM ", "bold"),
            f"{event.get('model')} (sub: {event.get('sub_model')}) · context: {context.get('type_name')} of "
            f"{_num(context.get('total_chars')):,} chars\n",
            ("query: ", "bold"),
            str(event.get("query", "")),
        )
    if kind == "model_call":
        title = (
            f"{_node_label(event)} · turn {event.get('iteration')} · {event.get('model')} · "
            f"{_num(event.get('input_tokens')):,}→{_num(event.get('output_tokens')):,} tokens · "
            f"{_num(event.get('duration_s')):.2f}s"
        )
        return Panel(Text(_short(event.get("response"))), title=Text(title), title_align="left", border_style="blue")
    if kind == "exec":
        failed = bool(event.get("error"))
        output = _short(
            "\n".join(str(part) for part in (event.get("stdout"), event.get("stderr"), event.get("error")) if part)
        )
        flags = [f"{_num(event.get('duration_s')) * 1000:.1f} ms"]
        if event.get("timed_out"):
            flags.append("timed out")
        if event.get("restarted"):
            flags.append("sandbox restarted")
        if event.get("final") is not None:
            flags.append("FINAL")
        return Panel(
            Group(Syntax(_short(event.get("code")), "python", theme="ansi_dark"), Text(output or "(no output)")),
            title=Text(f"{_node_label(event)} · exec · " + " · ".join(flags)),
            title_align="left",
            border_style="red" if failed else "green",
        )
    if kind == "sub_call":
        return Text.assemble(
            f"  ↳ {event.get('kind')}_query from {_node_label(event)}: {_num(event.get('prompt_chars')):,} chars, "
            f"{_num(event.get('duration_s')):.2f}s, ",
            (str(event["error"]), "red") if event.get("error") else "ok",
        )
    if kind == "tool_call":
        # Plain Text, not markup: the arguments and the error are the sandbox's words.
        status = Text(str(event["error"]), style="red") if event.get("error") else Text("ok")
        return Text.assemble(
            f"  ↳ tool {event.get('name')}({_short(event.get('args'), 120)}, {_short(event.get('kwargs'), 120)}) "
            f"from {_node_label(event)}: {event.get('duration_s', 0):.2f}s, ",
            status,
        )
    if kind == "result":
        colour = "green" if event.get("stop_reason") == "final" else "yellow"
        usage = event.get("usage")
        usage = usage.get("total") if isinstance(usage, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Text.assemble(
            (str(event.get("stop_reason")), f"bold {colour}"),
            f" after {event.get('iterations')} turns, {_num(event.get('elapsed_s')):.2f}s · "
            f"{_num(usage.get('calls'))} model calls · "
            f"{_num(usage.get('input_tokens')) + _num(usage.get('output_tokens')):,} tokens · "
            f"${_num(usage.get('cost_usd')):.4f}\n",
            ("answer: ", "bold"),
            _short(event.get("answer"), 500),
        )
    return None


class LiveView:
    """A listener that prints each event as it happens."""

    def __init__(self, console: Console | None = None) -> None:
        # Model replies and sandbox output are untrusted: shown, never interpreted by the terminal.
        self.console = console or SafeConsole(stderr=True)

    def __call__(self, event: dict[str, Any]) -> None:
        renderable = render_event(event)
        if renderable is not None:
            self.console.print(renderable)


def trajectory_tree(events: list[dict[str, Any]]) -> Tree:
    """A saved trajectory as a tree: nodes nest under the node whose code started them."""
    meta = next((e for e in events if e.get("type") == "metadata"), {})
    root = Tree(render_event(meta) or Text("trajectory"))
    branches: dict[Any, Tree] = {}
    for event in events:
        kind = event.get("type")
        if kind == "node_start":
            parent = branches.get(_key(event.get("parent")), root)
            branches[_key(event.get("node"))] = parent.add(
                Text.assemble((f"{_node_label(event)}", "bold magenta"), f" · {_short(event.get('query'), 120)}")
            )
        elif kind == "node_end":
            branch = branches.get(_key(event.get("node")), root)
            branch.add(Text(f"■ {event.get('stop_reason')}: {_short(event.get('answer'), 200)}", style="bold"))
        else:
            renderable = render_event(event)
            if renderable is not None and kind != "metadata":
                branches.get(_key(event.get("node")), root).add(renderable)
    return root


def _key(value: Any) -> Any:
    """A node id from a saved file as a dict key (a file may hold lists there)."""
    return value if isinstance(value, (str, int, float, type(None))) else repr(value)
