"""LiteLLMClient: providers' native APIs (Anthropic, Gemini, Bedrock, ...) through LiteLLM.

Everything provider-neutral is `ChatClient`'s, shared with the OpenAI client: the call's
deadline, the output cap's field name, error classification, usage and cost (this
package's price data first, so a call costs the same through either client), context
windows. What is LiteLLM's own lives here: importing it without touching the network,
its keys, its model facts, and retries (LiteLLM's are turned off and the shared policy
runs instead, so Retry-After and backoff stay within the call's deadline).

`pip install 'rlm-sandbox[litellm]'`. Nothing here runs at `import rlm_sandbox`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import openai
from dotenv import dotenv_values, find_dotenv

from .errors import LMError, MissingAPIKeyError, MissingExtraError
from .lm import (
    LOCAL_PLACEHOLDER_KEY,
    ChatClient,
    _call_deadline,
    context_overflow,
    is_retryable,
    retry_wait_s,
    window_in_models_list,
)
from .prices import Price, known_context_window, lookup_price

__all__ = ["LiteLLMClient", "load_litellm"]

# Set (unless the user chose otherwise) before LiteLLM is first imported:
_OFFLINE_DEFAULTS = {
    # The bundled model cost map instead of fetching it from GitHub at import.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    # Every other catalog or tokenizer LiteLLM would fetch on its own: bundled or skipped.
    "LITELLM_OFFLINE_MODE": "true",
    # In its default "DEV" mode LiteLLM's import runs load_dotenv(), writing a .env file's
    # values into os.environ; keys here are read from .env without that side effect.
    "LITELLM_MODE": "PRODUCTION",
}

_loaded: ModuleType | None = None
_load_lock = threading.Lock()


def load_litellm() -> ModuleType:
    """The litellm module, imported once, offline; MissingExtraError if it is not installed."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            for name, value in _OFFLINE_DEFAULTS.items():
                os.environ.setdefault(name, value)
            try:
                import litellm
            except ImportError as exc:
                raise MissingExtraError(
                    "provider='litellm' needs LiteLLM, which is not installed: pip install 'rlm-sandbox[litellm]'"
                ) from exc
            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner on every error
            _loaded = litellm
        return _loaded


