"""The in-sandbox code under attacks/: plain Python files, read at run time, never imported.

They are linted as code (attacks/ruff.toml lists the names the sandbox defines for them)
and shipped as package data.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

_PACKAGE = __name__.rpartition(".")[0]


def _path(stem: str) -> resources.abc.Traversable:
    return resources.files(_PACKAGE).joinpath("attacks", f"{stem}.py")


def exists(stem: str) -> bool:
    return _path(stem).is_file()


@cache
def source(stem: str) -> str:
    """The text of attacks/<stem>.py."""
    return _path(stem).read_text(encoding="utf-8")
