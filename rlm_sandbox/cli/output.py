"""What every command shares for output: the two consoles, the exit codes, JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..terminal import SafeConsole

# Colour only where it carries meaning (pass/fail/warning): no automatic highlighting.
out = SafeConsole(highlight=False)
err = SafeConsole(stderr=True, highlight=False)

# `eval`'s exit codes (also in the README and `eval --help`).
EXIT_OK, EXIT_UNDER, EXIT_USAGE, EXIT_TASK_ERRORS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Exit(Exception):
    """Leave with this exit code; what happened has been said already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _status(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[red]FAIL[/red]"


def _write_json(payload: Any) -> None:
    # ASCII-only: valid JSON whatever the text holds, and nothing a terminal could act on.
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=True, default=str) + "\n")
