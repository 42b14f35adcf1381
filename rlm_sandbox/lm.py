"""Language-model clients: the protocol the RLM loop calls, an OpenAI-compatible
implementation, and the price table that turns tokens into dollars.

Retries are the openai SDK's own (exponential backoff with jitter, `Retry-After`
honoured, on 408/409/429/5xx, timeouts and connection errors). This module adds
only what the SDK lacks: one deadline over all attempts of a call, and turning
every failure or malformed answer into `LMError`.
"""

from __future__ import annotations

import contextvars
import math
import os
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import openai
from dotenv import dotenv_values, find_dotenv
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlm_sandbox.errors import CompletionTimeoutError, LMError, MissingAPIKeyError
from rlm_sandbox.limits import Budget

if TYPE_CHECKING:
    # The SDK's own HTTP library, whatever it is called in the installed openai
    # release; only the hooks' annotations name it.
    import httpx2

__all__ = [
    "LOCAL_PLACEHOLDER_KEY",
    "PRICES",
    "PRICES_AS_OF",
    "LMClient",
    "LMResponse",
    "OpenAIClient",
    "Price",
    "complete_within_budget",
    "cost_usd",
    "lookup_price",
]

# Local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) ignore the key, but
# the SDK refuses to send a request without one.
LOCAL_PLACEHOLDER_KEY = "not-needed"


