"""`rlm-sandbox chat`: an interactive prompt over one context, one session.

Each line is a query to the same `Session`: one sandbox with the context loaded
once, whose variables and conversation carry from query to query. Line editing and
history come from `readline` where Python has it; the history is kept in a file.
Ctrl-C during a query stops it and ends the session (its sandbox is gone); at the
prompt it only clears the line. Ctrl-D, `/exit` or `/quit` leave.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .rlm import RLM, RLMResult

__all__ = ["DEFAULT_HISTORY", "chat_loop"]

DEFAULT_HISTORY = (
    Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "rlm-sandbox" / "chat_history"
)
_HISTORY_LINES = 1000
_EXIT = {"/exit", "/quit", "exit", "quit"}


def _readline(history: Path | None) -> Any:
    """The readline module with `history` loaded, or None where Python has none."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        return None
    if history is not None:
        try:
            readline.read_history_file(history)
        except OSError:
            pass  # first use, or unreadable: start empty
        readline.set_history_length(_HISTORY_LINES)
    return readline


def _save_history(readline: Any, history: Path | None) -> None:
    if readline is None or history is None:
        return
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(history)
    except OSError:
        pass  # a read-only home must not turn a finished chat into an error


def chat_loop(
    rlm: RLM,
    context: Any,
    *,
    show: Callable[[RLMResult], None],
    say: Callable[[str], None],
    history: Path | None = DEFAULT_HISTORY,
    prompt: str = "rlm> ",
) -> int:
    """Read queries until end of input; answer each in one session. Returns an exit code."""
    readline = _readline(history) if sys.stdin.isatty() else None
    interactive = sys.stdin.isatty()
    try:
        with rlm.session(context) as chat:
            say(
                f"session ready to start: {chat._info.type_name} context of {chat._info.total_chars:,} characters. "
                "Ask a question; Ctrl-D or /exit to leave."
            )
            while True:
                try:
                    line = input(prompt if interactive else "")
                except EOFError:
                    break
                except KeyboardInterrupt:
                    say("")  # at the prompt, Ctrl-C only clears the line
                    continue
                query = line.strip()
                if not query:
                    continue
                if query in _EXIT:
                    break
                try:
                    result = chat.completion(query)
                except KeyboardInterrupt:
                    say("interrupted: the query was stopped and the session's sandbox removed")
                    return 130
                show(result)
            say(
                f"{chat.queries} quer{'y' if chat.queries == 1 else 'ies'}, {chat.usage.calls} model calls, "
                f"${chat.usage.cost_usd:.4f}"
            )
    finally:
        _save_history(readline, history)
    return 0
