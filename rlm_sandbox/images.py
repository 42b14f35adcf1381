"""Images that sandbox code sends with `llm_query(prompt, images=[...])`.

They cross the channel as data URLs inside the `llm_request` frame (so the frame cap
bounds their total) and reach the sub-model as OpenAI image parts. Only data URLs of
PNG, JPEG, GIF or WebP are accepted: an http(s) URL would make the provider fetch it,
a way for a sandbox without network to reach one. Each image is decoded once on the
host to check its base64, its type and its size before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from .errors import LMError

MAX_IMAGE_BYTES = 8 * 1024 * 1024
_DATA_URL = re.compile(r"^data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/=]*)$")
_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


class ImageError(LMError):
    """An image from the sandbox is not a well-formed PNG/JPEG/GIF/WebP data URL under the cap."""


def check_image(url: str) -> int:
    """Validate one data URL from the sandbox; return its decoded size in bytes."""
    match = _DATA_URL.match(url)
    if match is None:
        raise ImageError("an image must be a data:image/(png|jpeg|gif|webp);base64,... URL")
    mime, encoded = match.groups()
    if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES:
        raise ImageError(f"an image is over the {MAX_IMAGE_BYTES:,}-byte cap")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("an image's base64 is malformed") from None
    if mime == "image/webp":
        ok = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    else:
        ok = data.startswith(_MAGIC[mime])
    if not ok:
        raise ImageError(f"an image's bytes are not {mime}")
    return len(data)


def user_message(prompt: str, images: list[str]) -> dict[str, Any]:
    """The chat message of a prompt with images: a text part, then one part per image."""
    if not images:
        return {"role": "user", "content": prompt}
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in images)
    return {"role": "user", "content": parts}
