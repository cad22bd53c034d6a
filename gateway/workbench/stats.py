"""Per-backend figures from a run's samples: percentiles, cost, energy estimates and headroom seen."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.routing.hardware import joules_per_token
from gateway.workbench.runner import Run


@dataclass(frozen=True, slots=True)
class Figures:
    backend: str
    model: str
    hardware: str | None
    requests: int
    ok: int
    errors: dict[str, int]
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttft_p99_ms: float | None
    tokens_per_s_p50: float | None
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    input_price: float  # USD per 1M tokens, as the policy prices them
    output_price: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    workload_cost_usd: float | None  # the whole workload at the measured cost per request
    joules_per_output_token: float  # an estimate from the hardware catalog, not a measurement
    output_tokens_per_joule: float
    min_requests_remaining: int | None
    min_tokens_remaining: int | None
    stopped_by_cap: bool

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that was observed, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def figures(run: Run, workload_size: int | None = None) -> Figures:
    t = run.target
    ok = [s for s in run.samples if s.error is None]
    ttft = [s.ttft_s for s in ok if s.ttft_s is not None]
    e2e = [s.e2e_s for s in ok if s.e2e_s is not None]
    speeds = [v for s in ok if (v := s.tokens_per_s) is not None]
    cost = sum(s.cost_usd for s in ok)
    jpt = joules_per_token(t.hardware, t.joules_per_token)
    rooms = [s.headroom for s in run.samples if s.headroom is not None]
    req_left = [h.requests_remaining for h in rooms if h.requests_remaining is not None]
    tok_left = [h.tokens_remaining for h in rooms if h.tokens_remaining is not None]
    tps = percentile(speeds, 50)
    return Figures(
        backend=t.backend,
        model=t.model,
        hardware=t.hardware,
        requests=len(run.samples),
        ok=len(ok),
        errors=dict(Counter(s.error for s in run.samples if s.error is not None)),
        ttft_p50_ms=_ms(percentile(ttft, 50)),
        ttft_p95_ms=_ms(percentile(ttft, 95)),
        ttft_p99_ms=_ms(percentile(ttft, 99)),
        tokens_per_s_p50=None if tps is None else round(tps, 1),
        e2e_p50_ms=_ms(percentile(e2e, 50)),
        e2e_p95_ms=_ms(percentile(e2e, 95)),
        input_price=t.input_price,
        output_price=t.output_price,
        input_tokens=sum(s.input_tokens for s in ok),
        output_tokens=sum(s.output_tokens for s in ok),
        cost_usd=round(cost, 8),
        workload_cost_usd=round(cost / len(ok) * workload_size, 8) if ok and workload_size else None,
        joules_per_output_token=jpt,
        output_tokens_per_joule=round(1 / jpt, 3),
        min_requests_remaining=min(req_left) if req_left else None,
        min_tokens_remaining=min(tok_left) if tok_left else None,
        stopped_by_cap=run.stopped_by_cap,
    )


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indexes of the points no other point beats on both axes (both minimised), in input order.

    A point is dominated when another is no worse on both and better on at least one; equal points
    are all kept."""
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy <= y) and (ox < x or oy < y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            keep.append(i)
    return keep
