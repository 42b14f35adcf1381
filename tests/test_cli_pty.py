"""Every command under a pseudo-terminal, with hostile text in each source it shows.

Model replies, sandbox output, task files, results files, error messages, doctor's
probe and audit's observations all carry sequences that set the window title, clear
the screen, write the clipboard (OSC 52) and their 8-bit forms. On the terminal they
must appear as visible escapes (``\\x1b]0;...``); the only escape sequences the
terminal receives are rich's own colours and cursor moves.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rlm_sandbox.evals.results import read_results

from .evals.helpers import cli_env, is_root, turn_of, write_jsonl
from .fakes.fake_openai import FakeOpenAIServer, Reply

# Window title, clear screen, clipboard write, 8-bit CSI / OSC / ST, DEL, DCS, bidi override, backspace.
HOSTILE = "A\x1b]0;PWNED-TITLE\x07B\x1b[2JC\x1b]52;c;UFdORUQ=\x07D\x9b31mE\x9d0;x\x9cF\x7fG\x1bP1$qq\x1b\\H\u202eI\x08J"
HOSTILE_CODE = f"h = ''.join(map(chr, {[ord(c) for c in HOSTILE]}))"

# What rich itself sends: SGR colours; cursor show/hide, line erase and moves of a live display.
_RICH_OWN = re.compile(rb"\x1b\[[0-9;?]*[mKAGhlBCD]")
_RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")


def run_in_pty(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> tuple[int, bytes]:
    """The CLI with stdout and stderr on a terminal (300 columns); its exit code and every byte it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 300, 0, 0))
    environment = (env or cli_env()) | {"TERM": "xterm-256color", "COLUMNS": "300"}
    environment.pop("NO_COLOR", None)
    command = list(args) if args[0] == sys.executable else [sys.executable, "-m", "rlm_sandbox.cli", *args]
    process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, b"".join(chunks)


def assert_shown_not_interpreted(output: bytes, *, marker: bool = True, cell_traceback: bool = False) -> str:
    """No control sequence but rich's own reached the terminal; the hostile text is there, escaped."""
    rest = _RICH_OWN.sub(b"", output)
    assert b"\x1b" not in rest, _around(rest, b"\x1b")
    raw = _RAW_CONTROL.search(rest.replace(b"\r", b""))
    assert raw is None, _around(rest, raw.group())
    text = rest.decode("utf-8")
    assert cell_traceback or "Traceback" not in text  # only the sandboxed code's own, for exec
    if marker:
        assert "PWNED-TITLE" in text and "\\x1b" in text and "\\x9b" in text, text[-3000:]
    return text


def _around(data: bytes, needle: bytes) -> bytes:
    at = data.find(needle)
    return data[max(0, at - 200) : at + 200]


def hostile_model(body: dict) -> Reply:
    """Hostile prose every turn; code that prints it, writes it to stderr; then it as the answer."""
    if not is_root(body):
        return Reply.text(HOSTILE)
    if turn_of(body) == 0:
        code = f"{HOSTILE_CODE}\nprint(h)\nimport sys\nsys.stderr.write(h)"
        return Reply.text(f"{HOSTILE}\n```repl\n{code}\n```")
    return Reply.text(f"{HOSTILE}\n```repl\nFINAL(h)\n```")


@pytest.fixture
def hostile_server():
    with FakeOpenAIServer(hostile_model) as server:
        yield server


def test_run_verbose_answer_and_view(tmp_path, hostile_server):
    (tmp_path / "ctx.txt").write_text(f"context with {HOSTILE}\n")
    args = (
        "run",
        "--context",
        "ctx.txt",
        "--query",
        f"q {HOSTILE}",
        "--base-url",
        hostile_server.base_url,
        "--model",
        "m",
        "--no-sandbox",
        "--log-dir",
        "logs",
    )
    code, output = run_in_pty(*args, "-v", cwd=tmp_path)
    assert code == 0, output[-2000:]
    text = assert_shown_not_interpreted(output)
    assert text.count("PWNED-TITLE") >= 5, "the reply, the output, the error stream, the answer"

    (trajectory,) = (tmp_path / "logs").glob("*.jsonl")
    code, output = run_in_pty("view", str(trajectory), cwd=tmp_path)
    assert code == 0
    assert_shown_not_interpreted(output)

    # To a pipe the answer is the model's, byte for byte; --json is valid ASCII JSON on a terminal too.
    piped = subprocess.run(
        [sys.executable, "-m", "rlm_sandbox.cli", *args], cwd=tmp_path, env=cli_env(), capture_output=True, timeout=240
    )
    assert piped.returncode == 0 and piped.stdout == (HOSTILE + "\n").encode()
    code, output = run_in_pty(*args, "--json", cwd=tmp_path)
    assert code == 0
    assert_shown_not_interpreted(output, marker=False)
    body = output.decode().replace("\r\n", "\n")
    assert json.loads(body[body.index("\n{") :])["answer"] == HOSTILE


