"""Scoring: a pure function from candidates, live telemetry, the request's estimate and the route's objective
and constraints to a ranked list, with a reason for every candidate dropped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.policy.model import Objective, Weights
from gateway.policy.quantization import quantization_violation
from gateway.providers.base import Target
from gateway.routing.hardware import joules_per_token
from gateway.telemetry import Stats

# Priors for a backend that declares no speed and has no telemetry: conservative, so known-fast ones lead.
DEFAULT_TTFT_MS = 1000.0
DEFAULT_TOKENS_PER_S = 50.0
PREFILL_ENERGY_SHARE = 0.1  # a prompt token costs about a tenth of a generated one
FRESH_SAMPLES = 0.5  # decayed attempts below which telemetry is too thin to trust
QUEUE_SLOTS = 32.0  # in-flight requests a backend absorbs before queueing shows in latency
LOW_HEADROOM = 0.1  # below this share of the rate limit left, a backend is demoted


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Constraints:
    """The route's hard limits plus per-request preferences (OpenRouter's `provider` object)."""

    max_ttft_ms: float | None = None
    min_tokens_per_s: float | None = None
    max_input_price: float | None = None
    max_output_price: float | None = None
    hardware_allow: frozenset[str] | None = None
    hardware_deny: frozenset[str] = frozenset()
    min_context_window: int | None = None
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    # Serving precision: the route's allow list and minimum, the request's provider.quantizations.
    quantization_allow: frozenset[str] | None = None
    min_precision: str | None = None
    quantizations: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    target: Target
    latency_ms: float
    cost_usd: float
    energy_j: float
    score: float
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    failure_rate: float = 0.0
    requests_remaining: int | None = None
    demoted: str | None = None  # why it ranks after every healthy candidate
    fresh: bool = False  # ranked on live telemetry, not only on declared priors


@dataclass(frozen=True, slots=True)
class Dropped:
    backend: str
    reason: str
    probe: Scored | None = None  # dropped on measured speed only: may still get a bounded probe


@dataclass(slots=True)
class _View:
    """What we believe about one candidate now: telemetry where fresh, priors elsewhere."""

    ttft_ms: float | None
    tokens_per_s: float | None
    latency_ms: float
    cost_usd: float
    energy_j: float
    failure_rate: float = 0.0
    remaining: int | None = None
    demoted: str | None = None
    fresh: bool = False


def observe(t: Target, st: Stats | None, est: Estimate, now: float, waiting_ms: float = 0.0) -> _View:
    ttft, tps = t.ttft_ms, t.tokens_per_s
    observed_latency: float | None = None
    fresh = st is not None and st.samples >= FRESH_SAMPLES
    # Measurements beat declared priors even once old: decay shrinks their weight, not their value, and
    # falling back to a prior would send a herd to a backend just dropped for being slow. Freshness only
    # decides exploration, which is what renews old numbers.
    if st is not None and st.ttft_p50_s is not None and st.ttft_samples > 0:
        ttft = st.ttft_p50_s * 1000
        tps = st.tokens_per_s or tps
    elif st is not None and st.latency_s is not None:
        observed_latency = st.latency_s * 1000  # non-streaming only: an upper bound of TTFT
        ttft = observed_latency
    if waiting_ms > (ttft or 0.0):
        # An attempt has waited this long already: the backend is at least this slow right now.
        observed_latency = None
        ttft = waiting_ms
    eff_ttft = ttft if ttft is not None else DEFAULT_TTFT_MS
    eff_tps = tps if tps is not None else DEFAULT_TOKENS_PER_S
    latency = observed_latency or eff_ttft + est.output_tokens / eff_tps * 1000.0
    cost = (est.input_tokens * t.input_price + est.output_tokens * t.output_price) / 1e6
    energy = joules_per_token(t.hardware, t.joules_per_token) * (
        est.output_tokens + est.input_tokens * PREFILL_ENERGY_SHARE
    )
    view = _View(ttft, tps, latency, cost, energy, fresh=fresh)
    if st is not None:
        view.latency_ms *= 1 + st.in_flight / QUEUE_SLOTS
        view.failure_rate = st.failure_rate if fresh else 0.0
        view.remaining = st.requests_remaining(now)
        limit = st.headroom.requests_limit if st.headroom else None
        if view.remaining is not None and limit and view.remaining < LOW_HEADROOM * limit:
            view.demoted = f"rate-limit headroom low: {view.remaining}/{limit} requests left"
    return view


def violation(t: Target, v: _View, c: Constraints, est: Estimate) -> str | None:
    """The first hard constraint the candidate breaks, as a reason; None when it may serve."""
    if c.only is not None and t.backend not in c.only:
        return "not in the request's provider.only"
    if t.backend in c.ignore:
        return "in the request's provider.ignore"
    if t.context_window is not None and est.input_tokens > t.context_window:
        return f"prompt of ~{est.input_tokens} tokens exceeds context window {t.context_window}"
    if c.min_context_window is not None and (t.context_window or 0) < c.min_context_window:
        return f"context window {t.context_window} < min_context_window {c.min_context_window}"
    if c.hardware_allow is not None and t.hardware not in c.hardware_allow:
        return f"hardware {t.hardware} not allowed"
    if t.hardware in c.hardware_deny:
        return f"hardware {t.hardware} denied"
    if c.max_input_price is not None and t.input_price > c.max_input_price:
        return f"input price {t.input_price:g} > max {c.max_input_price:g}"
    if c.max_output_price is not None and t.output_price > c.max_output_price:
        return f"output price {t.output_price:g} > max {c.max_output_price:g}"
    return quantization_violation(t.quantization, c.quantization_allow, c.min_precision, c.quantizations)


def too_slow(v: _View, c: Constraints) -> str | None:
    """A speed constraint broken by what was measured (or declared): may change, so worth a probe."""
    if c.max_ttft_ms is not None and v.ttft_ms is not None and v.ttft_ms > c.max_ttft_ms:
        return f"TTFT {v.ttft_ms:.0f} ms > max_ttft_ms {c.max_ttft_ms:g}"
    if c.min_tokens_per_s is not None and v.tokens_per_s is not None and v.tokens_per_s < c.min_tokens_per_s:
        return f"{v.tokens_per_s:.0f} tokens/s < min_tokens_per_s {c.min_tokens_per_s:g}"
    return None


_NO_CONSTRAINTS = Constraints()
_DEFAULT_WEIGHTS = Weights()


def rank(
    targets: Sequence[Target],
    objective: Objective,
    est: Estimate,
    *,
    telemetry: Mapping[tuple[str, str], Stats] | None = None,
    constraints: Constraints | None = None,
    weights: Weights | None = None,
    now: float = 0.0,
    waiting_ms: Mapping[tuple[str, str], float] | None = None,
) -> tuple[list[Scored], list[Dropped]]:
    """Best first: healthy before demoted, then by score, ties in policy order."""
    kept, dropped = _screen(targets, est, telemetry, constraints or _NO_CONSTRAINTS, now, waiting_ms)
    if not kept:
        return [], dropped
    _be_optimistic_about_the_unmeasured(kept)
    w = weights or _DEFAULT_WEIGHTS
    denominators = _worst(kept) if objective not in ("cheapest", "fastest", "greenest") else (1.0, 1.0, 1.0)
    scored = [_scored(t, v, _score(objective, v, denominators, w)) for t, v in kept]
    if len(scored) == 1:
        return scored, dropped
    by_latency = objective in ("cheapest", "balanced")
    order = sorted(
        (s.demoted is not None, s.score, s.latency_ms if by_latency else s.cost_usd, i)
        for i, s in enumerate(scored)
    )
    return [scored[i] for *_, i in order], dropped


def _screen(
    targets: Sequence[Target],
    est: Estimate,
    telemetry: Mapping[tuple[str, str], Stats] | None,
    c: Constraints,
    now: float,
    waiting_ms: Mapping[tuple[str, str], float] | None,
) -> tuple[list[tuple[Target, _View]], list[Dropped]]:
    """Each candidate's view, split into those that may serve and those dropped (with the reason)."""
    kept: list[tuple[Target, _View]] = []
    dropped: list[Dropped] = []
    stats_of = telemetry.get if telemetry else None
    waited = waiting_ms.get if waiting_ms else None
    for t in targets:
        key = (t.backend, t.model_id)
        st = stats_of(key) if stats_of is not None else None
        v = observe(t, st, est, now, waited(key, 0.0) if waited is not None else 0.0)
        reason = violation(t, v, c, est)
        if reason is None and st is not None and st.saturated(now):
            reason = "rate limit exhausted until its reset (x-ratelimit / retry-after / learned limit)"
        slow = too_slow(v, c) if reason is None else None
        if slow is not None:
            dropped.append(Dropped(t.backend, slow, _scored(t, v, float("inf"))))
        elif reason is not None:
            dropped.append(Dropped(t.backend, reason))
        else:
            kept.append((t, v))
    return kept, dropped


