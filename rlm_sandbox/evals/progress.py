"""Live progress of an eval run: what the runner tells a display, and the displays.

`RichProgress` is a rich progress bar on a terminal and one line per task elsewhere
(CI logs); `NoProgress` shows nothing.
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .results import TaskResult
from .tasks import Task

__all__ = ["NoProgress", "ProgressSink", "RichProgress"]


class ProgressSink(Protocol):
    """What the runner tells a display. Called from the thread that called `run_eval`."""

    def notes(self, lines: list[str]) -> None: ...
    def start(self, total: int, resumed: int) -> None: ...
    def task_started(self, task: Task) -> None: ...
    def task_finished(self, result: TaskResult) -> None: ...
    def interrupted(self) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def notes(self, lines: list[str]) -> None: ...
    def start(self, total: int, resumed: int) -> None: ...
    def task_started(self, task: Task) -> None: ...
    def task_finished(self, result: TaskResult) -> None: ...
    def interrupted(self) -> None: ...
    def stop(self) -> None: ...


class RichProgress:
    """done / failed / running, cost so far and ETA, updated as tasks start and finish."""

    def __init__(self, console: Console, *, concurrency: int = 1) -> None:
        self.console = console
        self.concurrency = concurrency
        self.done = self.correct = self.wrong = self.errors = self.running = 0
        self.cost = 0.0
        self.total = 0
        self._progress: Progress | None = None
        self._bar: TaskID | None = None

    def _status(self) -> str:
        failed = self.wrong + self.errors
        return (
            f"[green]✓ {self.correct}[/green]  [red]✗ {failed}[/red]"
            + (f" ([red]{self.errors} error{'s' if self.errors != 1 else ''}[/red])" if self.errors else "")
            + f"  running {self.running}  ${self.cost:.4f}"
        )

    def notes(self, lines: list[str]) -> None:
        for line in lines:
            self.console.print(f"[yellow]note:[/yellow] {escape(line)}", soft_wrap=True)

    def start(self, total: int, resumed: int) -> None:
        self.total = total
        if resumed:
            self.console.print(f"resuming: {resumed} task(s) already finished with this configuration are skipped")
        if total == 0:
            self.console.print("nothing to run")
            return
        if self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("eval"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._bar = self._progress.add_task("eval", total=total, status=self._status())
        else:
            self.console.print(f"running {total} task(s), {self.concurrency} at a time")

    def task_started(self, task: Task) -> None:
        self.running += 1
        self._refresh(advance=0)

    def task_finished(self, result: TaskResult) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.cost += result.cost_usd
        if result.stop_reason == "error":
            self.errors += 1
        elif result.correct:
            self.correct += 1
        else:
            self.wrong += 1
        self._refresh(advance=1)
        if self._progress is None:
            if result.correct:
                mark = "[green]✓[/green]"
            else:
                mark = "[red]error[/red]" if result.stop_reason == "error" else "[red]✗[/red]"
            detail = f" {escape(result.error[:200])}" if result.error and result.stop_reason == "error" else ""
            self.console.print(
                f"[{self.done}/{self.total}] {escape(result.id)} {mark} {result.stop_reason} "
                f"{result.elapsed_s:.1f}s ${result.cost_usd:.4f} (total ${self.cost:.4f}){detail}",
                soft_wrap=True,
            )

    def _refresh(self, advance: int) -> None:
        if self._progress is not None and self._bar is not None:
            self._progress.update(self._bar, advance=advance, status=self._status())

    def interrupted(self) -> None:
        pass

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
