"""Built-in synthetic suites: `n` tasks per context size, each a reference to a generated context.

The suites themselves (`niah`, `aggregation`, `pairs`), the queries and expected
answers they make and the context text are in `generators`; this module turns them
into `Task`s. The names below are re-exported from there for callers of this module.
"""

from __future__ import annotations

from ..errors import EvalError
from .generators import (
    CHARS_PER_TOKEN,
    SUITES,
    GeneratorRef,
    format_size,
    iter_context,
    materialize,
    parse_size,
    suite_named,
    task_spec,
)
from .tasks import Task

__all__ = [
    "CHARS_PER_TOKEN",
    "SUITES",
    "format_size",
    "generate_suite",
    "iter_context",
    "materialize",
    "parse_size",
    "task_spec",
]


def generate_suite(name: str, n: int, sizes: list[int] | int, seed: int = 0) -> list[Task]:
    """`n` tasks per size; only queries and expected answers are made now, not contexts."""
    suite = suite_named(name)
    if n < 1:
        raise EvalError("--n must be at least 1")
    tasks = []
    for size in [sizes] if isinstance(sizes, int) else sizes:
        for index in range(n):
            ref = GeneratorRef(suite=name, seed=seed, index=index, size=size)
            spec = suite.spec(ref)
            tasks.append(
                Task(
                    id=f"{name}-{format_size(size)}-s{seed}-{index:03d}",
                    query=spec.query,
                    expected=spec.expected,
                    generator=ref,
                    scorer=spec.scorer,
                    meta={"kind": spec.kind},
                )
            )
    return tasks
