"""`rlm-sandbox gc --images`: images of older servers go, the current one and the bases stay.

The daemon is shared (other checkouts' current images live on it too), so removal is
tested on a repository of this test's own; the CLI is tested in its dry-run form.
"""

from __future__ import annotations

import os

import docker.errors
import pytest

from rlm_sandbox.cli import main
from rlm_sandbox.sandbox.image import (
    BOOTSTRAP_BASE,
    IMAGE_REPOSITORY,
    image_exists,
    image_tag,
    old_server_images,
    remove_old_images,
)

REPOSITORY = f"rlm-sandbox-gc-test-{os.getpid()}"


@pytest.fixture
def fake_servers(docker_client, sandbox_image):
    """Under REPOSITORY: a 'current' server, two older ones, one in use, and a non-hash tag."""
    image = docker_client.images.get(sandbox_image)
    tags = {"current": "aaaaaaaaaaaa", "old": "bbbbbbbbbbbb", "older": "cccccccccccc", "busy": "dddddddddddd"}
    for name, tag in tags.items():
        if name != "busy":
            image.tag(REPOSITORY, tag)
    image.tag(REPOSITORY, "latest")  # not a server hash: never touched
    # An image of its own (a tag shared with another image is only untagged), which a
    # container still uses: Docker refuses to remove it without force.
    source = docker_client.containers.create(sandbox_image, network_disabled=True)
    source.commit(REPOSITORY, tags["busy"])
    source.remove(force=True)
    busy = docker_client.containers.create(f"{REPOSITORY}:{tags['busy']}", network_disabled=True)
    yield {name: f"{REPOSITORY}:{tag}" for name, tag in tags.items()}
    busy.remove(force=True)
    for tag in [*tags.values(), "latest"]:
        try:
            docker_client.images.remove(f"{REPOSITORY}:{tag}")
        except docker.errors.ImageNotFound:
            pass


def test_old_servers_are_removed_never_the_current_one(docker_client, fake_servers):
    current = fake_servers["current"]
    assert old_server_images(docker_client, repository=REPOSITORY, current=current) == sorted(
        [fake_servers["old"], fake_servers["older"], fake_servers["busy"]]
    )
    results = {r.tag: r for r in remove_old_images(docker_client, repository=REPOSITORY, current=current)}
    assert results[fake_servers["old"]].removed and results[fake_servers["older"]].removed
    assert not results[fake_servers["busy"]].removed, "an image a container uses is kept"
    assert "container" in results[fake_servers["busy"]].reason
    assert not image_exists(docker_client, fake_servers["old"])
    assert image_exists(docker_client, current)
    assert image_exists(docker_client, f"{REPOSITORY}:latest")


def test_the_cli_lists_old_servers_and_keeps_the_current_image_and_base(docker_client, sandbox_image, capsys):
    current = image_tag()
    old = f"{IMAGE_REPOSITORY}:{'0' * 11}{os.getpid() % 10}"
    docker_client.images.get(current).tag(old)
    try:
        assert main(["gc", "--images", "--dry-run"]) == 0
        output = capsys.readouterr().out
        assert old in output and "would remove" in output
        assert old in old_server_images(docker_client)
        assert current not in old_server_images(docker_client)
        assert not any(tag.startswith("rlm-sandbox-base") for tag in old_server_images(docker_client))
        assert image_exists(docker_client, old), "a dry run removes nothing"
        assert image_exists(docker_client, current) and image_exists(docker_client, BOOTSTRAP_BASE)
    finally:
        docker_client.images.remove(old)
