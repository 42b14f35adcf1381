"""Language-model clients: the protocol the RLM loop calls, what every client shares
(`ChatClient`), the OpenAI-compatible client, and the one way every call is charged to
the budget. `client_for(provider, ...)` builds the client `RLM(provider=...)` names;
the LiteLLM one lives in `rlm_sandbox.litellm_client` and is imported only when asked for.

Prices come from `rlm_sandbox.prices` (the maintained genai-prices data); token
estimates from `rlm_sandbox.tokens`.

OpenAIClient's retries are the openai SDK's own (exponential backoff with jitter,
`Retry-After` honoured, on 408/409/429/5xx, timeouts and connection errors); this
module adds only what the SDK lacks: one deadline over all attempts of a call, and
turning every failure or malformed answer into `LMError`. A client whose library does
not retry that way (LiteLLM's native routes) uses `is_retryable` and `retry_wait_s`,
the same policy.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import openai
from dotenv import dotenv_values, find_dotenv
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlm_sandbox.errors import (
    BudgetExceededError,
    CompletionTimeoutError,
    ContextWindowExceededError,
    LMError,
    MissingAPIKeyError,
)
from rlm_sandbox.limits import Budget, Reservation
from rlm_sandbox.prices import (
    Price,
    cost_usd,
    known_context_window,
    lookup_price,
    price_source,
)
from rlm_sandbox.tokens import estimate_messages_tokens, estimate_tokens

if TYPE_CHECKING:
    # The SDK's own HTTP library, whatever it is called in the installed openai
    # release; only the hooks' annotations name it.
    import httpx2

__all__ = [
    "LOCAL_PLACEHOLDER_KEY",
    "MIN_OUTPUT_TOKENS",
    "ChatClient",
    "LMClient",
    "LMResponse",
    "OpenAIClient",
    "Price",
    "complete_within_budget",
    "cost_usd",
    "lookup_price",
    "price_source",
]

# Local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) ignore the key, but
# the SDK refuses to send a request without one.
LOCAL_PLACEHOLDER_KEY = "not-needed"

MIN_OUTPUT_TOKENS = 256
"""The least room for a reply worth asking for: a request whose estimated input leaves
less than this (or than its own output cap, if smaller) in the window does not fit."""


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
    cached_input_tokens: int = Field(default=0, ge=0)
    """Input tokens read from the server's prompt cache (part of input_tokens)."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Output tokens of hidden reasoning (part of output_tokens)."""
    reasoning: str | None = None
    """The `reasoning_content` / `reasoning` field some servers send beside the text."""
    finish_reason: str | None = None
    """"stop", "length" (cut at the output cap), "content_filter", "tool_calls", ..."""
    refusal: str | None = None
    tool_calls: int = Field(default=0, ge=0)
    """How many tool calls the reply made (this loop offers none, so they are not run)."""


@runtime_checkable
class LMClient(Protocol):
    """Anything that can answer a chat. Implementations must be thread-safe.

    `complete` may also take `max_output_tokens: int | None` (the reply's cap); a
    client whose `complete` has that keyword gets it, others are called without it.
    """

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


def _retry_after_s(headers: httpx2.Headers | Mapping[str, str]) -> float | None:
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


def _setting(explicit: str | None, env_name: str, dotenv: Mapping[str, str | None]) -> str | None:
    # Precedence: argument, then the process environment, then `.env` — the
    # same order as python-dotenv's load_dotenv(override=False), but without
    # writing the file's values into os.environ as a side effect.
    if explicit:
        return explicit
    return os.environ.get(env_name) or dotenv.get(env_name) or None


_CONTEXT_OVERFLOW = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|exceeds? the available context size|"
    r"exceed_context_size|exceed context window|longer than the maximum model length|prompt is too long|"
    r"input is too long|too many tokens",
    re.IGNORECASE,
)
_WINDOW_IN_MESSAGE = re.compile(
    r"maximum context length is (\d+)|context window of (\d+)|maximum model length of (\d+)|"
    r"\"n_ctx\"\s*:\s*(\d+)",
    re.IGNORECASE,
)
_PARAM_REJECTED = re.compile(
    r"unsupported|not supported|unrecognized|unknown|extra|not permitted|unexpected|invalid", re.I
)
_CAP_PARAMS = ("max_completion_tokens", "max_tokens")


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    try:
        detail = json.dumps(body) if body is not None else ""
    except (TypeError, ValueError):
        detail = str(body)
    return f"{getattr(exc, 'message', None) or exc} {detail}"


