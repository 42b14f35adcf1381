"""What a context may hold, and reading one from a file or stdin.

A context reaches the sandbox as text (a `str`), raw `bytes`, or one JSON document (a
`list` or `dict`) whose `bytes` values travel raw beside it, so inside it is exactly
what JSON can carry plus bytes: str, bytes, int, float, bool, None, and lists and
dicts of those with **str keys**. Python's json module would silently
turn a key `1` into `"1"` (and `context[1]` would then fail inside the sandbox), so
such a context is refused here, before anything starts, with the path of the key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from itertools import chain, compress
from pathlib import Path
from typing import Any, Literal

from .errors import ContextError, InputError

__all__ = ["ContextFormat", "check_context", "read_context"]

ContextFormat = Literal["text", "json", "auto"]

_SCALARS = (str, bytes, bytearray, memoryview, int, float, bool, type(None))


_SCALAR_TYPES = frozenset({str, bytes, bytearray, memoryview, int, float, bool, type(None)})
_CONTAINER_TYPES = frozenset({list, dict, tuple})
_PLAIN_TYPES = _SCALAR_TYPES | _CONTAINER_TYPES


def _faithful(context: Any) -> bool:
    """The fast check, one nesting level at a time, every per-item step done in C.

    (map, chain, compress and frozenset lookups: no Python bytecode runs per item.)
    Iterative, so a deeply nested context cannot hit the recursion limit. Subclasses of
    the plain types (rare) fail it and are left to the thorough walk in `check_context`.
    """
    if type(context) not in _CONTAINER_TYPES:
        return False
    dicts: list[Any] = [context] if type(context) is dict else []
    seqs: list[Any] = [] if dicts else [context]
    while dicts or seqs:
        if dicts and not _STR_ONLY.issuperset(map(type, chain.from_iterable(dicts))):
            return False

        def items(dicts: list[Any] = dicts, seqs: list[Any] = seqs) -> Iterator[Any]:
            return chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(seqs))

        types = set(map(type, items()))
        if not _PLAIN_TYPES.issuperset(types):
            return False
        dicts = list(compress(items(), map(_IS_DICT, map(type, items())))) if dict in types else []
        seqs = list(compress(items(), map(_IS_SEQ, map(type, items())))) if types & _SEQ_TYPES else []
    return True


_SEQ_TYPES = frozenset({list, tuple})
_IS_DICT = frozenset({dict}).__contains__
_IS_SEQ = _SEQ_TYPES.__contains__
_STR_ONLY = frozenset({str})


def check_context(context: Any) -> None:
    """Raise ContextError unless `context` arrives in the sandbox exactly as given."""
    if isinstance(context, (str, bytes, bytearray, memoryview)):
        return
    if not isinstance(context, (list, dict)):
        raise ContextError(
            f"a context is a str, bytes, list or dict, not {type(context).__name__}",
            "convert it, e.g. str(value) or list(value)",
        )
    if _faithful(context):
        return
    # The thorough walk, which names where the problem is.
    stack: list[tuple[Any, str]] = [(context, "context")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ContextError(
                        f"{where} has the key {key!r} ({type(key).__name__}); JSON, which carries the context "
                        "into the sandbox, only has str keys",
                        "use str keys, e.g. {str(k): v for k, v in d.items()}, or a list of pairs",
                    )
                if not isinstance(item, _SCALARS):
                    stack.append((item, f"{where}[{key!r}]"))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if not isinstance(item, _SCALARS):
                    stack.append((item, f"{where}[{index}]"))
        elif not isinstance(value, _SCALARS):
            raise ContextError(
                f"{where} is a {type(value).__name__}, which is not JSON-serialisable, so it cannot travel into "
                "the sandbox",
                "use str, bytes, int, float, bool, None, list or dict",
            )


def read_context(source: str, fmt: ContextFormat = "auto") -> Any:
    """The context named on the command line: a file, or `-` for stdin.

    text: the text as is. json: parsed JSON. auto: JSON for a `.json` file, or for
    stdin whose text parses as a JSON list or object; text otherwise.
    """
    if source == "-":
        text = sys.stdin.read()
        name = "stdin"
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"context file {source!r} does not exist", "check the path given to --context")
        if path.is_dir():
            raise InputError(f"context {source!r} is a directory", "give one file, or - to read stdin")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(
                f"context file {source!r} is not UTF-8 text",
                "convert it to text first: a binary file cannot be a context",
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read context file {source!r}: {exc.strerror}", "check its permissions") from None
        name = source
    if "\x00" in text:
        raise InputError(f"context {name} holds NUL bytes, so it is not text", "convert it to text first")
    if fmt == "text":
        return text
    if fmt == "auto" and not (name.lower().endswith(".json") or (name == "stdin" and text.lstrip()[:1] in ("[", "{"))):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if fmt == "auto" and name == "stdin":
            return text  # looked like JSON but is not: it is text
        raise InputError(
            f"context {name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            "fix the JSON, or pass --context-format text to use it as text",
        ) from None
    if not isinstance(value, (str, list, dict)):
        raise InputError(
            f"context {name} is a JSON {type(value).__name__}, not an object, array or string",
            "wrap it in a list, or pass --context-format text",
        )
    return value
