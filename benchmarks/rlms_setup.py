"""What the rlms comparison needs: a venv with `rlms`, and the image its DockerREPL runs.

rlms (the official RLM library on PyPI) is installed into its own venv, .venv-rlms/,
because it pulls in several LM SDKs we do not want in ours; benchmarks/rlms_probe.py
runs there as a subprocess.

Its DockerREPL starts `python:3.11-slim` and, per cell, `docker exec python
/workspace/_exec.py`, a script that imports requests and dill. With no registry
reachable we build that tag ourselves FROM the debootstrap base: the wheels of dill,
requests (and its dependencies) and pip are downloaded on the host and unpacked into
the image's dist-packages without pip, then byte-compiled, as `pip install` does in
the real image. pip is included because DockerREPL.setup runs `pip install -q dill
requests` in every new container; a real python:3.11-slim has pip, so leaving it out
would make rlms' start look cheaper than it is. Debian's EXTERNALLY-MANAGED marker is
removed for the same reason (python:3.11-slim has none, so that pip call succeeds as
"already satisfied" rather than failing early).

An image tagged python:3.11-slim that we did not build (no `rlm-sandbox.bench=rlms`
label) is never replaced: it is used as it is.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker.errors
from docker import DockerClient

REPO = Path(__file__).resolve().parents[1]
VENV_DIR = REPO / ".venv-rlms"
VENV_PYTHON = VENV_DIR / "bin" / "python"
# The probe is written against this version's DockerREPL (cells run as files in the
# mounted /workspace, llm_query through the host HTTP proxy, setup pip-installs).
RLMS_REQUIREMENT = "rlms==0.1.3"

IMAGE = "python:3.11-slim"
BASE = "rlm-sandbox-base:bookworm"
LABEL = "rlm-sandbox.bench"
LABEL_VALUE = "rlms"
CONTEXT_LABEL = "rlm-sandbox.bench.context"
# pip 24.0 is what current python:3.11-slim images carry.
IMAGE_REQUIREMENTS = ["dill", "requests", "pip==24.0"]

DOCKERFILE = f"""\
FROM {BASE}
COPY wheels/ /tmp/wheels/
RUN set -e; \\
    site=$(python3 -c 'import site; print(site.getsitepackages()[0])'); \\
    mkdir -p "$site"; \\
    for wheel in /tmp/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done; \\
    rm -rf /tmp/wheels; \\
    python3 -m compileall -q "$site"; \\
    rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED; \\
    ln -sf /usr/bin/python3 /usr/local/bin/python; \\
    printf '#!/bin/sh\\nexec python3 -m pip "$@"\\n' > /usr/local/bin/pip; \\
    chmod 755 /usr/local/bin/pip; \\
    python -c 'import dill, requests'
"""


class Unavailable(Exception):
    """The comparison cannot run here; the message says precisely why."""


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith("ERROR")]
    return " | ".join((errors or kept)[-lines:]) or "(no output)"


def _run(command: list[str], what: str, timeout_s: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what} did not finish within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise Unavailable(f"{what} could not run: {exc}") from None
    if done.returncode != 0:
        raise Unavailable(f"{what} failed (exit {done.returncode}): {_tail(done.stderr or done.stdout)}")
    return done.stdout


# ------------------------------------------------------------------ venv


def _venv_ready() -> bool:
    if not VENV_PYTHON.exists():
        return False
    check = "import importlib.metadata as m, rlm.environments.docker_repl; print(m.version('rlms'))"
    done = subprocess.run([str(VENV_PYTHON), "-c", check], capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.strip() == RLMS_REQUIREMENT.split("==")[1]


def ensure_venv() -> float:
    """Make .venv-rlms with rlms installed, if it is not there; return the seconds spent."""
    if _venv_ready():
        return 0.0
    started = time.monotonic()
    if not VENV_PYTHON.exists():
        _run([sys.executable, "-m", "venv", str(VENV_DIR)], f"creating the venv {VENV_DIR}", 120)
    _run(
        [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--retries", "2", RLMS_REQUIREMENT],
        f"pip install {RLMS_REQUIREMENT} into {VENV_DIR.name}",
        900,
    )
    if not _venv_ready():
        raise Unavailable(
            f"{RLMS_REQUIREMENT} installed into {VENV_DIR.name} but rlm.environments.docker_repl does not import"
        )
    return time.monotonic() - started


# ------------------------------------------------------------------ image


def _context_hash() -> str:
    digest = hashlib.sha256(DOCKERFILE.encode())
    digest.update("\n".join(IMAGE_REQUIREMENTS).encode())
    return digest.hexdigest()[:12]


def _download_wheels(target: Path) -> list[Path]:
    # The host is the same architecture and Python minor version (3.11) as the base,
    # so the wheels pip picks here (charset-normalizer's is compiled) fit the image.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--retries",
            "2",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--dest",
            str(target),
            *IMAGE_REQUIREMENTS,
        ],
        f"pip download {' '.join(IMAGE_REQUIREMENTS)}",
        600,
    )
    wheels = sorted(target.glob("*.whl"))
    if not wheels:
        raise Unavailable("pip download produced no wheels")
    return wheels


def _build_context(wheels: list[Path]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        files = [("Dockerfile", DOCKERFILE.encode())] + [(f"wheels/{w.name}", w.read_bytes()) for w in wheels]
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def _build(client: DockerClient, wheels: list[Path]) -> None:
    error = None
    log: list[str] = []
    try:
        events = client.api.build(
            fileobj=_build_context(wheels),
            custom_context=True,
            tag=IMAGE,
            labels={LABEL: LABEL_VALUE, CONTEXT_LABEL: _context_hash()},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for event in events:
            if event.get("error") or event.get("errorDetail"):
                error = event.get("error") or event["errorDetail"].get("message", "unknown error")
                break
            log.extend((event.get("stream") or "").splitlines())
    except docker.errors.DockerException as exc:
        error = str(exc)
    if error is not None:
        raise Unavailable(f"building {IMAGE} from {BASE} failed: {_tail(error)} (log: {_tail(chr(10).join(log))})")


def ensure_image(client: DockerClient) -> tuple[float, str]:
    """Make sure `python:3.11-slim` exists; return (seconds spent, where it came from)."""
    try:
        existing = client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        existing = None
    if existing is not None:
        if existing.labels.get(LABEL) != LABEL_VALUE:
            return 0.0, f"{IMAGE} already on this host, not built by us: used as it is"
        if existing.labels.get(CONTEXT_LABEL) == _context_hash():
            return 0.0, f"{IMAGE} built earlier by this benchmark from {BASE}"
    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        raise Unavailable(
            f"the base image {BASE} is missing (make it with `rlm-sandbox image build --bootstrap`)"
        ) from None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rlms-wheels-") as scratch:
        _build(client, _download_wheels(Path(scratch)))
    if existing is not None and client.images.get(IMAGE).id != existing.id:
        # Our own previous build, now untagged: remove it (never anyone else's).
        try:
            client.images.remove(existing.id, noprune=False)
        except docker.errors.APIError:
            pass
    return time.monotonic() - started, f"{IMAGE} built now by this benchmark from {BASE}"