def context_overflow(exc: Any) -> tuple[bool, int | None]:
    """(whether `exc` is a server's context-length error, the window it names if any).

    Knows OpenAI's `context_length_exceeded`, vLLM's and llama-cpp-python's "maximum
    context length is N tokens" and llama.cpp's `exceed_context_size_error` with `n_ctx`.
    """
    if getattr(exc, "status_code", None) not in (400, 413, 422):
        return False, None
    text = _error_text(exc)
    if not _CONTEXT_OVERFLOW.search(text):
        return False, None
    return True, _window_in_text(text)


def _window_in_text(text: str) -> int | None:
    match = _WINDOW_IN_MESSAGE.search(text)
    return next((int(group) for group in match.groups() if group), None) if match else None


def _default_cap_param(base_url: str | None) -> str:
    # OpenAI's own API deprecated max_tokens (its reasoning models reject it); most
    # other OpenAI-compatible servers (older vLLM, llama.cpp, Ollama, proxies) only
    # know max_tokens.
    if base_url is None or "api.openai.com" in base_url:
        return "max_completion_tokens"
    return "max_tokens"


def _server_window(entry: Mapping[str, Any]) -> int | None:
    """The window a /v1/models entry reports, under the names servers use for it."""
    candidates: list[Any] = [entry.get("max_model_len"), entry.get("context_length"), entry.get("context_window")]
    meta = entry.get("meta")
    if isinstance(meta, Mapping):
        # llama.cpp's server: n_ctx when it gives the running window, else the trained one.
        candidates += [meta.get("n_ctx"), meta.get("n_ctx_train")]
    candidates.append(entry.get("n_ctx"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def window_in_models_list(entries: Sequence[Mapping[str, Any]], model: str) -> int | None:
    """`model`'s window in a server's /v1/models entries (`data`), if it reports one."""
    named = [entry for entry in entries if entry.get("id") == model]
    if not named and len(entries) == 1:
        named = list(entries)  # a one-model server (llama.cpp) answers whatever name it is given
    return _server_window(named[0]) if named else None


# -- retries -----------------------------------------------------------------------
# The openai SDK retries on its own (OpenAIClient keeps that, steered by the hooks
# above); a client whose library does not gets the same policy here.

_RETRY_INITIAL_S = 0.5
_RETRY_MAX_S = 8.0
_RETRY_AFTER_MAX_S = 60.0


def _failure_headers(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if headers is not None else getattr(exc, "litellm_response_headers", None)


def is_retryable(exc: BaseException) -> bool:
    """Whether the SDK would retry `exc`: timeouts, connection errors, 408, 409, 429 and
    5xx, unless the server said `x-should-retry`."""
    headers = _failure_headers(exc)
    should = headers.get("x-should-retry") if headers is not None else None
    if should in ("true", "false"):
        return should == "true"
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)


def retry_wait_s(exc: BaseException, attempt: int) -> float:
    """How long to wait before retry number `attempt + 1`: the server's Retry-After when
    it gives a sane one, else the SDK's backoff (0.5 s doubling to 8 s, less up to 25 %)."""
    headers = _failure_headers(exc)
    asked = _retry_after_s(headers) if headers is not None else None
    if asked is not None and 0 < asked <= _RETRY_AFTER_MAX_S:
        return asked
    return min(_RETRY_INITIAL_S * 2**attempt, _RETRY_MAX_S) * (1 - 0.25 * random.random())


class ChatClient:
    """What every chat client shares, whatever library reaches the provider: the
    deadline of a call, the output cap's field name (switched once on rejection),
    turning failures into `LMError` / `ContextWindowExceededError`, the reply into an
    `LMResponse` with usage and cost (this package's price data, so a call costs the
    same through any client), and context windows (discovered once, learned from errors).

    A subclass sends one request (`_create`), says where it goes (`where`), and may
    find windows its own way (`_discover_window`).
    """

    def __init__(self, model: str, *, max_retries: int, prices: Mapping[str, Price] | None, cap_param: str) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.model = model
        self.max_retries = max_retries
        self.prices: Mapping[str, Price] = dict(prices or {})
        """User price overrides; everything else comes from the maintained data."""
        self.cap_param = cap_param
        """The request field that carries the output cap (switched once on rejection)."""
        self._cap_param_switched = False
        self._lock = threading.Lock()
        self._windows: dict[str, int | None] = {}

    @property
    def where(self) -> str:
        """The endpoint, for error messages."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (nothing to release by default)."""

    def cost_usd(self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        return cost_usd(model, input_tokens, output_tokens, self.prices, cached_input_tokens=cached_input_tokens)

    # -- context windows -------------------------------------------------------

    def context_window(self, model: str | None = None) -> int | None:
        """`model`'s window in tokens, or None; found once per model (see `_discover_window`)."""
        model = model or self.model
        with self._lock:
            if model in self._windows:
                return self._windows[model]
        window = self._discover_window(model)
        with self._lock:
            return self._windows.setdefault(model, window)

    def _discover_window(self, model: str) -> int | None:
        return known_context_window(model)

    def learn_context_window(self, model: str, window: int) -> None:
        """Remember a window the server stated (e.g. in a context-length error)."""
        with self._lock:
            self._windows[model] = window

    # -- calls -------------------------------------------------------------------

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        timeout_s: float | None = None,
        max_output_tokens: int | None = None,
    ) -> LMResponse:
        """One chat completion; `timeout_s` bounds the call including its retries.

        Raises ContextWindowExceededError for the server's context-length error (with
        the window, where the server names it), and LMError when the call fails after
        retries, times out, or the answer has no choices.
        """
        model = model or self.model
        token = _call_deadline.set(None if timeout_s is None else time.monotonic() + timeout_s)
        try:
            try:
                completion = self._create(model, messages, timeout_s, max_output_tokens)
            except openai.BadRequestError as exc:
                if not self._switch_cap_param(exc, max_output_tokens):
                    raise
                completion = self._create(model, messages, timeout_s, max_output_tokens)
        except LMError:
            raise
        except (openai.OpenAIError, ValueError, ValidationError) as exc:
            # ValueError covers a body that is not JSON (json.JSONDecodeError),
            # which the SDK lets through unwrapped.
            raise self._failure(exc, model, timeout_s) from exc
        finally:
            _call_deadline.reset(token)
        return self._to_response(completion, model, messages)

    def _create(
        self, model: str, messages: list[dict[str, Any]], timeout_s: float | None, max_output_tokens: int | None
    ) -> Any:
        """Send one request (with its retries) and return the library's completion object."""
        raise NotImplementedError

    def _overflow(self, exc: Any) -> tuple[bool, int | None]:
        """Whether `exc` says the request does not fit the window, and the window if named."""
        return context_overflow(exc)

    def _failure(self, exc: Exception, model: str, timeout_s: float | None) -> LMError:
        """The LMError a failed call raises."""
        where = self.where
        if isinstance(exc, openai.APITimeoutError):
            within = (
                f"within {timeout_s:g}s (retries included)" if timeout_s is not None else "before the SDK's timeout"
            )
            return LMError(f"{model} at {where}: no answer {within}")
        if isinstance(exc, openai.APIConnectionError):
            return LMError(f"{model} at {where}: connection failed after {self.max_retries} retries: {_cause(exc)}")
        message = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, openai.AuthenticationError):
            return LMError(f"{model} at {where}: the API key was rejected (HTTP 401): {message}")
        status = getattr(exc, "status_code", None)
        # litellm's own APIError carries a status without being an APIStatusError; the
        # SDK's APIResponseValidationError carries the 200 of a reply it could not read.
        if isinstance(status, int) and (isinstance(exc, openai.APIStatusError) or status >= 400):
            overflow, window = self._overflow(exc)
            if overflow:
                if window is not None:
                    self.learn_context_window(model, window)
                limit = f"its window of {window} tokens" if window else "its context window"
                return ContextWindowExceededError(
                    f"{model} at {where}: the request does not fit {limit} (HTTP {status}: {message})",
                    window=window,
                )
            return LMError(f"{model} at {where}: HTTP {status}: {message}")
        return LMError(f"{model} at {where}: malformed response: {type(exc).__name__}: {exc}")

    def _switch_cap_param(self, exc: openai.BadRequestError, max_output_tokens: int | None) -> bool:
        """Whether `exc` rejected the cap's field name, and so the other one was chosen."""
        if max_output_tokens is None:
            return False
        text = _error_text(exc)
        with self._lock:
            sent = self.cap_param
            if self._cap_param_switched or sent not in text or not _PARAM_REJECTED.search(text):
                return False
            if self._overflow(exc)[0]:
                return False  # "max_tokens is too large for the window" is not about the name
            self.cap_param = next(name for name in _CAP_PARAMS if name != sent)
            self._cap_param_switched = True
            return True

    def _reported_usage(self, usage: Any) -> tuple[int | None, int | None]:
        """(input, output) tokens as the server reported them; None where it did not."""
        return getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)

    def _to_response(self, completion: Any, model: str, messages: list[dict[str, Any]]) -> LMResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise LMError(f"{model} at {self.where}: malformed response: no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        text = content if isinstance(content, str) else ""
        refusal = getattr(message, "refusal", None)
        tool_calls = getattr(message, "tool_calls", None) or []
        reasoning = _extra(message, "reasoning_content") or _extra(message, "reasoning")
        finish_reason = getattr(choice, "finish_reason", None)
        usage = getattr(completion, "usage", None)
        input_tokens, output_tokens = self._reported_usage(usage)
        estimated = not (isinstance(input_tokens, int) and isinstance(output_tokens, int))
        if estimated:
            # Some local servers omit usage; an estimate that errs high keeps max_tokens meaningful.
            input_tokens = estimate_messages_tokens(messages)
            output_tokens = estimate_tokens(text) + estimate_tokens(reasoning or "")
        assert isinstance(input_tokens, int) and isinstance(output_tokens, int)
        input_tokens, output_tokens = max(0, input_tokens), max(0, output_tokens)
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens") or _int(
            _extra(usage, "prompt_cache_hit_tokens")
        )
        cached = min(cached, input_tokens)
        reasoning_tokens = min(_detail(usage, "completion_tokens_details", "reasoning_tokens"), output_tokens)
        return LMResponse(
            text=text,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self.cost_usd(model, input_tokens, output_tokens, cached),
            usage_estimated=estimated,
            cached_input_tokens=cached,
            reasoning_tokens=reasoning_tokens,
            reasoning=reasoning,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            refusal=refusal if isinstance(refusal, str) and refusal else None,
            tool_calls=len(tool_calls) if isinstance(tool_calls, list) else 0,
        )


