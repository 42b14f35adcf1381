"""LocalSandbox: the same REPL server as a plain subprocess of the host.

For development and for comparison only: the code it runs has every right the host
user has. It speaks the same protocol and returns the same results as DockerSandbox.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings

from .base import LLMHandler, Sandbox, Transport
from .config import SandboxConfig
from .image import server_script_path
from .transport import PipeTransport


class IsolationWarning(UserWarning):
    """Model-written code is about to run with no isolation at all."""


class LocalSandbox(Sandbox):
    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        llm_handler: LLMHandler | None = None,
        rlm_handler: LLMHandler | None = None,
    ) -> None:
        super().__init__(config, llm_handler=llm_handler, rlm_handler=rlm_handler)
        warnings.warn(
            "LocalSandbox runs model-written code directly on this host with no isolation: "
            "it can read your files and secrets and use your network. Use DockerSandbox "
            "(sandbox=True) for anything you do not fully trust.",
            IsolationWarning,
            stacklevel=2,
        )
        self._process: subprocess.Popen | None = None
        self._workdir: str | None = None

    def _launch(self) -> Transport:
        self._workdir = tempfile.mkdtemp(prefix="rlm-local-")
        # Even without isolation, no host variable (API keys above all) is handed over.
        environment = {
            "PATH": os.defpath,
            "HOME": self._workdir,
            "TMPDIR": self._workdir,
            "LANG": "C.UTF-8",
            **self.config.environment,
        }
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-B",
                str(server_script_path()),
                "--max-output-bytes",
                str(self.config.max_output_bytes),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=self._workdir,
            start_new_session=True,  # its own process group, so kill takes its children too
        )
        return PipeTransport(self._process)

    def _interrupt(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _death_cause(self) -> str:
        process = self._process
        if process is None:
            return "the sandbox process is gone"
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the sandbox closed its channel but is still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the sandbox process was killed by {name}"
        return f"the sandbox process exited with code {code}"
