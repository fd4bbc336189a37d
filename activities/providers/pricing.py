"""Estimated cost of an LLM call: a price table per provider and model, in USD per million tokens.

The built-in table is small and dated (`PRICES_AS_OF`): list prices of a few common models. The
operator merges their own over it with `LLM_PRICES_FILE` (a JSON file of the same shape; a model
listed there replaces the built-in entry), e.g. for negotiated prices, new models, or a local
model priced at 0. A model in neither has no price: its `cost_usd` is omitted, never 0.

A price entry: `{"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}`; a cache
price left out counts at the `input` price.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ContractError
from core.step_io import Usage

PRICES_AS_OF = "2025-06"

_SONNET_4 = {"input": 3.0, "output": 15.0, "cache_read": 0.30, "cache_write": 3.75}
_OPUS_4 = {"input": 15.0, "output": 75.0, "cache_read": 1.50, "cache_write": 18.75}
_HAIKU_35 = {"input": 0.80, "output": 4.0, "cache_read": 0.08, "cache_write": 1.0}

BUILT_IN: dict[str, dict[str, dict[str, float]]] = {
    "anthropic": {
        "claude-sonnet-4-20250514": _SONNET_4,
        "claude-opus-4-20250514": _OPUS_4,
        "claude-3-5-haiku-20241022": _HAIKU_35,
    },
    "bedrock": {
        "anthropic.claude-sonnet-4-20250514-v1:0": _SONNET_4,
        "us.anthropic.claude-sonnet-4-20250514-v1:0": _SONNET_4,
        "anthropic.claude-3-5-haiku-20241022-v1:0": _HAIKU_35,
    },
    "vertex": {
        "claude-sonnet-4@20250514": _SONNET_4,
        "claude-opus-4@20250514": _OPUS_4,
        "claude-3-5-haiku@20241022": _HAIKU_35,
    },
    "openai": {
        "gpt-4o": {"input": 2.50, "output": 10.0, "cache_read": 1.25},
        "gpt-4o-mini": {"input": 0.15, "output": 0.60, "cache_read": 0.075},
        "gpt-4.1": {"input": 2.0, "output": 8.0, "cache_read": 0.50},
        "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "cache_read": 0.10},
    },
}

_FIELDS = ("input", "output", "cache_read", "cache_write")


class PriceTable:
    def __init__(self, prices: dict[str, dict[str, dict[str, float]]] | None = None):
        self._prices = prices if prices is not None else BUILT_IN

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        """The built-in table with the operator's file merged over it; a bad file stops the worker
        at start with the reason (a wrong price would otherwise go unnoticed in every event)."""
        merged = {provider: dict(models) for provider, models in BUILT_IN.items()}
        if path:
            for provider, models in _read(path).items():
                merged.setdefault(provider, {}).update(models)
        return cls(merged)

    def price(self, provider: str, model: str) -> dict[str, float] | None:
        return self._prices.get(provider, {}).get(model)

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """USD for this usage, or None when the model has no price."""
        price = self.price(provider, model)
        if price is None:
            return None
        per_token = {name: price.get(name, price["input"]) / 1_000_000 for name in _FIELDS}
        total = (
            usage.input_tokens * per_token["input"]
            + usage.output_tokens * per_token["output"]
            + usage.cache_read_input_tokens * per_token["cache_read"]
            + usage.cache_creation_input_tokens * per_token["cache_write"]
        )
        return round(total, 9)


def _read(path: str) -> dict[str, dict[str, dict[str, float]]]:
    try:
        data: Any = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ContractError(f"LLM_PRICES_FILE {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"LLM_PRICES_FILE {path}: expected an object of providers")
    for provider, models in data.items():
        if not isinstance(models, dict):
            raise ContractError(f"LLM_PRICES_FILE {path}: {provider}: expected an object of models")
        for model, price in models.items():
            where = f"LLM_PRICES_FILE {path}: {provider}/{model}"
            if not isinstance(price, dict) or "input" not in price or "output" not in price:
                raise ContractError(f"{where}: needs at least input and output (USD per million tokens)")
            unknown = set(price) - set(_FIELDS)
            if unknown:
                raise ContractError(f"{where}: unknown fields {', '.join(sorted(unknown))} (expected {', '.join(_FIELDS)})")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in price.values()):
                raise ContractError(f"{where}: prices must be numbers >= 0")
    return data
