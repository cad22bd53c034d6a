"""Scoring: a pure function from candidates, an estimate of the request and an objective to a ranked list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.policy.model import Objective
from gateway.providers.base import Target
from gateway.routing.hardware import joules_per_token

# Priors for a backend that declares no speed: conservative, so declared-fast backends rank first.
DEFAULT_TTFT_MS = 1000.0
DEFAULT_TOKENS_PER_S = 50.0
PREFILL_ENERGY_SHARE = 0.1  # a prompt token costs about a tenth of a generated one


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Scored:
    target: Target
    latency_ms: float
    cost_usd: float
    energy_j: float
    score: float


@dataclass(frozen=True, slots=True)
class Dropped:
    backend: str
    reason: str


def predict(target: Target, est: Estimate) -> tuple[float, float, float]:
    """Predicted (latency ms, cost USD, energy J) of sending the request to `target`."""
    ttft = target.ttft_ms if target.ttft_ms is not None else DEFAULT_TTFT_MS
    tps = target.tokens_per_s if target.tokens_per_s is not None else DEFAULT_TOKENS_PER_S
    latency = ttft + est.output_tokens / tps * 1000.0
    cost = (est.input_tokens * target.input_price + est.output_tokens * target.output_price) / 1e6
    energy = joules_per_token(target.hardware, target.joules_per_token) * (
        est.output_tokens + est.input_tokens * PREFILL_ENERGY_SHARE
    )
    return latency, cost, energy


def rank(
    targets: Sequence[Target], objective: Objective, est: Estimate
) -> tuple[list[Scored], list[Dropped]]:
    """Best first, ties in policy order; candidates that cannot take the request are dropped with a reason."""
    kept: list[tuple[Target, float, float, float]] = []
    dropped: list[Dropped] = []
    for t in targets:
        if t.context_window is not None and est.input_tokens > t.context_window:
            dropped.append(
                Dropped(
                    t.backend,
                    f"prompt of ~{est.input_tokens} tokens exceeds context window {t.context_window}",
                )
            )
            continue
        kept.append((t, *predict(t, est)))
    if not kept:
        return [], dropped
    max_lat = max(max(k[1] for k in kept), 1e-9)
    max_cost = max(max(k[2] for k in kept), 1e-12)
    scored = [
        Scored(t, lat, cost, en, _score(objective, lat, cost, en, max_lat, max_cost))
        for t, lat, cost, en in kept
    ]
    tiebreak = {
        "cheapest": "latency_ms",
        "fastest": "cost_usd",
        "greenest": "cost_usd",
        "balanced": "latency_ms",
    }
    key = tiebreak[objective]
    order = sorted(range(len(scored)), key=lambda i: (scored[i].score, getattr(scored[i], key), i))
    return [scored[i] for i in order], dropped


def _score(
    objective: Objective, lat: float, cost: float, energy: float, max_lat: float, max_cost: float
) -> float:
    if objective == "cheapest":
        return cost
    if objective == "fastest":
        return lat
    if objective == "greenest":
        return energy
    # balanced: each dimension as a share of the worst candidate's (0..1), so neither unit dominates and a
    # free backend scores 0 on cost rather than making every other ratio infinite.
    return 0.5 * (cost / max_cost) + 0.5 * (lat / max_lat)
