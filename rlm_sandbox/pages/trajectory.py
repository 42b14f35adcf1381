"""The page of one trajectory (a JSONL event log): tree, turns, timeline, totals, search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .page import build_page


def trajectory_page(events: list[dict[str, Any]], *, source: str | None = None) -> str:
    """The HTML of a page showing `events` (as `read_trajectory` returns them)."""
    meta = next((e for e in events if e.get("type") == "metadata"), {})
    title = f"RLM trajectory {meta.get('run_id', '')}".strip()
    return build_page(
        title=title,
        kind="trajectory",
        data={"events": events, "source": source},
        scripts=["trajectory.js"],
    )


def write_trajectory_page(events: list[dict[str, Any]], out: str | Path, *, source: str | None = None) -> Path:
    path = Path(out)
    path.write_text(trajectory_page(events, source=source), encoding="utf-8")
    return path
