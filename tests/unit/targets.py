"""A Target with neutral defaults, for unit tests of routing, retries, adapters and telemetry."""

from __future__ import annotations

from typing import Any

from gateway.providers.base import Target
from gateway.providers.credentials import StaticKey
from gateway.secret import Secret

DEFAULTS: dict[str, Any] = {
    "backend": "b",
    "provider": "openai",
    "base_url": "http://x",
    "model": "m",
    "model_id": "m",
    "headers": {},
    "hardware": None,
    "input_price": 1.0,
    "output_price": 1.0,
    "context_window": None,
    "ttft_ms": None,
    "tokens_per_s": None,
}


def target(**overrides: Any) -> Target:
    """`api_key="..."` gives the target a static-key credential provider, as the runtime would."""
    key = overrides.pop("api_key", None)
    if key is not None:
        overrides["credential"] = StaticKey(Secret(key))
    return Target(**{**DEFAULTS, **overrides})