class OpenAIClient(ChatClient):
    """Chat completions from any OpenAI-compatible endpoint, through the openai SDK.

    One SDK client (thread-safe, one connection pool) serves every thread.
    The reply's cap goes out as `max_completion_tokens` to OpenAI's own API and as
    `max_tokens` elsewhere; a server that rejects the name gets the other one, once,
    and the client remembers it.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 4,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        dotenv_path = find_dotenv(usecwd=True)
        dotenv = dotenv_values(dotenv_path) if dotenv_path else {}
        base_url = _setting(base_url, "OPENAI_BASE_URL", dotenv)
        super().__init__(model, max_retries=max_retries, prices=prices, cap_param=_default_cap_param(base_url))
        self.base_url = base_url
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

    @property
    def where(self) -> str:
        return self.base_url or "the OpenAI API"

    def close(self) -> None:
        self._client.close()

    def context_window(self, model: str | None = None) -> int | None:
        """`model`'s window in tokens: what the server's /v1/models says (vLLM's
        `max_model_len`, llama.cpp's `meta.n_ctx_train`, OpenRouter's `context_length`),
        else the maintained data for known hosted models, else None. Asked once per model.
        """
        return super().context_window(model)

    def _discover_window(self, model: str) -> int | None:
        window = None
        if self.base_url is not None and "api.openai.com" not in self.base_url:
            window = self._window_from_server(model)
        return window if window is not None else known_context_window(model)

    def _window_from_server(self, model: str) -> int | None:
        try:
            page = self._client.with_options(max_retries=0, timeout=10.0).models.list()
            entries = [entry.to_dict() for entry in page.data]
        except (openai.OpenAIError, ValueError, ValidationError, TypeError):
            return None  # many servers have no /models, or a partial one: not an error
        return window_in_models_list(entries, model)

    def _create(
        self, model: str, messages: list[dict[str, Any]], timeout_s: float | None, max_output_tokens: int | None
    ) -> Any:
        cap: dict[str, Any] = {} if max_output_tokens is None else {self.cap_param: max_output_tokens}
        return self._client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]  # plain dicts are what callers hold
            timeout=timeout_s if timeout_s is not None else openai.NOT_GIVEN,
            **cap,
        )


def _extra(obj: Any, name: str) -> Any:
    """A field the SDK's types do not declare (servers add their own), or None."""
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _detail(usage: Any, group: str, name: str) -> int:
    details = getattr(usage, group, None)
    value = getattr(details, name, None)
    if value is None and isinstance(details, Mapping):
        value = details.get(name)
    return _int(value)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(exc)


