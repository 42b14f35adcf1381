"""What model calls cost: Pydantic's maintained `genai-prices` data, under user overrides.

`genai-prices` ships a snapshot of every major provider's list prices (input, output,
cached input, tiers) and model facts such as context windows. Nothing is fetched at run
time: the snapshot is the one in the installed package, and `price_source()` names it so
a trajectory says which prices its costs came from. A model neither the overrides nor
the data know (a local Llama, say) costs 0.0 and is still counted.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Price", "cost_usd", "known_context_window", "lookup_price", "price_source"]


class Price(BaseModel):
    """USD per one million tokens (a user override of the maintained data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    """Input tokens read from the provider's prompt cache; None: same as input."""


def price_source() -> dict[str, str | None]:
    """Which price data costs come from, for the trajectory's metadata."""
    try:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        stamp = getattr(snapshot, "timestamp", None)
        return {
            "source": "genai-prices",
            "version": importlib.metadata.version("genai-prices"),
            "snapshot": stamp.isoformat() if stamp is not None else None,
        }
    except Exception:  # a broken install must not stop a run; costs are then 0.0
        return {"source": "none (genai-prices unavailable)", "version": None, "snapshot": None}


def _override(model: str, prices: Mapping[str, Price] | None) -> Price | None:
    """A user price for `model`, tolerating provider prefixes and dated snapshots.

    "openai/gpt-4o-2024-08-06" finds "gpt-4o"; the longest known name wins, so
    "gpt-4o-mini-2024-07-18" finds "gpt-4o-mini", not "gpt-4o".
    """
    if not prices:
        return None
    lowered = {name.lower(): price for name, price in prices.items()}
    name = model.strip().lower()
    candidates = [name]
    if "/" in name:
        candidates.append(name.rsplit("/", 1)[1])
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
        best = max((known for known in lowered if candidate.startswith(known + "-")), key=len, default=None)
        if best is not None:
            return lowered[best]
    return None


def _refs(model: str) -> list[tuple[str, str | None]]:
    # "openai/gpt-4o" names its provider; "gpt-4o" lets the data guess it from the name.
    name = model.strip().lower()
    refs: list[tuple[str, str | None]] = [(name, None)]
    if "/" in name:
        provider, bare = name.split("/", 1)
        refs = [(bare, provider), (bare, None), (name, None)]
    return refs


@functools.lru_cache(maxsize=512)
def _maintained(model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int) -> float | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached_input_tokens)
    for ref, provider in _refs(model):
        try:
            return float(calc_price(usage, ref, provider_id=provider).total_price)
        except (LookupError, ValueError):
            continue
    return None


def lookup_price(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The per-million-token price of `model`: the override if given, else the maintained data."""
    override = _override(model, prices)
    if override is not None:
        return override
    mtok = 1_000_000
    input_price = _maintained(model, mtok, 0, 0)
    if input_price is None:
        return None
    return Price(
        input_per_mtok=input_price,
        output_per_mtok=_maintained(model, 0, mtok, 0) or 0.0,
        cached_input_per_mtok=_maintained(model, mtok, 0, mtok),
    )


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, Price] | None = None,
    *,
    cached_input_tokens: int = 0,
) -> float:
    """Dollars for one call; 0.0 for a model without a known price.

    `input_tokens` counts every input token; `cached_input_tokens` says how many of
    them the server read from its cache, which are charged at the cached price.
    """
    cached = min(max(0, cached_input_tokens), input_tokens)
    override = _override(model, prices)
    if override is not None:
        cached_price = (
            override.input_per_mtok if override.cached_input_per_mtok is None else override.cached_input_per_mtok
        )
        return (
            (input_tokens - cached) * override.input_per_mtok
            + cached * cached_price
            + output_tokens * override.output_per_mtok
        ) / 1_000_000
    return _maintained(model, input_tokens, output_tokens, cached) or 0.0


def known_context_window(model: str) -> int | None:
    """The model's window according to the maintained data, if it has one."""
    try:
        from genai_prices import data_snapshot
    except ImportError:
        return None
    snapshot: Any = data_snapshot.get_snapshot()
    for ref, provider in _refs(model):
        try:
            _, info = snapshot.find_provider_model(ref, None, provider, None)
        except (LookupError, ValueError):
            continue
        window = getattr(info, "context_window", None)
        return window if isinstance(window, int) and window > 0 else None
    return None
