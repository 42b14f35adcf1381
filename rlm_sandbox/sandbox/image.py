"""The sandbox image: a content-hash tag, the build, and a debootstrap base.

The image is built from the Dockerfile and sandbox_image/ (see DESIGN.md, "Image").
Its tag is a hash of exactly those files, so a changed server gets a new tag and is
rebuilt on first use instead of running stale. The build context is packed from the
same bytes that were hashed, so a tag always names the content it was built from.

Hosts that cannot pull python:3.12-slim make a base from Debian packages with
debootstrap and `docker import`; the Dockerfile works unchanged on either base.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import docker.errors
from docker import DockerClient
from docker.models.images import Image
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import ImageError
from .config import SandboxConfig

IMAGE_REPOSITORY = "rlm-sandbox"
DEFAULT_BASE = "python:3.12-slim"
BOOTSTRAP_REPOSITORY = "rlm-sandbox-base"
BOOTSTRAP_BASE = f"{BOOTSTRAP_REPOSITORY}:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
IMAGE_LABEL = "rlm-sandbox"
BASE_LABEL = "rlm-sandbox.base"

# `docker import` gives an image with no config at all; these are what a Debian
# container gets from a normal base image, and what the server expects.
_IMPORT_CHANGES = [
    "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
]
# Emptied after debootstrap: the sandbox never runs apt, reads docs or translates.
_TRIM_DIRS = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/lib/locale",
)
# Kept inside the trimmed dirs: the one compiled locale the image uses (LANG).
_TRIM_KEEP = {"usr/lib/locale/C.utf8"}
# Lines of build or debootstrap output shown when it fails.
_LOG_TAIL = 25

# (daemon URL, image) pairs known to exist, so that starting a sandbox pays for one
# image inspect per process rather than one per sandbox.
_known_images: set[tuple[str, str]] = set()
# Held while checking for and building the image: fifty sandboxes starting at once
# must build it once, not fifty times.
_build_lock = threading.Lock()


# ------------------------------------------------------------------ sources and tag


def image_sources_dir() -> Path:
    """The directory holding Dockerfile and sandbox_image/.

    In a source or editable checkout that is the repository root; an installed wheel
    carries a copy under rlm_sandbox/_image/ (see pyproject.toml).
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "Dockerfile").is_file() and (checkout / "sandbox_image" / "repl_server.py").is_file():
        return checkout
    return Path(__file__).resolve().parents[1] / "_image"


def server_script_path() -> Path:
    return image_sources_dir() / "sandbox_image" / "repl_server.py"