_ACCEPTS_CAP: dict[type, bool] = {}


def _accepts_output_cap(client: LMClient) -> bool:
    kind = type(client)
    if kind not in _ACCEPTS_CAP:
        try:
            parameters = inspect.signature(client.complete).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        _ACCEPTS_CAP[kind] = "max_output_tokens" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
    return _ACCEPTS_CAP[kind]


def _worst_cost(client: LMClient, model: str, input_tokens: int, output_tokens: int) -> float:
    price = getattr(client, "cost_usd", None)
    if not callable(price):
        return 0.0  # e.g. a scripted model: free
    return float(price(model, input_tokens, output_tokens))


def _reserve(
    client: LMClient, budget: Budget, model: str, input_tokens: int, cap: int | None
) -> tuple[Reservation, int | None]:
    """Reserve the call's worst case; when it does not fit, try once with the reply's
    cap cut to what is left (never below MIN_OUTPUT_TOKENS). Returns (held, cap)."""
    worst_output = cap or 0
    try:
        held = budget.reserve(input_tokens + worst_output, _worst_cost(client, model, input_tokens, worst_output))
        return held, cap
    except BudgetExceededError:
        if cap is None:
            raise
        tokens_left, cost_left = budget.headroom()
        affordable = cap
        if tokens_left is not None:
            affordable = min(affordable, tokens_left - input_tokens)
        if cost_left is not None:
            per_output = _worst_cost(client, model, 0, 1_000_000) / 1_000_000
            if per_output > 0:
                room = cost_left - _worst_cost(client, model, input_tokens, 0)
                affordable = min(affordable, math.floor(room / per_output))
        if affordable >= min(cap, MIN_OUTPUT_TOKENS) and affordable < cap:
            held = budget.reserve(input_tokens + affordable, _worst_cost(client, model, input_tokens, affordable))
            return held, affordable
        raise