def test_exec_output_error_and_stderr(tmp_path, sandbox_image):
    code_text = f"{HOSTILE_CODE}\nprint(h)\nimport sys\nsys.stderr.write(h)\nraise ValueError(h)"
    code, output = run_in_pty("exec", "-c", code_text, cwd=tmp_path)
    assert code == 1
    text = assert_shown_not_interpreted(output, cell_traceback=True)
    assert text.count("PWNED-TITLE") >= 3 and 'File "<cell-1>"' in text
    piped = subprocess.run(
        [sys.executable, "-m", "rlm_sandbox.cli", "exec", "-c", code_text],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        timeout=240,
    )
    assert piped.stdout == (HOSTILE + "\n").encode(), "to a pipe the output is byte for byte"


def test_eval_progress_summary_report_and_written_files(tmp_path):
    def respond(body):
        if not is_root(body):
            return Reply.text(HOSTILE)
        question = body["messages"][1]["content"]
        if "refuse" in question:
            return Reply.error(400, message=f"refused {HOSTILE}")
        return Reply.text(f"{HOSTILE}\nFINAL({HOSTILE})")

    rows = [
        {"id": f"answer-{HOSTILE}", "context_text": HOSTILE, "query": "say it", "expected": "something else"},
        {"id": f"refuse-{HOSTILE}", "context_text": HOSTILE, "query": "refuse this", "expected": HOSTILE},
    ]
    write_jsonl(tmp_path / "tasks.jsonl", rows)
    with FakeOpenAIServer(respond) as server:
        code, output = run_in_pty(
            "eval",
            "tasks.jsonl",
            "--base-url",
            server.base_url,
            "--model",
            f"m{HOSTILE}",
            "--no-sandbox",
            "--out",
            "r.jsonl",
            "--junit",
            "j.xml",
            cwd=tmp_path,
        )
    assert code == 3, output[-3000:]  # a task ended in an error
    text = assert_shown_not_interpreted(output)
    assert "tasks that did not pass" in text and "refused" in text

    # The files stay valid whatever the text held.
    lines = (tmp_path / "r.jsonl").read_bytes().splitlines()
    assert len(lines) == 2 and all(line.isascii() for line in lines)
    assert {r["id"] for r in read_results(tmp_path / "r.jsonl")} == {row["id"] for row in rows}
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert {case.get("name") for case in root.iter("testcase")} == {
        f"answer-{HOSTILE}".replace("\x1b", "\\x1b")
        .replace("\x07", "\\x07")
        .replace("\x9b", "\\x9b")
        .replace("\x9d", "\\x9d")
        .replace("\x9c", "\\x9c")
        .replace("\x7f", "\\x7f")
        .replace("\u202e", "\\u202e")
        .replace("\x08", "\\x08"),
        f"refuse-{HOSTILE}".replace("\x1b", "\\x1b")
        .replace("\x07", "\\x07")
        .replace("\x9b", "\\x9b")
        .replace("\x9d", "\\x9d")
        .replace("\x9c", "\\x9c")
        .replace("\x7f", "\\x7f")
        .replace("\u202e", "\\u202e")
        .replace("\x08", "\\x08"),
    }

    code, output = run_in_pty("report", "r.jsonl", cwd=tmp_path)
    assert code == 0
    assert_shown_not_interpreted(output)


def test_error_messages(tmp_path):
    code, output = run_in_pty("run", "--context", f"missing{HOSTILE}.txt", "--query", "q", "--demo", cwd=tmp_path)
    assert code == 2
    text = assert_shown_not_interpreted(output)
    assert text.startswith("error: context file")
    code, output = run_in_pty("view", f"gone{HOSTILE}", cwd=tmp_path)
    assert code == 2
    assert_shown_not_interpreted(output)
    code, output = run_in_pty("eval", "--suite", f"x{HOSTILE}", "--demo", cwd=tmp_path)  # argparse's own path
    assert code == 2
    assert_shown_not_interpreted(output)


def _in_process(tmp_path: Path, body: str) -> tuple[int, bytes]:
    script = tmp_path / "drive.py"
    script.write_text(f"HOSTILE = {HOSTILE!r}\n" + textwrap.dedent(body))
    return run_in_pty(sys.executable, str(script), cwd=tmp_path)


def test_doctor_and_audit_tables(tmp_path):
    """Their sources (the daemon, the probe inside a sandbox, the attack cases) replaced by hostile ones."""
    code, output = _in_process(
        tmp_path,
        """
        import sys
        from rlm_sandbox import cli
        from rlm_sandbox.errors import DockerUnavailableError
        import rlm_sandbox.sandbox.docker as docker

        def no_daemon():
            raise DockerUnavailableError("daemon said " + HOSTILE)

        docker.docker_client = no_daemon
        sys.exit(cli.main(["doctor"]))
    """,
    )
    assert code == 1
    assert_shown_not_interpreted(output)

    code, output = _in_process(
        tmp_path,
        """
        import sys
        from rlm_sandbox import cli
        import rlm_sandbox.audit as audit
        from rlm_sandbox.audit import AuditReport, CaseOutcome

        def run_audit(runtime, console):
            console.print("attacking " + HOSTILE)
            case = CaseOutcome(name="c", category="k", expected=HOSTILE, observed=HOSTILE, passed=False, duration_s=0.1)
            return AuditReport(runtime=runtime, outcomes=[case], duration_s=0.1)

        audit.run_audit = run_audit
        sys.exit(cli.main(["audit"]))
    """,
    )
    assert code == 1
    assert_shown_not_interpreted(output)
