"""A JUnit XML report of an eval run, for CI systems (GitLab, Jenkins, GitHub test reporters).

One <testsuite> per suite (or "tasks" for a tasks file), one <testcase> per task. A
wrong answer is a <failure>; a task that could not run or finish (stop_reason
"error") is an <error>; a task without a result (an interrupted run) is <skipped>.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..terminal import visible

__all__ = ["write_junit"]

_MAX_TEXT = 4000


def _clip(value: Any, limit: int = _MAX_TEXT) -> str:
    text = "" if value is None else str(value)
    # XML 1.0 cannot carry most control characters (even escaped), lone surrogates or
    # U+FFFE/U+FFFF: they are written as visible escapes (\x1b), like on a terminal.
    text = visible(text).replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit:,} more characters)"


def write_junit(
    results: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    unfinished: Sequence[str] = (),
    properties: dict[str, Any] | None = None,
    name: str = "rlm-sandbox eval",
) -> Path:
    suites: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        suites[record.get("suite") or "tasks"].append(record)
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    suite_items = list(suites.items()) + ([("not run", [])] if unfinished else [])
    for suite_name, records in suite_items:
        suite = ET.SubElement(
            root, "testsuite", name=_clip(suite_name, 500), timestamp=stamp, hostname=socket.gethostname()
        )
        if properties:
            props = ET.SubElement(suite, "properties")
            for key, value in properties.items():
                ET.SubElement(props, "property", name=str(key), value=_clip(value, 500))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        for record in records:
            elapsed = float(record.get("elapsed_s", 0.0))
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_clip(f"rlm_sandbox.eval.{suite_name}", 500),
                name=_clip(record.get("id"), 500),
                time=f"{elapsed:.3f}",
            )
            counts["tests"] += 1
            counts["time"] += elapsed
            answer, expected = record.get("answer"), record.get("expected")
            if record.get("stop_reason") == "error":
                counts["errors"] += 1
                error = ET.SubElement(case, "error", message=_clip(record.get("error") or "error", 500), type="error")
                error.text = _clip(record.get("error"))
            elif not record.get("correct"):
                counts["failures"] += 1
                message = (
                    f"expected {_clip(expected, 200)!s}, got {_clip(answer, 200)!s} "
                    f"(score {float(record.get('score', 0.0)):.3f}, stop reason {record.get('stop_reason')})"
                )
                failure = ET.SubElement(
                    case, "failure", message=_clip(message, 1000), type=_clip(record.get("stop_reason"), 100)
                )
                detail = record.get("score_detail")
                failure.text = _clip(
                    f"query: {record.get('query')}\nexpected: {expected}\nanswer: {answer}"
                    + (f"\ndetail: {detail}" if detail else "")
                )
            out = ET.SubElement(case, "system-out")
            out.text = _clip(
                f"answer: {answer}\nstop reason: {record.get('stop_reason')}\n"
                f"cost: ${float(record.get('cost_usd', 0.0)):.4f}, model calls: {record.get('model_calls')}, "
                f"sub-calls: {record.get('sub_calls')}"
            )
        if suite_name == "not run":
            for task_id in unfinished:
                case = ET.SubElement(
                    suite, "testcase", classname="rlm_sandbox.eval.not_run", name=_clip(task_id, 500), time="0"
                )
                ET.SubElement(case, "skipped", message="not run: the eval was interrupted")
                counts["tests"] += 1
                counts["skipped"] += 1
        for key, value in counts.items():
            suite.set(key, f"{value:.3f}" if key == "time" else str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(value))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path = Path(path)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
