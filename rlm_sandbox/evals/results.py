"""The results file: one JSON line per finished task, appended as each one finishes.

`ResultsWriter` is the only code that writes it. Every line is written whole, flushed
and fsync'ed under a lock, so a crash or Ctrl-C loses at most the line being written;
`read_results` skips such a torn line, and the writer starts a new line after one.
A line records the run's configuration fingerprint (models, endpoint, limits) and
the task's own (query, expected answer, scorer, and the content of its context), so
resuming skips exactly the tasks already finished with the same set-up. Files
written before results said `id` (they said `task_id`) still read.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field

__all__ = ["ResultsWriter", "TaskResult", "latest_results", "read_results"]


class TaskResult(BaseModel):
    """What one task's run produced, scored."""

    id: str
    """The task's id, as in the tasks file."""
    fingerprint: str
    """Hash of `config`: results with the same fingerprint come from the same set-up."""
    task_fingerprint: str = ""
    """Hash of the task: query, expected, scorer and its context's content."""
    config: dict[str, Any]
    """model, sub_model, base_url, max_depth and every limit."""
    suite: str | None = None
    kind: str | None = None
    size_tokens: int | None = None
    """The nominal size of a generated context; None for a context from a tasks file."""
    query: str
    answer: str | None
    expected: Any
    scorer: str
    score: float
    correct: bool
    score_detail: str | None = None
    stop_reason: str
    error: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    """`Usage` of the whole completion tree: per-model and total calls, tokens and cost."""
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    sub_calls: int = 0
    """llm_query / rlm_query calls made from the sandboxes (each prompt of a batch counts)."""
    iterations: int = 0
    sandboxes_started: int = 0
    sandbox_restarts: int = 0
    """Sandboxes replaced after they died, hung or misbehaved during the task."""
    elapsed_s: float
    """Wall time of the task: context load, the completion and scoring."""
    context_chars: int = 0
    context_tokens: int = 0
    """Estimated as characters / 4."""
    trajectory_path: str | None = None
    worker: str
    """host:pid of the process that ran the task."""
    finished_at: str


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete result line of a results file; torn or foreign lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    results = []
    with path.open("rb") as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not isinstance(record, dict) or "fingerprint" not in record:
                continue
            if "id" not in record and "task_id" in record:  # written before results said `id`
                record["id"] = record.pop("task_id")
            if "id" in record:
                results.append(record)
    return results


def latest_results(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last result per (fingerprint, task id): a re-run task supersedes the earlier line."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        latest[(str(record["fingerprint"]), str(record["id"]))] = record
    return latest


class ResultsWriter:
    """Appends results to a JSONL file, whole lines only, durable before it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("ab")
            # A torn last line (a crash mid-write) must not swallow the next record.
            if handle.tell() > 0:
                with self.path.open("rb") as reader:
                    reader.seek(-1, os.SEEK_END)
                    if reader.read(1) != b"\n":
                        handle.write(b"\n")
            self._file = handle
        return self._file

    def write(self, result: TaskResult) -> None:
        # ASCII JSON: whatever a model or sandbox wrote (lone surrogates included) stays valid.
        line = (json.dumps(result.model_dump(mode="json"), ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            handle = self._open()
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
