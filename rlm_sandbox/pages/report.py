"""The page of eval results: runs side by side, and every task with its answer and cost."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evals.report import Run, summarize
from .page import build_page

# What a task row shows; the rest of a record (config, usage) is in the summary.
_RECORD_FIELDS = (
    "task_id", "suite", "kind", "size_tokens", "query", "answer", "expected", "scorer", "score", "correct",
    "score_detail", "stop_reason", "error", "cost_usd", "input_tokens", "output_tokens", "model_calls",
    "sub_calls", "iterations", "elapsed_s", "context_chars", "trajectory_path", "finished_at",
)  # fmt: skip


def report_page(runs: Sequence[Run]) -> str:
    data: list[dict[str, Any]] = []
    for run in runs:
        data.append(
            {
                "label": run.label,
                "source": run.source,
                "fingerprint": run.fingerprint,
                "summary": summarize(run.records, label=run.label).model_dump(),
                "config": run.records[0].get("config", {}) if run.records else {},
                "records": [{key: record.get(key) for key in _RECORD_FIELDS} for record in run.records],
            }
        )
    return build_page(title="RLM eval report", kind="report", data={"runs": data}, scripts=["report.js"])


def write_report_page(runs: Sequence[Run], out: str | Path) -> Path:
    path = Path(out)
    path.write_text(report_page(runs), encoding="utf-8")
    return path