def complete_within_budget(
    client: LMClient,
    budget: Budget,
    messages: list[dict[str, Any]],
    *,
    model: str | None = None,
    timeout_s: float | None = None,
    max_output_tokens: int | None = None,
    context_window: int | None = None,
) -> LMResponse:
    """One model call charged to `budget`: fit, reserve the worst case, call, record.

    With a `context_window`, a request whose estimated input leaves no room for a
    reply raises ContextWindowExceededError before anything is spent, and the reply's
    cap is cut to the room left. The worst case (estimated input + the cap, priced)
    is reserved against the budget first (see `Budget`); the server's reported usage
    replaces it afterwards. A failed call is still recorded (with no tokens): it was a
    real request. A failure caused by the completion's deadline raises
    CompletionTimeoutError.
    """
    name = model or client.model
    input_tokens = estimate_messages_tokens(messages)
    cap = max_output_tokens
    if context_window is not None:
        room = context_window - input_tokens
        if room < min(cap or MIN_OUTPUT_TOKENS, MIN_OUTPUT_TOKENS):
            raise ContextWindowExceededError(
                f"the prompt for {name} is about {input_tokens:,} tokens (estimated, erring high), and "
                f"{name}'s context window is {context_window:,} tokens, leaving no room for a reply. "
                "Send a shorter prompt: split the text into chunks and query each one.",
                window=context_window,
                tokens=input_tokens,
            )
        cap = room if cap is None else min(cap, room)
    held, cap = _reserve(client, budget, name, input_tokens, cap)
    kwargs: dict[str, Any] = {}
    if cap is not None and _accepts_output_cap(client):
        kwargs["max_output_tokens"] = cap
    try:
        response = client.complete(messages, model=name, timeout_s=budget.clamp_timeout(timeout_s), **kwargs)
    except LMError as exc:
        budget.record(name, 0, 0, 0.0, reservation=held)
        if budget.timed_out():
            raise CompletionTimeoutError(f"the completion's deadline passed during a call to {name}") from exc
        raise
    except BaseException:
        budget.record(name, 0, 0, 0.0, reservation=held)
        raise
    budget.record(
        name,
        response.input_tokens,
        response.output_tokens,
        response.cost_usd,
        reservation=held,
        cached_input_tokens=response.cached_input_tokens,
        reasoning_tokens=response.reasoning_tokens,
    )
    return response
