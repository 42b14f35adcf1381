"""Eval tasks: what one line of a tasks file holds, and how its context is found.

A tasks file is JSONL, one task per line::

    {"id": "q1", "context": "inline text ...", "query": "...", "expected": "42"}
    {"id": "q2", "context": "docs/lease.txt", "query": "...", "expected": "Ann", "scorer": "contains"}
    {"id": "q3", "context": ["a.txt", "b.txt"], "query": "...", "expected": 12, "scorer": {"name": "numeric", "tolerance": 1}}
    {"id": "q4", "context_path": "big.txt", "query": "...", "expected": ["x", "y"], "scorer": "f1"}
    {"id": "q5", "generator": {"suite": "niah", "seed": 0, "index": 3, "size": 8192}, "query": "...", "expected": "1234567"}

`context` is inline text (or any JSON value), unless it names files: a one-line
string naming an existing file (relative to the tasks file, or absolute) is that
file's text, and a list whose every item names an existing file is the list of
their texts (`.json` files are parsed). `context_path` always means files, so a
missing one is an error rather than a silent inline string. `generator` makes the
context again, deterministically, from a built-in synthetic suite.

Contexts are loaded only when the task runs, one task at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import RLMSandboxError

__all__ = ["EvalError", "GeneratorRef", "ScorerSpec", "Task", "load_tasks", "write_tasks"]

_MAX_PATH_CHARS = 4096


class EvalError(RLMSandboxError):
    """A tasks file, a task or an eval run is unusable as given."""


ScorerName = Literal["exact", "contains", "numeric", "f1"]


class ScorerSpec(BaseModel):
    """How an answer is compared with `expected`.

    exact: equal after normalising case, whitespace, surrounding quotes and a final period.
    contains: the normalised expected text occurs in the normalised answer.
    numeric: the answer's number is within `tolerance` of expected (relative to |expected| if `relative`).
    f1: F1 between the set of expected items and the items of the answer (lines, or pairs
        like "(a, b)" when the expected items are pairs); correct when F1 >= `threshold`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ScorerName
    tolerance: float = Field(default=0.0, ge=0)
    relative: bool = False
    threshold: float = Field(default=1.0, ge=0, le=1)


class GeneratorRef(BaseModel):
    """A context made by a built-in suite: the same fields give the same text anywhere."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str
    seed: int
    index: int = Field(ge=0)
    size: int = Field(gt=0, description="target size in tokens (about 4 characters each)")


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    expected: Any
    context: Any = None
    context_path: str | list[str] | None = None
    generator: GeneratorRef | None = None
    scorer: ScorerSpec | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    _base_dir: Path | None = PrivateAttr(default=None)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("scorer", mode="before")
    @classmethod
    def _scorer_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_context(self) -> Task:
        given = [name for name in ("context", "context_path", "generator") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of context, context_path or generator (got {given or 'none'})")
        if self.expected is None:
            raise ValueError("expected must not be null")
        return self

    # ------------------------------------------------------------- context

    def with_base_dir(self, base_dir: str | Path | None) -> Task:
        self._base_dir = Path(base_dir) if base_dir is not None else None
        return self

    @property
    def suite(self) -> str | None:
        return self.generator.suite if self.generator else self.meta.get("suite")

    @property
    def size_tokens(self) -> int | None:
        """The nominal size of a generated context (tokens), if this task has one."""
        return self.generator.size if self.generator else self.meta.get("size")

    def load_context(self) -> Any:
        """The context this task runs on: read, parsed or generated now."""
        if self.generator is not None:
            from .suites import materialize

            return materialize(self.generator)
        if self.context_path is not None:
            paths = [self.context_path] if isinstance(self.context_path, str) else self.context_path
            texts = [_read(self._resolve(p, must_exist=True)) for p in paths]  # type: ignore[arg-type]
            return texts[0] if isinstance(self.context_path, str) else texts
        context = self.context
        if isinstance(context, str):
            path = self._resolve(context)
            return _read(path) if path is not None else context
        if isinstance(context, list) and context and all(isinstance(item, str) for item in context):
            paths = [self._resolve(item) for item in context]
            if all(path is not None for path in paths):
                return [_read(path) for path in paths]  # type: ignore[arg-type]
        return context

    def inline(self) -> Task:
        """A copy whose file-based context is read into the task (for workers without the files)."""
        if self.generator is not None or (self.context_path is None and not self._names_files()):
            return self
        copy = self.model_copy(update={"context": self.load_context(), "context_path": None})
        copy._base_dir = self._base_dir
        return copy

    def _names_files(self) -> bool:
        context = self.context
        if isinstance(context, str):
            return self._resolve(context) is not None
        if isinstance(context, list) and context and all(isinstance(item, str) for item in context):
            return all(self._resolve(item) is not None for item in context)
        return False

    def _resolve(self, name: str, *, must_exist: bool = False) -> Path | None:
        if not name or "\n" in name or len(name) > _MAX_PATH_CHARS:
            if must_exist:
                raise EvalError(f"task {self.id}: {name[:80]!r} is not a file name")
            return None
        path = Path(name).expanduser()
        if not path.is_absolute() and self._base_dir is not None:
            path = self._base_dir / path
        try:
            exists = path.is_file()
        except OSError:
            exists = False
        if exists:
            return path
        if must_exist:
            raise EvalError(f"task {self.id}: context file {str(path)!r} does not exist")
        return None


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix.lower() == ".json" else text


def load_tasks(path: str | Path) -> list[Task]:
    """Every task of a JSONL file, validated; errors name the line. Blank lines are skipped."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvalError(f"cannot read the tasks file: {exc}") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise EvalError(f"{path}:{number}: a task is a JSON object, got {type(data).__name__}")
            try:
                task = Task.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors(include_url=False)
                )
                raise EvalError(f"{path}:{number}: {problems}") from None
            if task.id in seen:
                raise EvalError(f"{path}:{number}: task id {task.id!r} is already used on line {seen[task.id]}")
            seen[task.id] = number
            tasks.append(task.with_base_dir(path.parent))
    if not tasks:
        raise EvalError(f"{path}: no tasks")
    return tasks


def write_tasks(tasks: Iterable[Task], path: str | Path) -> int:
    """Write tasks as JSONL (generated contexts stay references); returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for task in tasks:
            handle.write(task.model_dump_json(exclude_none=True, exclude_defaults=True) + "\n")
            count += 1
    return count
