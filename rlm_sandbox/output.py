"""Typed answers: `completion(..., output=Model)` validates the final answer on the host.

`output` is a pydantic model class or a JSON-schema dict. The answer arrives as text:
JSON when the sandbox code gave FINAL(obj) a dict, list or number (`json=True`), or
whatever the model wrote. The text is untrusted like everything from the sandbox or
the model: it is parsed with `json.loads` (or, for a Python literal written in
prose, `ast.literal_eval`, size-capped), never evaluated, and then validated. A
failure comes back as a short list of what is wrong, which the node loop shows to the
model so it can try again within its turns.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["AnswerInvalid", "OutputSpec", "OutputType"]

OutputType = type[BaseModel] | dict[str, Any]

# A Python literal in prose larger than this is not parsed (literal_eval's cost grows
# with nesting; a JSON answer of any size still goes through json.loads).
_LITERAL_MAX_CHARS = 100_000
_ERRORS_SHOWN = 10


class AnswerInvalid(Exception):
    """The final answer did not match the requested output type; `str()` says how."""


class OutputSpec:
    """The type a completion's answer must have, and its validator."""

    def __init__(self, output: OutputType) -> None:
        if isinstance(output, type) and issubclass(output, BaseModel):
            self.model: type[BaseModel] | None = output
            self.schema: dict[str, Any] = output.model_json_schema()
            self._validator = None
        elif isinstance(output, dict):
            try:
                import jsonschema
            except ImportError:  # pragma: no cover - jsonschema ships with the `typed` extra
                raise ImportError(
                    "a JSON-schema `output` needs the jsonschema package: pip install 'rlm-sandbox[typed]'"
                ) from None
            validator_class = jsonschema.validators.validator_for(output)
            try:
                validator_class.check_schema(output)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"`output` is not a valid JSON schema: {exc.message}") from None
            self.model = None
            self.schema = output
            self._validator = validator_class(output)
        else:
            raise TypeError(f"`output` must be a pydantic model class or a JSON-schema dict, not {output!r}")

    def schema_text(self) -> str:
        return json.dumps(self.schema, indent=1, ensure_ascii=False)

    def validate(self, text: str, *, is_json: bool = False) -> Any:
        """The validated value of `text` (a model instance, or the plain JSON value);
        raises AnswerInvalid saying what is wrong."""
        candidates = _candidates(text, is_json)
        if not candidates:
            raise AnswerInvalid("the answer is not valid JSON")
        first_problem = ""
        for value in candidates:
            try:
                return self._check(value)
            except AnswerInvalid as exc:
                first_problem = first_problem or str(exc)
            except RecursionError:  # nesting a recursive validator cannot walk: refused, not raised
                first_problem = first_problem or "- (the whole value): nested too deeply"
        raise AnswerInvalid(first_problem)

    def _check(self, value: Any) -> Any:
        if self.model is not None:
            try:
                return self.model.model_validate(value)
            except ValidationError as exc:
                lines = [
                    f"- {'.'.join(str(part) for part in error['loc']) or '(the whole value)'}: {error['msg']}"
                    for error in exc.errors()[:_ERRORS_SHOWN]
                ]
                raise AnswerInvalid("\n".join(lines)) from None
        assert self._validator is not None
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))[:_ERRORS_SHOWN]
        if errors:
            raise AnswerInvalid(
                "\n".join(
                    f"- {'.'.join(str(p) for p in error.absolute_path) or '(the whole value)'}: {error.message[:300]}"
                    for error in errors
                )
            )
        return value


def _candidates(text: str, is_json: bool) -> list[Any]:
    """The values `text` may stand for, most structured first."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = _NOTHING
    if is_json:
        # The sandbox said it sent JSON: that is the only reading.
        return [] if parsed is _NOTHING else [parsed]
    values: list[Any] = []
    if parsed is not _NOTHING:
        values.append(parsed)
    elif len(text) <= _LITERAL_MAX_CHARS:
        try:
            values.append(ast.literal_eval(text.strip()))
        except Exception:
            pass
    values.append(text)  # a schema of type string takes the text as it is
    return values


_NOTHING: Any = object()
