"""Eval tasks: what one line of a tasks file holds, and how its context is found.

A tasks file is JSONL, one task per line::

    {"id": "q1", "context": "inline text ...", "query": "...", "expected": "42"}
    {"id": "q1b", "context_text": "a/b.txt is not a file here, just text", "query": "...", "expected": "x"}
    {"id": "q2", "context": "docs/lease.txt", "query": "...", "expected": "Ann", "scorer": "contains"}
    {"id": "q3", "context": ["a.txt", "b.txt"], "query": "...", "expected": 12, "scorer": {"name": "numeric", "tolerance": 1}}
    {"id": "q4", "context_path": "big.txt", "query": "...", "expected": ["x", "y"], "scorer": "f1"}
    {"id": "q5", "generator": {"suite": "niah", "seed": 0, "index": 3, "size": 8192}, "query": "...", "expected": "1234567"}

`context` is inline text (or any JSON value), unless it names files: a one-line
string naming an existing file (relative to the tasks file, or absolute) is that
file's text, and a list whose every item names an existing file is the list of
their texts (`.json` files are parsed). A one-line string that looks like a path
(it has a path separator or ends in a known extension) but names no file is an
error when the tasks are loaded, not text sent to the model: inline text that looks
like a path goes in `context_text`, which is always text. `context_path` always
means files. `generator` makes the context again, deterministically, from a
built-in synthetic suite.

Contexts are loaded only when the task runs, one task at a time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import EvalError
from .generators import GeneratorRef, materialize
from .scorers import ScorerSpec, default_scorer

__all__ = ["EvalError", "GeneratorRef", "ScorerSpec", "Task", "load_tasks", "write_tasks"]

_MAX_PATH_CHARS = 4096


# Extensions that make a one-line `context` a file name rather than text.
_FILE_SUFFIX = re.compile(r"\.(txt|text|md|json|jsonl|csv|tsv|log|xml|html?|ya?ml|py|pdf|rst|toml|ini)$", re.IGNORECASE)


def _looks_like_path(value: str) -> bool:
    if not value or "\n" in value or len(value) > _MAX_PATH_CHARS:
        return False
    return "/" in value or "\\" in value or _FILE_SUFFIX.search(value.strip()) is not None


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    expected: Any
    context: Any = None
    context_text: str | None = None
    """Inline text, never read as a file name."""
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
        sources = ("context", "context_text", "context_path", "generator")
        given = [name for name in sources if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(sources)} (got {given or 'none'})")
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
            return materialize(self.generator)
        if self.context_text is not None:
            return self.context_text
        if self.context_path is not None:
            paths = [self.context_path] if isinstance(self.context_path, str) else self.context_path
            texts = [_read(self._resolve(p, must_exist=True)) for p in paths]
            return texts[0] if isinstance(self.context_path, str) else texts
        context = self.context
        if isinstance(context, str):
            path = self._resolve(context)
            return _read(path) if path is not None else context
        if isinstance(context, list) and context and all(isinstance(item, str) for item in context):
            found = [path for path in (self._resolve(item) for item in context) if path is not None]
            if len(found) == len(context):
                return [_read(path) for path in found]
        return context

    def check_files(self) -> None:
        """Raise EvalError now for a named file that does not exist (rather than when the task runs)."""
        if self.context_path is not None:
            for name in [self.context_path] if isinstance(self.context_path, str) else self.context_path:
                self._resolve(name, must_exist=True)
            return
        names = self.context if isinstance(self.context, list) else [self.context]
        if not all(isinstance(name, str) for name in names):
            return
        for name in names:
            if self._resolve(name) is None and _looks_like_path(name):
                where = Path(name).expanduser()
                if not where.is_absolute() and self._base_dir is not None:
                    where = self._base_dir / where
                raise EvalError(
                    f"task {self.id}: context {name[:200]!r} looks like a file name, but {str(where)[:300]!r} does not exist",
                    "fix the path, or put inline text in context_text",
                )

    def fingerprint(self, context: Any = None) -> str:
        """What decides this task's result besides the run's set-up: query, expected, scorer, context content.

        `context` is the loaded context if the caller has it; else it is loaded (or, for a
        generated one, its recipe is hashed: the same recipe makes the same text).
        """
        digest = hashlib.sha256()
        scorer = self.scorer or default_scorer(self.expected)
        head = {"query": self.query, "expected": self.expected, "scorer": scorer.model_dump(mode="json")}
        digest.update(json.dumps(head, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
        if self.generator is not None:
            digest.update(b"generator:" + self.generator.model_dump_json().encode())
        else:
            value = self.load_context() if context is None else context
            if isinstance(value, str):
                digest.update(b"text:" + value.encode("utf-8", "surrogatepass"))
            else:
                canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
                digest.update(b"json:" + canonical.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:16]

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

    @overload
    def _resolve(self, name: str, *, must_exist: Literal[True]) -> Path: ...
    @overload
    def _resolve(self, name: str, *, must_exist: bool = False) -> Path | None: ...
    def _resolve(self, name: str, *, must_exist: bool = False) -> Path | None:
        if not name or "\n" in name or len(name) > _MAX_PATH_CHARS:
            if must_exist:
                raise EvalError(f"task {self.id}: {name[:80]!r} is not a file name", "context_path takes file names")
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
            raise EvalError(
                f"task {self.id}: context file {str(path)!r} does not exist", "fix the path in context_path"
            )
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
            task.with_base_dir(path.parent)
            try:
                task.check_files()
            except EvalError as exc:
                raise EvalError(f"{path}:{number}: {exc.what}", exc.fix) from None
            tasks.append(task)
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
