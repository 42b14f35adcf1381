"""The sandbox image: content-hash tag, build, and the hot path of ensure_image.

Real Docker throughout. The debootstrap base itself is made by `make setup` in CI, not
here: these tests build only on top of a base that is already present.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from rlm_sandbox.errors import ImageError
from rlm_sandbox.sandbox import image
from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.image import (
    build_image,
    ensure_image,
    image_is_current,
    image_sources_dir,
    image_tag,
    server_script_path,
)

# Never resolves (RFC 2606), so the pull fails on any machine, online or not.
UNPULLABLE = "rlm-sandbox-test.invalid/none:1"
REPO_ROOT = Path(__file__).resolve().parents[1]


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def copy_sources(destination: Path) -> Path:
    shutil.copy(REPO_ROOT / "Dockerfile", destination / "Dockerfile")
    shutil.copytree(REPO_ROOT / "sandbox_image", destination / "sandbox_image")
    return destination


def run_in_image(client, tag: str, code: str) -> str:
    """Run python3 -c `code` in the image as its default user; the container is removed."""
    output = client.containers.run(
        tag, entrypoint=["python3", "-c", code], network_mode="none", remove=True, stdout=True, stderr=True
    )
    return output.decode()


# ------------------------------------------------------------------ sources and tag


def test_sources_are_the_checkout():
    assert image_sources_dir() == REPO_ROOT
    assert server_script_path() == REPO_ROOT / "sandbox_image" / "repl_server.py"


def test_tag_is_stable_and_names_the_content():
    tag = image_tag()
    assert re.fullmatch(r"rlm-sandbox:[0-9a-f]{12}", tag)
    assert image_tag() == tag
    assert image_tag(REPO_ROOT) == tag


def test_tag_follows_every_source_file_but_not_bytecode(tmp_path):
    sources = copy_sources(tmp_path)
    original = image_tag(sources)
    assert original == image_tag()

    (sources / "sandbox_image" / "__pycache__").mkdir(exist_ok=True)
    (sources / "sandbox_image" / "__pycache__" / "repl_server.cpython-311.pyc").write_bytes(b"\0bytecode")
    (sources / "sandbox_image" / "stray.pyc").write_bytes(b"\0bytecode")
    assert image_tag(sources) == original

    server = sources / "sandbox_image" / "repl_server.py"
    server.write_text(server.read_text() + "\n# changed\n")
    changed_server = image_tag(sources)
    assert changed_server != original

    (sources / "Dockerfile").write_text((sources / "Dockerfile").read_text() + "\n# changed\n")
    assert image_tag(sources) not in (original, changed_server)


def test_tag_counts_new_files(tmp_path):
    sources = copy_sources(tmp_path)
    original = image_tag(sources)
    (sources / "sandbox_image" / "helper.py").write_text("")
    assert image_tag(sources) != original


def test_missing_sources_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="Dockerfile"):
        image_tag(tmp_path)


# ------------------------------------------------------------------ the built image


def test_image_runs_the_server_unprivileged(docker_client, sandbox_image):
    attrs = docker_client.images.get(sandbox_image).attrs
    assert attrs["Config"]["User"] == "65534:65534"
    assert attrs["Config"]["Entrypoint"] == ["python3", "-I", "-B", "/opt/rlm/repl_server.py"]
    assert attrs["Config"]["Labels"]["rlm-sandbox"] == "1"
    assert attrs["Config"]["Labels"]["rlm-sandbox.base"]
    server = "/opt/rlm/repl_server.py"
    output = run_in_image(
        docker_client,
        sandbox_image,
        f"import hashlib, os; print(os.getuid(), os.getgid(), os.getcwd(), os.access({server!r}, os.R_OK),"
        f" os.access({server!r}, os.W_OK), hashlib.sha256(open({server!r}, 'rb').read()).hexdigest())",
    )
    digest = hashlib.sha256(server_script_path().read_bytes()).hexdigest()
    assert output.split() == ["65534", "65534", "/tmp", "True", "False", digest]


# ------------------------------------------------------------------ build errors


def test_failed_pull_of_default_base_points_at_bootstrap(docker_client, monkeypatch):
    monkeypatch.setattr(image, "DEFAULT_BASE", UNPULLABLE)
    with pytest.raises(ImageError, match=r"rlm-sandbox image build --bootstrap"):
        build_image(docker_client, console=quiet_console())


def test_unpullable_explicit_base_is_an_image_error(docker_client):
    with pytest.raises(ImageError, match=re.escape(f"cannot pull {UNPULLABLE}")):
        build_image(docker_client, base_image=UNPULLABLE, console=quiet_console())


def test_image_built_from_another_base_is_not_current(docker_client, sandbox_image):
    assert image_is_current(docker_client)
    assert not image_is_current(docker_client, base_image=UNPULLABLE)


# ------------------------------------------------------------------ ensure_image


def test_ensure_image_returns_existing_tag_without_building(docker_client, sandbox_image, monkeypatch):
    monkeypatch.setattr(image, "_known_images", set())  # as in a fresh process
    before = docker_client.images.get(sandbox_image).id
    console = quiet_console()

    assert ensure_image(docker_client, SandboxConfig(), console=console) == sandbox_image == image_tag()

    assert console.file.getvalue() == ""  # a build would have said so
    assert docker_client.images.get(sandbox_image).id == before
    assert (docker_client.api.base_url, sandbox_image) in image._known_images


def test_ensure_image_with_a_configured_image(docker_client, sandbox_image):
    assert ensure_image(docker_client, SandboxConfig(image=sandbox_image)) == sandbox_image
    with pytest.raises(ImageError, match="not on the Docker host"):
        ensure_image(docker_client, SandboxConfig(image=f"rlm-sandbox-test-missing:{uuid.uuid4().hex[:8]}"))


def test_concurrent_first_use_builds_once(docker_client, sandbox_image, tmp_path, monkeypatch):
    """Twenty sandboxes starting at once on changed sources: one build, one tag."""
    sources = copy_sources(tmp_path)
    server = sources / "sandbox_image" / "repl_server.py"
    marker = f"# concurrency test {uuid.uuid4().hex}\n"
    server.write_text(server.read_text() + marker)
    monkeypatch.setattr(image, "image_sources_dir", lambda: sources)
    monkeypatch.setattr(image, "_known_images", set())
    expected = image_tag()
    assert expected != sandbox_image

    console = quiet_console()
    results: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(ensure_image(docker_client, SandboxConfig(), console=console))
        except BaseException as exc:  # reported below, with the other threads' results
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(20)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert results == [expected] * 20
        assert console.file.getvalue().count(f"built {expected}") == 1
        # The context is the hashed sources: the changed server is what the image holds.
        assert (
            run_in_image(docker_client, expected, f"print(open('/opt/rlm/repl_server.py').read().endswith({marker!r}))")
            == "True\n"
        )
    finally:
        if image.image_exists(docker_client, expected):
            docker_client.images.remove(expected, force=True)
