"""Summaries of eval results: one run's table, runs side by side, and a plot against context size.

Everything here reads result records (the dicts of a results file), so it works the
same on a run that just finished and on files from other machines or days.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.table import Table
from rich.text import Text

from ..errors import EvalError
from .results import latest_results, read_results

__all__ = [
    "Run",
    "Summary",
    "comparison_table",
    "failures",
    "load_runs",
    "percentile",
    "plot_runs",
    "size_bucket",
    "size_table",
    "summarize",
    "summary_table",
]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between ranks; 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Summary(BaseModel):
    label: str = ""
    model: str | None = None
    sub_model: str | None = None
    max_depth: int | None = None
    fingerprint: str | None = None
    tasks: int
    finished: int
    correct: int
    accuracy: float
    """Correct over all tasks (unfinished ones count as wrong)."""
    mean_score: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    model_calls: int
    sub_calls: int
    p50_s: float
    p95_s: float
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    errors: int = 0
    sandbox_restarts: int = 0
    """Sandboxes replaced during tasks (died, hung, or misbehaved)."""
    unpriced_models: list[str] = Field(default_factory=list)
    """Models called without a known price: their cost is not in cost_usd."""


def summarize(records: Sequence[dict[str, Any]], *, total: int | None = None, label: str = "") -> Summary:
    total = len(records) if total is None else total
    times = [float(r.get("elapsed_s", 0.0)) for r in records]
    config = records[0].get("config", {}) if records else {}
    unpriced = sorted({name for r in records for name in (r.get("usage") or {}).get("unpriced_models", [])})
    return Summary(
        label=label,
        model=config.get("model"),
        sub_model=config.get("sub_model"),
        max_depth=config.get("max_depth"),
        fingerprint=records[0].get("fingerprint") if records else None,
        tasks=total,
        finished=len(records),
        correct=sum(1 for r in records if r.get("correct")),
        accuracy=(sum(1 for r in records if r.get("correct")) / total) if total else 0.0,
        mean_score=(sum(float(r.get("score", 0.0)) for r in records) / total) if total else 0.0,
        cost_usd=sum(float(r.get("cost_usd", 0.0)) for r in records),
        input_tokens=sum(int(r.get("input_tokens", 0)) for r in records),
        output_tokens=sum(int(r.get("output_tokens", 0)) for r in records),
        model_calls=sum(int(r.get("model_calls", 0)) for r in records),
        sub_calls=sum(int(r.get("sub_calls", 0)) for r in records),
        p50_s=percentile(times, 0.5),
        p95_s=percentile(times, 0.95),
        stop_reasons=dict(sorted(Counter(str(r.get("stop_reason")) for r in records).items())),
        errors=sum(1 for r in records if r.get("stop_reason") == "error"),
        sandbox_restarts=sum(int(r.get("sandbox_restarts") or 0) for r in records),
        unpriced_models=unpriced,
    )


def _cost(summary: Summary) -> str:
    text = f"${summary.cost_usd:.4f}"
    if summary.unpriced_models:
        text += f" + unpriced ({', '.join(summary.unpriced_models)})"
    return text


def _rows(summary: Summary) -> list[tuple[str, str]]:
    per_task = summary.cost_usd / summary.finished if summary.finished else 0.0
    unfinished = summary.tasks - summary.finished
    return [
        ("model", f"{summary.model} (sub: {summary.sub_model})"),
        ("max depth", str(summary.max_depth)),
        ("tasks", f"{summary.finished}/{summary.tasks} finished" + (f" ({unfinished} not run)" if unfinished else "")),
        ("accuracy", f"{summary.accuracy:.1%} ({summary.correct}/{summary.tasks})"),
        ("mean score", f"{summary.mean_score:.3f}"),
        ("cost", f"{_cost(summary)} (${per_task:.4f}/task)"),
        ("tokens in / out", f"{summary.input_tokens:,} / {summary.output_tokens:,}"),
        ("model calls", f"{summary.model_calls:,}"),
        ("sub-calls", f"{summary.sub_calls:,}"),
        ("sandbox restarts", f"{summary.sandbox_restarts:,}"),
        ("wall time p50 / p95", f"{summary.p50_s:.2f} s / {summary.p95_s:.2f} s"),
        ("stop reasons", ", ".join(f"{k} {v}" for k, v in summary.stop_reasons.items()) or "-"),
    ]


def summary_table(summary: Summary, *, title: str = "eval summary") -> Table:
    table = Table(show_header=False, title=title, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value")
    for key, value in _rows(summary):
        cell = Text(value)  # never markup: model names and labels come from files
        if key == "accuracy":
            cell.stylize("green" if summary.accuracy >= 0.8 else "yellow" if summary.accuracy >= 0.5 else "red")
        table.add_row(key, cell)
    return table


# ------------------------------------------------------------------ several runs


class Run(BaseModel):
    """The results of one configuration in one file."""

    label: str
    source: str
    fingerprint: str
    records: list[dict[str, Any]]


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """One Run per (file, configuration); a re-run task's latest line wins."""
    runs: list[Run] = []
    for path in paths:
        if not Path(path).exists():
            raise EvalError(f"no such results file: {path}", "give the --out file of an eval run")
        if Path(path).is_dir():
            raise EvalError(f"{path} is a directory", "give the --out file of an eval run")
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (fingerprint, _), record in latest_results(read_results(path)).items():
            groups[fingerprint].append(record)
        if not groups:
            raise EvalError(
                f"{path}: no results", "give the --out file of an eval run; `rlm-sandbox view` shows trajectories"
            )
        for fingerprint, records in groups.items():
            config = records[0].get("config", {})
            label = f"{config.get('model')}"
            if config.get("sub_model") and config.get("sub_model") != config.get("model"):
                label += f" / {config.get('sub_model')}"
            label += f", depth {config.get('max_depth')}"
            runs.append(Run(label=label, source=str(path), fingerprint=fingerprint, records=records))
    # Then by whatever else differs between the runs' set-ups (a limit, the endpoint).
    flat = [_flatten(run.records[0].get("config") or {}) for run in runs]
    shown = {"model", "sub_model", "max_depth", "limits.max_depth"}
    differing = sorted(
        {key for config in flat for key in config if key not in shown and len({repr(c.get(key)) for c in flat}) > 1}
    )
    for run, config in zip(runs, flat, strict=True):
        extra = ", ".join(f"{key.removeprefix('limits.')}={config.get(key)}" for key in differing)
        if extra:
            run.label = f"{run.label}, {extra}"
    # Labels must tell runs apart: add the file, then the fingerprint, where they clash.
    for extra in ("source", "fingerprint"):
        counts = Counter(run.label for run in runs)
        for run in runs:
            if counts[run.label] > 1:
                tail = Path(run.source).name if extra == "source" else run.fingerprint
                run.label = f"{run.label} [{tail}]"
    return runs


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def failures(records: Sequence[dict[str, Any]], limit: int = 20) -> list[str]:
    """One line per task that did not pass, saying why: its error, or what it answered instead."""
    lines = []
    for record in records:
        if record.get("correct"):
            continue
        error = str(record.get("error") or "").strip()
        if record.get("stop_reason") == "error":
            first = error.splitlines()[0] if error else "failed"
            why = f"error: {first[:300]}"
        else:
            answer = record.get("answer")
            why = (
                f"expected {str(record.get('expected'))[:100]!r}, got {str(answer)[:100]!r}"
                if answer is not None
                else "no answer"
            )
            why += f" (stop reason {record.get('stop_reason')})"
        lines.append(f"{record.get('id')}: {why}")
    if len(lines) > limit:
        lines = [
            *lines[:limit],
            f"... and {len(lines) - limit} more (every one is in the results file and the JUnit report)",
        ]
    return lines