def _in_chain(exc: BaseException, test: Callable[[BaseException], bool]) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if test(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _caused_by_unreadable_body(exc: BaseException) -> bool:
    # LiteLLM reports a 200 whose body is not JSON as its own HTTP 500; the decode
    # error is still in the chain, and such a reply is malformed, not worth a retry.
    return _in_chain(exc, lambda e: isinstance(e, ValueError) and type(e).__name__ == "JSONDecodeError") is not None


def _connection_failure(exc: BaseException) -> BaseException | None:
    # ...and a refused or reset connection as an HTTP 500 too, with the SDK's error inside.
    return _in_chain(
        exc, lambda e: isinstance(e, openai.APIConnectionError) and not isinstance(e, openai.APITimeoutError)
    )


class LiteLLMClient(ChatClient):
    """Chat completions from any provider LiteLLM knows, by its model name.

    >>> client = LiteLLMClient("anthropic/claude-sonnet-4-5")       # ANTHROPIC_API_KEY from the environment
    >>> client = LiteLLMClient("openai/my-model", base_url="http://localhost:8000/v1")   # any compatible server

    The key: `api_key=`, else what LiteLLM reads from the provider's usual variable
    (ANTHROPIC_API_KEY, GEMINI_API_KEY, ...), else that variable in a `.env` file in the
    working directory (read, never written into the environment). `base_url` is
    LiteLLM's `api_base`. The reply's cap goes out as `max_tokens`, which LiteLLM maps
    to each provider's own field; one that is rejected by name gets the other, once.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 4,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        super().__init__(model, max_retries=max_retries, prices=prices, cap_param="max_tokens")
        self._litellm = load_litellm()
        self.base_url = base_url
        self._api_key = api_key or self._key_from_environment(model)

    def __repr__(self) -> str:
        # Never show the key.
        return f"LiteLLMClient(model={self.model!r}, base_url={self.base_url!r}, max_retries={self.max_retries})"

    @property
    def where(self) -> str:
        return self.base_url or "its provider's API (via LiteLLM)"

    def _key_from_environment(self, model: str) -> str | None:
        """None when LiteLLM finds the key itself; the key from `.env`; a placeholder for a
        keyless server at `base_url`; else MissingAPIKeyError naming the variable."""
        try:
            missing = list(self._litellm.validate_environment(model=model).get("missing_keys") or [])
        except Exception:
            return None  # a model LiteLLM cannot route: its own error will say so on the first call
        if not missing:
            return None
        dotenv_path = find_dotenv(usecwd=True)
        dotenv = dotenv_values(dotenv_path) if dotenv_path else {}
        if len(missing) == 1 and dotenv.get(missing[0]):
            return dotenv[missing[0]]
        if self.base_url is not None:
            return LOCAL_PLACEHOLDER_KEY  # local servers ignore it; the SDK LiteLLM uses insists on one
        if len(missing) == 1 and missing[0].endswith("_API_KEY"):
            raise MissingAPIKeyError(
                f"no API key found for {model}. Set {missing[0]} in the environment, put {missing[0]}=... in a "
                ".env file in the working directory, or pass api_key=."
            )
        return None  # e.g. cloud credentials (AWS, Vertex) that LiteLLM finds in ways of its own

    # -- prices and windows --------------------------------------------------------

    def cost_usd(self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """This package's price (overrides, then genai-prices), as for every client; for a
        model neither knows, LiteLLM's own price if it has one, else 0.0."""
        if lookup_price(model, self.prices) is not None:
            return super().cost_usd(model, input_tokens, output_tokens, cached_input_tokens)
        try:
            prompt, completion = self._litellm.cost_per_token(
                model=model,
                prompt_tokens=input_tokens,
                completion_tokens=output_tokens,
                cache_read_input_tokens=min(cached_input_tokens, input_tokens),
            )
            return max(0.0, float(prompt) + float(completion))
        except Exception:  # LiteLLM raises a plain Exception for a model it does not map
            return 0.0

    def context_window(self, model: str | None = None) -> int | None:
        """`model`'s window in tokens: the /models of the server at `base_url` (vLLM,
        llama.cpp...), else LiteLLM's `max_input_tokens`, else the maintained data, else
        None. Found once per model; a context-length error teaches it too."""
        return super().context_window(model)

    def _discover_window(self, model: str) -> int | None:
        window = self._window_from_server(model) if self.base_url is not None else None
        if window is None:
            window = self._window_from_litellm(model)
        return window if window is not None else known_context_window(model)

    def _window_from_litellm(self, model: str) -> int | None:
        try:
            value = self._litellm.get_model_info(model).get("max_input_tokens")
        except Exception:  # "This model isn't mapped yet"
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def _window_from_server(self, model: str) -> int | None:
        import httpx  # LiteLLM's own dependency

        assert self.base_url is not None
        try:
            served_as = self._litellm.get_llm_provider(model)[0]
        except Exception:
            served_as = model
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            reply = httpx.get(f"{self.base_url.rstrip('/')}/models", headers=headers, timeout=10.0)
            reply.raise_for_status()
            entries = reply.json().get("data")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None  # many servers have no /models: not an error
        if not isinstance(entries, list):
            return None
        return window_in_models_list([entry for entry in entries if isinstance(entry, Mapping)], served_as)

    # -- calls -------------------------------------------------------------------

    def _overflow(self, exc: Any) -> tuple[bool, int | None]:
        overflow, window = context_overflow(exc)
        # LiteLLM knows more providers' wordings than the shared patterns do.
        return overflow or isinstance(exc, self._litellm.ContextWindowExceededError), window

    def _failure(self, exc: Exception, model: str, timeout_s: float | None) -> LMError:
        if not isinstance(exc, openai.APIConnectionError):
            connection = _connection_failure(exc)
            if connection is not None:
                return super()._failure(connection, model, timeout_s)  # type: ignore[arg-type]
        return super()._failure(exc, model, timeout_s)

    def _reported_usage(self, usage: Any) -> tuple[int | None, int | None]:
        # LiteLLM fills a missing usage block with zeros; no real request has 0 input tokens.
        input_tokens, output_tokens = super()._reported_usage(usage)
        if not input_tokens and not output_tokens:
            return None, None
        return input_tokens, output_tokens

    def _create(
        self, model: str, messages: list[dict[str, Any]], timeout_s: float | None, max_output_tokens: int | None
    ) -> Any:
        deadline = _call_deadline.get()
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "api_base": self.base_url,
            "api_key": self._api_key,
            # Retries are ours (below), bounded by the deadline; not LiteLLM's nor the SDK's.
            "num_retries": 0,
            "max_retries": 0,
        }
        if max_output_tokens is not None:
            request[self.cap_param] = max_output_tokens
        attempt = 0
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LMError(f"{model} at {self.where}: no answer within {timeout_s:g}s (retries included)")
                request["timeout"] = remaining
            try:
                return self._litellm.completion(**request)
            except openai.OpenAIError as exc:  # every LiteLLM API error is one
                if _caused_by_unreadable_body(exc):
                    raise LMError(f"{model} at {self.where}: malformed response: {exc}") from exc
                if attempt >= self.max_retries or not is_retryable(exc):
                    raise
                wait = retry_wait_s(exc, attempt)
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise  # the wait (a Retry-After, say) would outlast the call's deadline
                time.sleep(wait)
                attempt += 1
