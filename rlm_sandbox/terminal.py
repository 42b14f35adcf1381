"""Terminal safety: untrusted text is shown on a terminal, never interpreted by it.

Model replies, sandbox output, contexts, results files and error messages may hold
terminal control sequences (ESC ] 0 sets the window title, ESC [ 2 J clears the
screen, OSC 52 writes the clipboard; U+009B is a one-character CSI). Terminals have
had code-execution bugs reachable through such sequences, so every control
character (C0 but tab and newline, DEL, C1), the bidirectional overrides that make
text read differently from what it is, and lone surrogates are replaced by a visible
escape such as ``\\x1b`` before they reach a terminal.

One mechanism covers every way text leaves the CLI, including code added later:

- rich consoles: `install()` makes every `rich.console.Console` in the process
  sanitise the text of what it renders (never its own style and cursor codes);
  `SafeConsole` does the same without touching rich globally (the library's verbose
  view uses it).
- everything else (`print`, `sys.stdout.write`, tracebacks, warnings, argparse):
  `install()` puts a guard on `sys.stdout` and `sys.stderr` when they are terminals,
  which lets through unchanged only what a sanitising console rendered.

A pipe or a file gets plain writes byte for byte (`run`'s answer, `exec`'s output:
that is their point; `--json` is ASCII-only JSON anyway). Only terminal output pays
anything, and the model/sandbox round trips never write to a terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.segment import Segment

__all__ = ["SafeConsole", "install", "visible"]

# C0 except \t and \n; DEL and C1; bidi embeddings, overrides and isolates; surrogates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every character a terminal could act on shown as an escape (``\\x1b``)."""
    if _UNSAFE.search(text) is None:  # the common case costs one scan, no copy
        return text
    return _UNSAFE.sub(_escape, text)


class _Rendered(str):
    """Output of a sanitising console: its escape codes are rich's own, so the guard passes it."""

    __slots__ = ()


_original_render_buffer = Console._render_buffer


def _safe_render_buffer(self: Console, buffer: Iterable[Segment]) -> str:
    # Control segments (cursor moves of a live progress bar) are rich's own; text is not.
    cleaned = (
        segment
        if segment.control or _UNSAFE.search(segment.text) is None
        else Segment(visible(segment.text), segment.style, segment.control)
        for segment in buffer
    )
    return _Rendered(_original_render_buffer(self, cleaned))


class SafeConsole(Console):
    """A rich Console whose rendered text never carries a raw control character."""

    _render_buffer = _safe_render_buffer


class _GuardedStream:
    """A terminal stream that shows the control characters of plain writes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def guarded(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        self._stream.write(text if isinstance(text, _Rendered) else visible(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


_installed = False


def install() -> None:
    """Make this process's terminal output safe (the CLI calls it first). Idempotent."""
    global _installed
    if not _installed:
        Console._render_buffer = _safe_render_buffer  # type: ignore[method-assign]
        _installed = True
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _GuardedStream) and _is_terminal(stream):
            setattr(sys, name, _GuardedStream(stream))