def comparison_table(runs: Sequence[Run]) -> Table:
    """Runs side by side: one column per run, one row per metric."""
    table = Table(title="runs compared", title_justify="left")
    table.add_column("metric", style="bold")
    summaries = [summarize(run.records, label=run.label) for run in runs]
    for run in runs:
        table.add_column(Text(run.label))
    rows = [_rows(summary) for summary in summaries]
    for index, (key, _) in enumerate(rows[0]):
        table.add_row(key, *(Text(row[index][1]) for row in rows))
    table.add_row("source", *(Text(run.source) for run in runs))
    return table


def size_bucket(record: dict[str, Any]) -> int:
    """The nominal size of a generated task, else the estimated tokens rounded to a power of two."""
    nominal = record.get("size_tokens")
    if nominal:
        return int(nominal)
    tokens = max(1, int(record.get("context_tokens") or 1))
    return 2 ** round(math.log2(tokens))


def _by_size(run: Run) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in run.records:
        groups[(record.get("suite") or "tasks", size_bucket(record))].append(record)
    return groups


def size_table(runs: Sequence[Run]) -> Table:
    """Accuracy and cost per task by suite and context size, one column per run."""
    from .generators import format_size

    table = Table(title="accuracy (cost per task) by context size", title_justify="left")
    table.add_column("suite", style="bold")
    table.add_column("size (tokens)", justify="right")
    for run in runs:
        table.add_column(Text(run.label))
    grouped = [_by_size(run) for run in runs]
    keys = sorted({key for groups in grouped for key in groups})
    for suite, size in keys:
        cells = []
        for groups in grouped:
            records = groups.get((suite, size), [])
            if not records:
                cells.append("-")
                continue
            correct = sum(1 for r in records if r.get("correct"))
            cost = sum(float(r.get("cost_usd", 0.0)) for r in records) / len(records)
            cells.append(f"{correct / len(records):.0%} ({correct}/{len(records)}) ${cost:.4f}")
        table.add_row(Text(suite), format_size(size), *(Text(cell) for cell in cells))
    return table


def plot_runs(runs: Sequence[Run], path: str | Path) -> Path:
    """A PNG: accuracy and cost per task against context size, one line per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalError(
            "writing a plot needs matplotlib: pip install 'rlm-sandbox[plot]' (or pip install matplotlib)"
        ) from None
    figure, (accuracy_axis, cost_axis) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for run in runs:
        sizes: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for record in run.records:
            sizes[size_bucket(record)].append(record)
        xs = sorted(sizes)
        accuracy = [sum(1 for r in sizes[x] if r.get("correct")) / len(sizes[x]) for x in xs]
        cost = [sum(float(r.get("cost_usd", 0.0)) for r in sizes[x]) / len(sizes[x]) for x in xs]
        accuracy_axis.plot(xs, accuracy, marker="o", label=run.label)
        cost_axis.plot(xs, cost, marker="o", label=run.label)
    from matplotlib.ticker import FuncFormatter

    from .generators import format_size

    for axis, ylabel in ((accuracy_axis, "accuracy"), (cost_axis, "cost per task (USD)")):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: format_size(round(value)) if value >= 1 else ""))
        axis.set_xlabel("context size (tokens)")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
    accuracy_axis.set_ylim(-0.05, 1.05)
    cost_axis.set_ylim(bottom=0)
    accuracy_axis.set_title("accuracy vs context size")
    cost_axis.set_title("cost vs context size")
    accuracy_axis.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
