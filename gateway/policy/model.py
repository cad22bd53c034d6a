"""The policy schema (design.md §3): strict pydantic models, unknown keys rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Objective = Literal["cheapest", "fastest", "balanced", "greenest"]
ModelType = Literal["chat", "embedding"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """One logical model served by a backend."""

    id: str = Field(min_length=1, description="the provider's own model id")
    input_price: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    output_price: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")
    context_window: int | None = Field(default=None, gt=0)
    type: ModelType = "chat"
    # Declared expectations, used to rank until live telemetry exists for this backend.
    ttft_ms: float | None = Field(default=None, gt=0)
    tokens_per_s: float | None = Field(default=None, gt=0)


class Backend(_Strict):
    provider: str = Field(min_length=1, description="adapter kind: openai, ...")
    base_url: str = Field(
        pattern=r"^https?://[^\s/]+", description="http(s) URL of the API root, e.g. .../v1"
    )
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    hardware: str | None = None
    joules_per_token: float | None = Field(default=None, gt=0, description="overrides the hardware catalog")
    headers: dict[str, str] = Field(default_factory=dict, description="static headers sent upstream")
    models: dict[str, ModelEntry] = Field(min_length=1)


class RouteMatch(_Strict):
    model: str = Field(default="*", min_length=1, description="glob over the requested model")


class Timeouts(_Strict):
    connect_s: float = Field(default=3.0, gt=0)
    first_token_s: float = Field(default=30.0, gt=0, description="until the response headers arrive")
    idle_s: float = Field(default=30.0, gt=0, description="between two chunks of a stream")
    total_s: float = Field(default=300.0, gt=0)


class Route(_Strict):
    name: str = Field(min_length=1)
    match: RouteMatch = Field(default_factory=RouteMatch)
    objective: Objective = "balanced"
    backends: list[str] | None = Field(default=None, description="allow only these backends")
    max_attempts: int = Field(default=3, ge=1, le=10)
    expected_output_tokens: int = Field(default=256, gt=0, description="used to predict cost and latency")
    timeouts: Timeouts = Field(default_factory=Timeouts)


class Policy(_Strict):
    backends: dict[str, Backend] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=lambda: [Route(name="default")])
