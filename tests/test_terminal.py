"""terminal.py: control characters in untrusted text are shown, never interpreted."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress
from rich.text import Text

from rlm_sandbox import terminal
from rlm_sandbox.terminal import SafeConsole, visible

# Window title, clear screen, clipboard write (OSC 52), 8-bit CSI / OSC / ST, DEL, DCS,
# a right-to-left override, backspace, lone surrogate.
HOSTILE = "A\x1b]0;PWNED-TITLE\x07B\x1b[2JC\x1b]52;c;UFdORUQ=\x07D\x9b31mE\x9d0;x\x9cF\x7fG\x1bP1$qq\x1b\\H\u202eI\x08J\ud800K\r"
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# What rich itself writes: SGR colours and, for live displays, cursor and line controls.
RICH_OWN = re.compile(r"\x1b\[[0-9;?]*[mKAGhlBCD]")


def test_visible_escapes_every_c0_c1_and_del_but_keeps_tab_and_newline():
    for code in list(range(0x20)) + list(range(0x7F, 0xA0)):
        shown = visible(chr(code))
        if chr(code) in "\t\n":
            assert shown == chr(code)
        else:
            assert shown == f"\\x{code:02x}"
    assert visible("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
    assert visible("\u202e") == "\\u202e" and visible("\ud800") == "\\ud800"


@given(st.text())
def test_visible_never_leaves_a_control_character_and_is_idempotent(text):
    shown = visible(text)
    assert FORBIDDEN.search(shown) is None
    assert visible(shown) == shown


def _render(console_class, renderable) -> str:
    buffer = io.StringIO()
    console_class(file=buffer, force_terminal=True, color_system="truecolor", width=200, highlight=False).print(
        renderable
    )
    return buffer.getvalue()


@pytest.mark.parametrize(
    "renderable",
    [
        HOSTILE,
        Text(HOSTILE, style="bold red"),
        Panel(Text(HOSTILE), title=Text(HOSTILE), border_style="blue"),
    ],
)
def test_safe_console_shows_hostile_text_and_keeps_its_own_styles(renderable):
    written = _render(SafeConsole, renderable)
    assert RICH_OWN.sub("", written).count("\x1b") == 0
    assert FORBIDDEN.search(RICH_OWN.sub("", written).replace("\r", "")) is None
    plain = RICH_OWN.sub("", written)
    assert "\\x1b]0;PWNED-TITLE" in plain and "\\x9b31m" in plain
    if not isinstance(renderable, str):
        assert "\x1b[" in written, "styles still reach the terminal"


def test_a_plain_console_would_pass_the_sequences_through():
    """What the mechanism exists for: rich alone forwards ESC ] and ESC [ 2 J."""

    class PlainConsole(Console):  # rich as shipped, even after the CLI patched it in this process
        _render_buffer = terminal._original_render_buffer

    assert "\x1b]0;PWNED-TITLE" in _render(PlainConsole, HOSTILE)


def test_install_guards_terminal_streams_and_every_console(monkeypatch):
    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    class Pipe(io.StringIO):
        def isatty(self):
            return False

    tty, pipe = FakeTTY(), Pipe()
    monkeypatch.setattr("sys.stdout", tty)
    monkeypatch.setattr("sys.stderr", pipe)
    monkeypatch.setattr(Console, "_render_buffer", Console._render_buffer)  # undone after the test
    monkeypatch.setattr(terminal, "_installed", False)
    terminal.install()
    import sys

    print(HOSTILE)  # a plain write to a terminal
    sys.stderr.write(HOSTILE)  # a pipe: byte for byte
    Console(force_terminal=True, color_system="standard").print(Text(HOSTILE, style="red"))  # any console
    with Progress(console=Console(file=sys.stdout, force_terminal=True)) as progress:
        progress.add_task(HOSTILE, total=1)
    shown = tty.getvalue()
    assert RICH_OWN.sub("", shown).count("\x1b") == 0
    assert FORBIDDEN.search(RICH_OWN.sub("", shown).replace("\r", "")) is None
    assert RICH_OWN.sub("", shown).count("\\x1b]0;PWNED-TITLE") >= 3
    assert pipe.getvalue() == HOSTILE
    terminal.install()  # idempotent: not guarded twice
    assert sys.stdout.guarded is tty
