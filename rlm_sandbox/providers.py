"""Which client reaches a model: the openai SDK, or LiteLLM for providers' native APIs.

Its own module so that lm.py (the shared ChatClient and the OpenAI client) and
litellm_client.py (built on it) import one way; LiteLLM is imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import UnknownProviderError
from .lm import ChatClient, OpenAIClient, Price

__all__ = ["PROVIDERS", "check_provider", "client_for"]

PROVIDERS = ("openai", "litellm")
"""What `RLM(provider=...)` and `--provider` accept: the openai SDK for any
OpenAI-compatible endpoint, or LiteLLM for providers' native APIs (`rlm-sandbox[litellm]`)."""


def check_provider(provider: str) -> None:
    """Raise UnknownProviderError unless `provider` is one of PROVIDERS."""
    if provider not in PROVIDERS:
        raise UnknownProviderError(
            f"unknown provider {provider!r}",
            f"use one of {', '.join(map(repr, PROVIDERS))}: 'openai' for any OpenAI-compatible endpoint, "
            "'litellm' for providers' native APIs through LiteLLM",
        )


def client_for(
    provider: str,
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    prices: Mapping[str, Price] | None = None,
    max_retries: int = 4,
) -> ChatClient:
    """The client of `provider` for `model`. LiteLLM is imported only here, when asked for.

    >>> client_for("litellm", "anthropic/claude-sonnet-4-5")   # ANTHROPIC_API_KEY from the environment
    """
    check_provider(provider)
    if provider == "litellm":
        from .litellm_client import LiteLLMClient

        return LiteLLMClient(model, base_url=base_url, api_key=api_key, prices=prices, max_retries=max_retries)
    return OpenAIClient(model, base_url=base_url, api_key=api_key, prices=prices, max_retries=max_retries)