class Price(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


PRICES_AS_OF = "2025-08"
# Approximate public list prices (standard tier, no caching or batch discounts)
# as of PRICES_AS_OF. Providers change them; pass `prices=` to OpenAIClient or
# `cost_usd` to correct or extend this table. Claude and Gemini entries are for
# those models served through OpenAI-compatible proxies (e.g. LiteLLM).
PRICES: Mapping[str, Price] = MappingProxyType({
    name: Price(input_per_mtok=i, output_per_mtok=o)
    for name, (i, o) in {
        "gpt-5": (1.25, 10.00),
        "gpt-5-mini": (0.25, 2.00),
        "gpt-5-nano": (0.05, 0.40),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "o1": (15.00, 60.00),
        "o3": (2.00, 8.00),
        "o3-mini": (1.10, 4.40),
        "o3-pro": (20.00, 80.00),
        "o4-mini": (1.10, 4.40),
        "claude-opus-4": (15.00, 75.00),
        "claude-opus-4-1": (15.00, 75.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-sonnet-4-5": (3.00, 15.00),
        "claude-3-7-sonnet": (3.00, 15.00),
        "claude-3-5-sonnet": (3.00, 15.00),
        "claude-3-5-haiku": (0.80, 4.00),
        "gemini-2.5-pro": (1.25, 10.00),
        "gemini-2.5-flash": (0.30, 2.50),
    }.items()
})


def lookup_price(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model`, tolerating provider prefixes and dated snapshots.

    "openai/gpt-4o-2024-08-06" finds "gpt-4o"; the longest known name wins, so
    "gpt-4o-mini-2024-07-18" finds "gpt-4o-mini", not "gpt-4o".
    """
    table = {**PRICES, **(prices or {})}
    lowered = {name.lower(): price for name, price in table.items()}
    name = model.strip().lower()
    candidates = [name]
    if "/" in name:
        candidates.append(name.rsplit("/", 1)[1])
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
        best = max(
            (known for known in lowered if candidate.startswith(known + "-")),
            key=len,
            default=None,
        )
        if best is not None:
            return lowered[best]
    return None


def cost_usd(model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, Price] | None = None) -> float:
    """Dollars for one call; 0.0 for a model without a known price (it is still counted)."""
    price = lookup_price(model, prices)
    if price is None:
        return 0.0
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1_000_000


class LMResponse(BaseModel):
    """One model answer and what it cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    model: str
    """The model that was asked for (prices and usage are keyed by it)."""
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    usage_estimated: bool = False
    """True when the server sent no usage and tokens were estimated from lengths."""


@runtime_checkable
class LMClient(Protocol):
    """Anything that can answer a chat. Implementations must be thread-safe."""

    model: str
    """The model used when `complete` is not given one."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        timeout_s: float | None = None,
    ) -> LMResponse: ...


# The deadline of the call running in this thread. The sync SDK sends every
# attempt from the calling thread, so the request hook below sees it.
_call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("rlm_call_deadline", default=None)


class _DeadlinePassed(openai.APITimeoutError):
    """Raised from the request hook; being an OpenAIError, the SDK does not retry it."""


def _clamp_to_deadline(request: httpx2.Request) -> None:
    # The SDK's `timeout` applies to each attempt afresh, so with retries a hung
    # server could hold a call for (max_retries + 1) x timeout. Shrinking every
    # attempt's timeouts to what is left makes `timeout_s` a bound on the whole
    # call (plus at most one backoff sleep, <= 8 s).
    deadline = _call_deadline.get()
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlinePassed(request=request)
    current = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {
        key: remaining if current.get(key) is None else min(float(current[key]), remaining)
        for key in ("connect", "read", "write", "pool")
    }


def _refuse_retry_past_deadline(response: httpx2.Response) -> None:
    # A 429 may ask for a wait (Retry-After, up to 2 minutes) that outlasts the
    # deadline; the SDK obeys `x-should-retry`, so fail now rather than sleep.
    deadline = _call_deadline.get()
    if deadline is None or response.status_code < 400:
        return
    wait = _retry_after_s(response.headers)
    if wait is not None and time.monotonic() + wait >= deadline:
        response.headers["x-should-retry"] = "false"


def _retry_after_s(headers: httpx2.Headers) -> float | None:
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else None
    return None


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _messages_chars(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"] for m in messages if isinstance(m.get("content"), str))


def _setting(explicit: str | None, env_name: str, dotenv: Mapping[str, str | None]) -> str | None:
    # Precedence: argument, then the process environment, then `.env` — the
    # same order as python-dotenv's load_dotenv(override=False), but without
    # writing the file's values into os.environ as a side effect.
    if explicit:
        return explicit
    return os.environ.get(env_name) or dotenv.get(env_name) or None


class OpenAIClient:
    """Chat completions from any OpenAI-compatible endpoint, through the openai SDK.

    One SDK client (thread-safe, one connection pool) serves every thread.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 4,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        dotenv_path = find_dotenv(usecwd=True)
        dotenv = dotenv_values(dotenv_path) if dotenv_path else {}
        self.model = model
        self.base_url = _setting(base_url, "OPENAI_BASE_URL", dotenv)
        key = _setting(api_key, "OPENAI_API_KEY", dotenv)
        if key is None:
            if self.base_url is None:
                raise MissingAPIKeyError(
                    "no OpenAI API key found. Set OPENAI_API_KEY in the environment, put "
                    "OPENAI_API_KEY=... in a .env file in the working directory, or pass api_key=. "
                    "For a local OpenAI-compatible server that needs no key, give its URL with "
                    "base_url= (CLI: --base-url) or OPENAI_BASE_URL."
                )
            key = LOCAL_PLACEHOLDER_KEY
        self.max_retries = max_retries
        self.prices: Mapping[str, Price] = {**PRICES, **(prices or {})}
        http_client = openai.DefaultHttpxClient(
            event_hooks={"request": [_clamp_to_deadline], "response": [_refuse_retry_past_deadline]},
        )
        self._client = openai.OpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=max_retries,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        # Never show the key.
        return f"OpenAIClient(model={self.model!r}, base_url={self.base_url!r}, max_retries={self.max_retries})"

    def close(self) -> None:
        self._client.close()

    def cost_usd(self, model: str, input_tokens: int, output_tokens: int) -> float:
        return cost_usd(model, input_tokens, output_tokens, self.prices)

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        timeout_s: float | None = None,
    ) -> LMResponse:
        """One chat completion; `timeout_s` bounds the call including its retries.

        Raises LMError when the call fails after retries, times out, or the
        answer has no choices or no text.
        """
        model = model or self.model
        where = self.base_url or "the OpenAI API"
        token = _call_deadline.set(None if timeout_s is None else time.monotonic() + timeout_s)
        try:
            completion = self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]  # plain dicts are what callers hold
                timeout=timeout_s if timeout_s is not None else openai.NOT_GIVEN,
            )
        except openai.APITimeoutError as exc:
            within = f"within {timeout_s:g}s (retries included)" if timeout_s is not None else "before the SDK's timeout"
            raise LMError(f"{model} at {where}: no answer {within}") from exc
        except openai.APIConnectionError as exc:
            raise LMError(
                f"{model} at {where}: connection failed after {self.max_retries} retries: {_cause(exc)}"
            ) from exc
        except openai.AuthenticationError as exc:
            raise LMError(f"{model} at {where}: the API key was rejected (HTTP 401): {exc.message}") from exc
        except openai.APIStatusError as exc:
            raise LMError(f"{model} at {where}: HTTP {exc.status_code}: {exc.message}") from exc
        except (openai.OpenAIError, ValueError, ValidationError) as exc:
            # ValueError covers a body that is not JSON (json.JSONDecodeError),
            # which the SDK lets through unwrapped.
            raise LMError(f"{model} at {where}: malformed response: {type(exc).__name__}: {exc}") from exc
        finally:
            _call_deadline.reset(token)
        return self._to_response(completion, model, messages, where)

    def _to_response(self, completion: Any, model: str, messages: list[dict[str, Any]], where: str) -> LMResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise LMError(f"{model} at {where}: malformed response: no choices")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            refusal = getattr(message, "refusal", None)
            detail = f"the model refused: {refusal}" if refusal else "the message has no text content"
            raise LMError(f"{model} at {where}: malformed response: {detail}")
        usage = getattr(completion, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        estimated = not (isinstance(input_tokens, int) and isinstance(output_tokens, int))
        if estimated:
            # Some local servers omit usage; an estimate keeps max_tokens meaningful.
            input_tokens = _estimate_tokens(_messages_chars(messages))
            output_tokens = _estimate_tokens(text)
        assert isinstance(input_tokens, int) and isinstance(output_tokens, int)
        return LMResponse(
            text=text,
            model=model,
            input_tokens=max(0, input_tokens),
            output_tokens=max(0, output_tokens),
            cost_usd=self.cost_usd(model, input_tokens, output_tokens),
            usage_estimated=estimated,
        )


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(exc)


def complete_within_budget(
    client: LMClient,
    budget: Budget,
    messages: list[dict[str, Any]],
    *,
    model: str | None = None,
    timeout_s: float | None = None,
) -> LMResponse:
    """One model call charged to `budget`: reserve, call within the deadline, record.

    A failed call is still recorded (with no tokens): it was a real request.
    A failure caused by the completion's deadline raises CompletionTimeoutError.
    """
    budget.reserve()
    name = model or client.model
    try:
        response = client.complete(messages, model=name, timeout_s=budget.clamp_timeout(timeout_s))
    except LMError as exc:
        budget.record(name, 0, 0, 0.0)
        if budget.timed_out():
            raise CompletionTimeoutError(f"the completion's deadline passed during a call to {name}") from exc
        raise
    except BaseException:
        budget.record(name, 0, 0, 0.0)
        raise
    budget.record(name, response.input_tokens, response.output_tokens, response.cost_usd)
    return response