def _source_files(sources_dir: Path) -> list[tuple[str, bytes]]:
    """(relative path, content) of every file the image is built from, sorted."""
    dockerfile = sources_dir / "Dockerfile"
    server_dir = sources_dir / "sandbox_image"
    if not dockerfile.is_file() or not server_dir.is_dir():
        raise ImageError(f"no Dockerfile and sandbox_image/ under {sources_dir}; is the package installed completely?")
    paths = [dockerfile] + [
        path
        for path in server_dir.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    files = [(path.relative_to(sources_dir).as_posix(), path.read_bytes()) for path in paths]
    return sorted(files)


def _tag_for(files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, content in files:
        # Lengths make the encoding unambiguous: no two file sets hash the same stream.
        digest.update(f"{len(name)}:{name}:{len(content)}:".encode())
        digest.update(content)
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def image_tag(sources_dir: Path | None = None) -> str:
    """`rlm-sandbox:<hash>` for the image built from the current sources."""
    return _tag_for(_source_files(sources_dir or image_sources_dir()))


def _build_context(files: list[tuple[str, bytes]]) -> io.BytesIO:
    """An in-memory tar of the sources, as the Docker build context.

    Mode 0644 because the classic builder keeps the context's modes: the server file
    must be readable by the unprivileged sandbox user. Fixed owner and mtime keep the
    context identical for identical sources.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


# ------------------------------------------------------------------ docker helpers


def _default_console() -> Console:
    # stderr, so that a command's real output on stdout (a tag) stays clean.
    return Console(stderr=True)


@contextmanager
def _spinner(console: Console, description: str) -> Iterator[Callable[[str], None]]:
    """A transient spinner line; yields a function that replaces its text.

    Without a terminal (CI logs, pipes) a spinner shows nothing useful, so the
    description is printed once as a log line and the updates are dropped.
    """
    if not console.is_terminal:
        console.print(escape(description))
        yield lambda text: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(escape(description), total=None)
        yield lambda text: progress.update(task, description=escape(text))


def _local_image(client: DockerClient, name: str) -> Image | None:
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot inspect image {name!r}: {exc.explanation or exc}") from exc


def image_exists(client: DockerClient, name: str) -> bool:
    return _local_image(client, name) is not None


def _pull(client: DockerClient, name: str, console: Console) -> None:
    with _spinner(console, f"pulling {name}"):
        try:
            client.images.pull(name)
        except docker.errors.DockerException as exc:
            detail = getattr(exc, "explanation", None) or str(exc)
            raise ImageError(f"cannot pull {name}: {detail}") from exc


def _show_tail(console: Console, lines: collections.deque[str]) -> None:
    if lines:
        console.print("[dim]" + escape("\n".join(lines)) + "[/dim]")


# ------------------------------------------------------------------ debootstrap base


def _require_debootstrap() -> str:
    if os.geteuid() != 0:
        raise ImageError(
            "building the base image with debootstrap needs root (it creates device nodes and "
            "chroots into the new system); run it as root, e.g. `sudo rlm-sandbox image build --bootstrap`"
        )
    path = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if path is None:
        sudo = "" if os.geteuid() == 0 else "sudo "
        raise ImageError(f"debootstrap is not installed; install it with `{sudo}apt-get install -y debootstrap`")
    return path


def _run_logged(command: list[str], on_line: Callable[[str], None], console: Console) -> None:
    """Run a command, feeding each output line to `on_line`; ImageError with its tail on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
    # sbin for debootstrap's own chroot/mount calls; LC_ALL=C so the new system's
    # maintainer scripts do not complain about the host's locale, which it lacks.
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin", "LC_ALL": "C"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                on_line(line)
    if process.returncode != 0:
        _show_tail(console, tail)
        raise ImageError(f"{Path(command[0]).name} failed with exit status {process.returncode}")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_rootfs(root: Path) -> None:
    """Delete a debootstrap target, after making sure nothing is still mounted in it.

    debootstrap mounts /proc and /sys inside the target; if it died before unmounting
    them, a recursive delete would walk into the host's /proc and /sys.
    """
    for point in _mounts_under(root):
        subprocess.run(["umount", "--lazy", point], check=False)
    left = _mounts_under(root)
    if left:
        raise ImageError(f"{root} still has mounts ({', '.join(left)}); unmount them and delete it by hand")
    shutil.rmtree(root)


def _empty_dir(root: Path, relative: str) -> None:
    directory = root / relative
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if f"{relative}/{entry.name}" in _TRIM_KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _trim_rootfs(root: Path) -> None:
    for relative in _TRIM_DIRS:
        _empty_dir(root, relative)


def _tar_chunks(stdout: IO[bytes]) -> Iterator[bytes]:
    while chunk := stdout.read(1 << 20):
        yield chunk


def _import_rootfs(client: DockerClient, root: Path, name: str) -> None:
    """`docker import` the directory, streaming a tar of it straight to the daemon."""
    repository, _, tag = name.rpartition(":")
    command = ["tar", "-C", str(root), "--numeric-owner", "-c", "."]
    with (
        tempfile.TemporaryFile() as tar_errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=tar_errors) as tar,
    ):
        assert tar.stdout is not None
        try:
            response = client.api.import_image_from_stream(
                _tar_chunks(tar.stdout), repository=repository, tag=tag, changes=_IMPORT_CHANGES
            )
        except docker.errors.DockerException as exc:
            tar.kill()
            raise ImageError(f"docker import of {root} failed: {exc}") from exc
        tar.wait()
        tar_errors.seek(0)
        if tar.returncode != 0:
            raise ImageError(f"tar of {root} failed: {tar_errors.read().decode(errors='replace').strip()}")
    # The daemon reports failures as JSON lines inside a 200 response.
    for line in str(response).splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise ImageError(f"docker import of {root} failed: {message['error']}")


def bootstrap_base(
    client: DockerClient,
    *,
    suite: str = "bookworm",
    mirror: str = DEBIAN_MIRROR,
    console: Console | None = None,
) -> str:
    """Make `rlm-sandbox-base:<suite>` from Debian packages; return its name.

    A minimal Debian with python3, for hosts that cannot pull python:3.12-slim.
    Needs root, debootstrap, and the Debian mirror.
    """
    debootstrap = _require_debootstrap()
    console = console or _default_console()
    name = f"{BOOTSTRAP_REPOSITORY}:{suite}"
    started = time.monotonic()
    # Not /tmp: debootstrap creates device nodes and runs the new system's programs,
    # which a nodev/noexec /tmp (common) would refuse.
    root = Path(tempfile.mkdtemp(prefix="rlm-sandbox-rootfs-", dir="/var/tmp"))
    try:
        with _spinner(console, f"debootstrap {suite}") as status:
            command = [debootstrap, "--variant=minbase", "--include=python3", suite, str(root), mirror]
            _run_logged(command, lambda line: status(f"debootstrap {suite}: {line}"), console)
            status(f"trimming and importing as {name}")
            _trim_rootfs(root)
            _import_rootfs(client, root, name)
    finally:
        _remove_rootfs(root)
    console.print(f"base image [bold]{name}[/bold] made in {time.monotonic() - started:.0f} s")
    return name


def _ensure_bootstrap_base(client: DockerClient, console: Console) -> str:
    if image_exists(client, BOOTSTRAP_BASE):
        return BOOTSTRAP_BASE
    return bootstrap_base(client, console=console)


# ------------------------------------------------------------------ build


def _resolve_base(
    client: DockerClient, base_image: str | None, bootstrap: bool, fallback_bootstrap: bool, console: Console
) -> str:
    if base_image:
        if not image_exists(client, base_image):
            _pull(client, base_image, console)
        return base_image
    if bootstrap:
        return _ensure_bootstrap_base(client, console)
    if image_exists(client, DEFAULT_BASE):
        return DEFAULT_BASE
    try:
        _pull(client, DEFAULT_BASE, console)
    except ImageError as exc:
        if not fallback_bootstrap:
            raise ImageError(
                f"{exc}. Without a registry, build a base from Debian packages instead: "
                "run `rlm-sandbox image build --bootstrap` (needs root and debootstrap)"
            ) from exc
        console.print(f"[yellow]{escape(str(exc))}[/yellow]; bootstrapping a Debian base instead", soft_wrap=True)
        return _ensure_bootstrap_base(client, console)
    return DEFAULT_BASE


def _run_build(client: DockerClient, files: list[tuple[str, bytes]], tag: str, base: str, console: Console) -> None:
    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
    error: str | None = None
    with _spinner(console, f"building {tag} from {base}") as status:
        try:
            events = client.api.build(
                fileobj=_build_context(files),
                custom_context=True,
                tag=tag,
                buildargs={"BASE_IMAGE": base},
                labels={IMAGE_LABEL: "1", BASE_LABEL: base},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for event in events:
                if event.get("error") or event.get("errorDetail"):
                    error = event.get("error") or event["errorDetail"].get("message", "unknown error")
                    break
                for line in (event.get("stream") or event.get("status") or "").splitlines():
                    if line.strip():
                        tail.append(line)
                        if line.startswith("Step "):
                            status(f"building {tag}: {line}")
        except docker.errors.DockerException as exc:
            error = str(exc)
    if error is not None:
        _show_tail(console, tail)
        raise ImageError(f"building {tag} from {base} failed: {error.strip()}")
    if not image_exists(client, tag):
        _show_tail(console, tail)
        raise ImageError(f"the build of {tag} reported success but the image is missing")


def build_image(
    client: DockerClient,
    *,
    base_image: str | None = None,
    bootstrap: bool = False,
    fallback_bootstrap: bool = False,
    console: Console | None = None,
) -> str:
    """Build the sandbox image from the current sources and return its tag.

    The base is `base_image` if given; else the debootstrap base if `bootstrap`
    (made if missing); else python:3.12-slim, pulled if missing, falling back to the
    debootstrap base if the pull fails and `fallback_bootstrap` is set.
    """
    console = console or _default_console()
    base = _resolve_base(client, base_image, bootstrap, fallback_bootstrap, console)
    files = _source_files(image_sources_dir())
    tag = _tag_for(files)
    started = time.monotonic()
    _run_build(client, files, tag, base, console)
    console.print(f"built [bold]{tag}[/bold] from {base} in {time.monotonic() - started:.1f} s")
    return tag


def image_is_current(client: DockerClient, *, base_image: str | None = None, bootstrap: bool = False) -> bool:
    """Whether image_tag() exists, and was built from the base asked for, if any."""
    image = _local_image(client, image_tag())
    if image is None:
        return False
    wanted = base_image or (BOOTSTRAP_BASE if bootstrap else None)
    return wanted is None or image.labels.get(BASE_LABEL) == wanted


def _automatic_base(client: DockerClient) -> str | None:
    """The base for a build nobody asked for: a bootstrapped base already here beats a pull."""
    if not image_exists(client, DEFAULT_BASE) and image_exists(client, BOOTSTRAP_BASE):
        return BOOTSTRAP_BASE
    return None


def ensure_image(client: DockerClient, config: SandboxConfig, *, console: Console | None = None) -> str:
    """The image a sandbox with `config` runs, building the built-in one if missing."""
    daemon = client.api.base_url
    if config.image:
        if (daemon, config.image) not in _known_images:
            if not image_exists(client, config.image):
                raise ImageError(
                    f"image {config.image!r} (SandboxConfig.image) is not on the Docker host; pull or build it "
                    "first, or leave SandboxConfig.image unset to use the built-in image"
                )
            _known_images.add((daemon, config.image))
        return config.image

    tag = image_tag()
    if (daemon, tag) in _known_images:
        return tag
    with _build_lock:
        if (daemon, tag) not in _known_images:
            if not image_exists(client, tag):
                tag = build_image(client, base_image=_automatic_base(client), console=console)
            _known_images.add((daemon, tag))
    return tag


# ------------------------------------------------------------------ old servers


def old_server_images(
    client: DockerClient, *, repository: str = IMAGE_REPOSITORY, current: str | None = None
) -> list[str]:
    """The `rlm-sandbox:<hash>` tags on the daemon other than the current server's.

    Each names an image built from older (or other) sources of the server. Bases
    (`rlm-sandbox-base:*`, python:3.12-slim) are another repository and never listed.
    """
    current = current or image_tag()
    pattern = re.compile(rf"^{re.escape(repository)}:[0-9a-f]{{12}}$")
    try:
        images = client.images.list(name=repository)
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot list images: {exc.explanation or exc}") from exc
    return sorted({tag for image in images for tag in image.tags if pattern.match(tag) and tag != current})


class ImageRemoval(NamedTuple):
    tag: str
    removed: bool
    reason: str = ""


def remove_old_images(
    client: DockerClient, *, repository: str = IMAGE_REPOSITORY, current: str | None = None, dry_run: bool = False
) -> list[ImageRemoval]:
    """Remove the images of older servers (see old_server_images); never the current one.

    Without force: an image a container still uses (a sandbox of an older version
    still running) is kept, and the reason says so.
    """
    results = []
    for tag in old_server_images(client, repository=repository, current=current):
        if dry_run:
            results.append(ImageRemoval(tag, False, "dry run"))
            continue
        try:
            client.images.remove(tag)
        except docker.errors.ImageNotFound:
            continue  # removed meanwhile
        except docker.errors.APIError as exc:
            results.append(ImageRemoval(tag, False, str(exc.explanation or exc)))
            continue
        _known_images.difference_update({known for known in _known_images if known[1] == tag})
        results.append(ImageRemoval(tag, True))
    return results