def _worst(kept: list[tuple[Target, _View]]) -> tuple[float, float, float]:
    """The worst cost, latency and energy among the candidates (never 0): what `balanced` divides by."""
    cost = latency = energy = 0.0
    for _, v in kept:
        cost = v.cost_usd if v.cost_usd > cost else cost
        latency = v.latency_ms if v.latency_ms > latency else latency
        energy = v.energy_j if v.energy_j > energy else energy
    return max(cost, 1e-12), max(latency, 1e-12), max(energy, 1e-12)


def _be_optimistic_about_the_unmeasured(kept: list[tuple[Target, _View]]) -> None:
    """A backend with neither a declared speed nor telemetry is predicted just ahead of the best measured
    one, so it is tried once and then judged on what it does, rather than never tried behind a guess."""
    known = [v.latency_ms for _, v in kept if v.ttft_ms is not None]
    if not known or len(known) == len(kept):
        return
    for _, v in kept:
        if v.ttft_ms is None:
            v.latency_ms = min(known) * 0.99


def _scored(t: Target, v: _View, score: float) -> Scored:
    return Scored(
        t, v.latency_ms, v.cost_usd, v.energy_j, score, v.ttft_ms, v.tokens_per_s, v.failure_rate,
        v.remaining, v.demoted, v.fresh,
    )  # fmt: skip


def _score(objective: Objective, v: _View, worst: tuple[float, float, float], w: Weights) -> float:
    # Failures cost a retry elsewhere: weigh every objective by the expected number of tries.
    penalty = 1.0 + 2.0 * v.failure_rate
    if objective == "cheapest":
        return v.cost_usd * penalty
    if objective == "fastest":
        return v.latency_ms * penalty
    if objective == "greenest":
        return v.energy_j * penalty
    # balanced: each dimension as a share of the worst candidate's (0..1), so neither unit dominates and a
    # free backend scores 0 on cost rather than making every other ratio infinite.
    cost, lat, energy = worst
    return (
        w.cost * (v.cost_usd / cost) + w.latency * (v.latency_ms / lat) + w.energy * (v.energy_j / energy)
    ) * penalty
