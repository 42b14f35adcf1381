"""One self-contained HTML file: our stylesheet, our script, the data as inert JSON.

Everything shown comes from a model, a sandbox or a results file, so the page is built
for hostile data:
- the data sits in a `<script type="application/json">` block (never executed), with
  `<`, `>`, `&` and U+2028/U+2029 escaped, so no string in it can close that element;
- the page's script renders it with `textContent` and `createElement` only;
- a Content-Security-Policy allows exactly our one script and one stylesheet (by
  hash) and nothing else: no other script, no inline handler, no remote load, no
  form, no base URL. Even a rendering bug that let markup through could run nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from typing import Any

_ASSETS = resources.files(__package__) / "assets"

# JSON is valid JS and HTML-inert once these are escaped: the HTML parser ends a
# script element only at "</script", and never sees "<" in the data at all.
_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def embed_json(data: Any) -> str:
    """`data` as JSON that is safe inside a script data block."""
    return json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")).translate(_JSON_ESCAPES)


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def build_page(*, title: str, kind: str, data: Any, scripts: list[str]) -> str:
    """The HTML of a page whose script (the named asset files, in order) renders `data`.

    `kind` names the view ("trajectory" or "report"); the script reads it from the
    body so one bundle could serve both.
    """
    style = _asset("page.css")
    script = "\n".join(_asset(name) for name in ["common.js", *scripts])
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(style)}",
            "img-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    # The title is ours plus untrusted text: escape it like any other text node.
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{safe_title}</title>\n"
        f"<style>{style}</style>\n"
        "</head>\n"
        f'<body data-kind="{kind}">\n'
        '<noscript><p class="noscript">This page draws its view with its own script; enable JavaScript '
        "for this file (it loads nothing from the network).</p></noscript>\n"
        '<div id="app"></div>\n'
        f'<script type="application/json" id="rlm-data">{embed_json(data)}</script>\n'
        f"<script>{script}</script>\n"
        "</body>\n</html>\n"
    )
