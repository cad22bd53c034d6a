"""Scoring: a pure function from candidates, live telemetry, the request's estimate and the route's objective
and constraints to a ranked list, with a reason for every candidate dropped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gateway.policy.model import Objective, Weights
from gateway.policy.quantization import quantization_violation
from gateway.providers.base import Target
from gateway.routing.hardware import joules_per_token
from gateway.telemetry import Stats
from gateway.telemetry.loadsignals import LoadSignal

# Priors for a backend that declares no speed and has no telemetry: conservative, so known-fast ones lead.
DEFAULT_TTFT_MS = 1000.0
DEFAULT_TOKENS_PER_S = 50.0
PREFILL_ENERGY_SHARE = 0.1  # a prompt token costs about a tenth of a generated one
FRESH_SAMPLES = 0.5  # decayed attempts below which telemetry is too thin to trust
QUEUE_SLOTS = 32.0  # in-flight requests a backend absorbs before queueing shows in latency
LOW_HEADROOM = 0.1  # below this share of the rate limit left, a backend is demoted
KV_KNEE = 0.8  # KV-cache use above which a self-hosted server starts preempting and queueing
KV_FULL = 0.95  # ...and at which it is treated as saturated, like a queue
FORGIVEN = 0.05  # an estimate decayed by more than this share leads only as a probe (it is a guess)


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    bounded: bool = False  # the output is capped by the request (max_tokens) or has none (embeddings)


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
    load: LoadSignal | None = None  # the self-hosted server's own gauges, when scraped and fresh
    load_age_s: float | None = None  # how old they were when ranked
    age_s: float | None = None  # seconds since the estimate was last fed by a measurement (None: never)
    forgiven: bool = False  # ranked on a peak (or failure share) decayed with its age
    # Leads only thanks to that decay (unforgiven it would break a speed constraint or rank lower): a probe.
    forgiven_lead: bool = False
    # What one attempt should take (first byte of a stream, whole answer otherwise), from the estimates
    # before any waiting attempt inflated them: what per-try deadlines and stuck detection measure against.
    expected_ttft_ms: float = DEFAULT_TTFT_MS
    expected_ms: float = 0.0
    # The same from the last-good figures (a hang's censored waits raise the peak, not these): what a
    # trial of a backend out for a hang should take if it recovered, so its short deadline.
    well_ttft_ms: float = DEFAULT_TTFT_MS
    well_ms: float = 0.0


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
    load: LoadSignal | None = None
    load_age_s: float | None = None
    age_s: float | None = None
    forgiven: bool = False
    expected_ttft_ms: float = DEFAULT_TTFT_MS  # before waiting attempts inflate it
    expected_ms: float = 0.0
    well_ttft_ms: float = DEFAULT_TTFT_MS  # from the last-good figures
    well_ms: float = 0.0
    raw: _View | None = None  # the same candidate with nothing forgiven (set only when something was)
    raw_slow: bool = False  # unforgiven, it breaks a speed constraint


# The speed figures one candidate is ranked on, before waiting attempts and load are applied: TTFT (ms),
# tokens/s, measured whole-answer latency (ms; non-streaming only: it bounds TTFT), age of the estimate (s),
# whether it was forgiven, and the estimate's last-good figure (ms; TTFT, or latency on that path). A plain
# tuple: it is built for every candidate of every request.
_Speed = tuple[float | None, float | None, float | None, float | None, bool, float | None]


def _speed(t: Target, st: Stats | None, now: float, forgive_s: float | None) -> _Speed:
    """The recency-weighted estimates (forgiven with age when `forgive_s`), else the window's figures, else
    the declared priors. Measurements beat declared priors even once old: falling back to a prior would
    send a herd to a backend just dropped for being slow; forgiving lets it back only as a probe."""
    e = st.est if st is not None else None
    if e is not None:
        ttft = e.ttft
        if ttft.value is not None:
            prior = t.ttft_ms / 1000 if t.ttft_ms is not None else None
            seen = ttft.view(now, prior, forgive_s) or 0.0
            tps = (st.tokens_per_s if st is not None else None) or t.tokens_per_s
            good = ttft.good * 1000 if ttft.good is not None else None
            return seen * 1000, tps, None, now - ttft.at, seen < ttft.value * (1 - FORGIVEN), good
        lat = e.latency
        if lat.value is not None:
            seen = lat.view(now, None, forgive_s) or 0.0
            good = lat.good * 1000 if lat.good is not None else None
            ms = seen * 1000
            return ms, t.tokens_per_s, ms, now - lat.at, seen < lat.value * (1 - FORGIVEN), good
    if st is not None and st.ttft_p50_s is not None and st.ttft_samples > 0:
        return st.ttft_p50_s * 1000, st.tokens_per_s or t.tokens_per_s, None, None, False, None
    if st is not None and st.latency_s is not None:
        return st.latency_s * 1000, t.tokens_per_s, st.latency_s * 1000, None, False, None
    return t.ttft_ms, t.tokens_per_s, None, None, False, None


def observe(
    t: Target,
    st: Stats | None,
    est: Estimate,
    now: float,
    waiting_ms: float = 0.0,
    forgive_s: float | None = None,
) -> _View:
    """What we believe about `t` now. `waiting_ms`: the oldest attempt still waiting on it (this replica or
    another); `forgive_s`: the half-life with which an unrefreshed peak decays toward the last-good figure
    (None: exploration is off, the peak stands until the backend is measured again)."""
    # While something waits on it, the backend is being tried: nothing to forgive until it answers.
    forgive = forgive_s if waiting_ms <= 0 else None
    sp_ttft, tps, sp_measured, age, forgiven, good = _speed(t, st, now, forgive)
    # What an attempt should take, before any waiting attempt inflates it: per-try deadlines and stuck
    # detection are measured against this, not against a hang's own growing wait.
    # A whole answer: the measured latency where there is one, else the first token plus the generation.
    expected_ttft = sp_ttft if sp_ttft is not None else DEFAULT_TTFT_MS
    generation = est.output_tokens / (tps or DEFAULT_TOKENS_PER_S) * 1000.0
    expected = sp_measured or expected_ttft + generation
    latency = expected
    ttft = sp_ttft
    if waiting_ms > (ttft or 0.0):
        # An attempt has waited this long already: the backend is at least this slow right now, and an answer
        # late by d is expected about d later still (what has lasted t tends to last about t more), so a step
        # across a TTFT limit drops the backend before the limit itself has passed.
        ttft = waiting_ms if ttft is None else 2 * waiting_ms - ttft
        latency = ttft + generation
    # `well_*`: the expectations again, from the last-good figure where it is below the estimate.
    well_ttft, well = expected_ttft, expected
    if good is not None and sp_ttft is not None and good < sp_ttft:
        well_ttft, well = good, (good if sp_measured is not None else None) or good + generation
    cost = (est.input_tokens * t.input_price + est.output_tokens * t.output_price) / 1e6
    energy = joules_per_token(t.hardware, t.joules_per_token) * (
        est.output_tokens + est.input_tokens * PREFILL_ENERGY_SHARE
    )
    view = _View(
        ttft, tps, latency, cost, energy, age_s=age, forgiven=forgiven, expected_ttft_ms=expected_ttft,
        expected_ms=expected, well_ttft_ms=well_ttft, well_ms=well,
    )  # fmt: skip
    if st is not None:
        _live(view, st, now, forgive)
    if view.forgiven:  # what it would be without forgiving: whether it leads only thanks to its age
        view.raw = observe(t, st, est, now, waiting_ms, None)
    return view


def load_pressure(v: _View, load: LoadSignal | None, now: float) -> None:
    """A self-hosted server's own gauges (telemetry/loadsignals.py) say it is filling up before its measured
    latency does: queued requests and KV-cache use past the knee stretch its predicted latency now, and a
    queue (or a nearly full cache) demotes it behind every candidate with room, so traffic overflows to
    hosted backends instead of joining the queue. Signals older than their `stale_after_s` are ignored."""
    if load is None or not load.fresh(now):
        return
    v.load, v.load_age_s = load, load.age(now)
    queued = load.waiting or 0.0
    kv = load.kv_cache or 0.0
    v.latency_ms *= (1.0 + queued / max(load.running or 0.0, 1.0)) * (
        1.0 + max(0.0, kv - KV_KNEE) / (1 - KV_KNEE)
    )
    if v.demoted is None and (queued >= 1.0 or kv >= KV_FULL):
        v.demoted = f"saturated: {queued:g} requests queued, KV cache {kv:.0%} ({v.load_age_s:.1f}s ago)"


def _live(view: _View, st: Stats, now: float, forgive_s: float | None) -> None:
    """Load, failures and rate-limit headroom from the backend's telemetry. The failure share is the
    recency-weighted one (decaying with its age when forgiving), else the window's."""
    view.fresh = fresh = st.samples >= FRESH_SAMPLES
    view.latency_ms *= 1 + st.in_flight / QUEUE_SLOTS
    e = st.est
    if e is None or e.failure.value is None:
        view.failure_rate = st.failure_rate if fresh else 0.0
    else:
        seen = rate = e.failure.value
        if forgive_s is not None and forgive_s > 0:
            rate *= 2.0 ** (-max(0.0, now - e.failure.at) / forgive_s)
        view.failure_rate = rate
        if rate < seen - FORGIVEN:
            view.forgiven = True
    if st.headroom is None:  # most backends send no rate-limit headers: nothing to project
        return
    view.remaining = st.requests_remaining(now)
    limit = st.headroom.requests_limit
    if view.remaining is not None and limit and view.remaining < LOW_HEADROOM * limit:
        view.demoted = f"rate-limit headroom low: {view.remaining}/{limit} requests left"


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
    stuck_ms: Mapping[tuple[str, str], float] | None = None,
    forgive_s: float | None = None,
    loads: Mapping[str, LoadSignal] | None = None,
) -> tuple[list[Scored], list[Dropped]]:
    """Best first: healthy before demoted, then by score, ties in policy order.

    `waiting_ms`: per backend, the oldest attempt still waiting for a first byte; `stuck_ms`: per backend,
    how long an attempt overdue (well past its expected duration) has waited, on this replica; `forgive_s`:
    the half-life of an unrefreshed estimate's decay toward its last-good figure (None: no decay)."""
    c = constraints or _NO_CONSTRAINTS
    kept, dropped = _screen(targets, est, telemetry, c, now, waiting_ms, stuck_ms, forgive_s, loads)
    if not kept:
        return [], dropped
    if len(kept) > 1:  # alone, it has no measured one to be put just ahead of
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
    ranked = [scored[i] for *_, i in order]
    lead = kept[order[0][-1]][1]
    raw = lead.raw
    second = ranked[1]
    if raw is not None and (
        lead.raw_slow or (second.demoted is None and _score(objective, raw, denominators, w) > second.score)
    ):
        ranked[0] = replace(ranked[0], forgiven_lead=True)
    return ranked, dropped


def _screen(
    targets: Sequence[Target],
    est: Estimate,
    telemetry: Mapping[tuple[str, str], Stats] | None,
    c: Constraints,
    now: float,
    waiting_ms: Mapping[tuple[str, str], float] | None,
    stuck_ms: Mapping[tuple[str, str], float] | None,
    forgive_s: float | None,
    loads: Mapping[str, LoadSignal] | None = None,
) -> tuple[list[tuple[Target, _View]], list[Dropped]]:
    """Each candidate's view, split into those that may serve and those dropped (with the reason)."""
    kept: list[tuple[Target, _View]] = []
    dropped: list[Dropped] = []
    stats_of = telemetry.get if telemetry else None
    waited = waiting_ms.get if waiting_ms else None
    speed_limited = c.max_ttft_ms is not None or c.min_tokens_per_s is not None  # else too_slow is None
    for t in targets:
        key = t.key
        st = stats_of(key) if stats_of is not None else None
        v = observe(t, st, est, now, waited(key, 0.0) if waited is not None else 0.0, forgive_s)
        if loads:
            load_pressure(v, loads.get(t.backend), now)
        if stuck_ms or (st is not None and st.stuck_since is not None):
            stuck = _stuck(key, st, stuck_ms, now)
            if stuck is not None:
                v.demoted, v.forgiven, v.raw = stuck, False, None
        reason = violation(t, v, c, est)
        if reason is None and st is not None and st.saturated(now):
            reason = "rate limit exhausted until its reset (x-ratelimit / retry-after / learned limit)"
        slow = too_slow(v, c) if reason is None and speed_limited else None
        if v.raw is not None and slow is None and reason is None and speed_limited:
            v.raw_slow = too_slow(v.raw, c) is not None
        if slow is not None:
            dropped.append(Dropped(t.backend, slow, _scored(t, v, float("inf"))))
        elif reason is not None:
            dropped.append(Dropped(t.backend, reason))
        else:
            kept.append((t, v))
    return kept, dropped


def _stuck(
    key: tuple[str, str], st: Stats | None, stuck_ms: Mapping[tuple[str, str], float] | None, now: float
) -> str | None:
    """Why the backend counts as failing for new requests: an attempt (here or on another replica) has
    waited well past its expected duration without a first byte. Its timeout has not fired yet."""
    here = stuck_ms.get(key) if stuck_ms else None
    if here is not None:
        return f"stuck: an attempt has waited {here / 1000:.1f}s, well past its expected duration"
    if st is not None and st.stuck_since is not None:
        return f"stuck: another replica's attempt has waited {now - st.stuck_since:.1f}s"
    return None


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
        v.remaining, v.demoted, v.fresh, v.load, v.load_age_s, v.age_s, v.forgiven, False, v.expected_ttft_ms,
        v.expected_ms, v.well_ttft_ms, v.well_ms,
    )  # fmt: skip


def failure_penalty(failure_rate: float) -> float:
    """Failures cost a retry elsewhere: every objective is weighed by about the expected number of tries."""
    return 1.0 + 2.0 * failure_rate


def _score(objective: Objective, v: _View, worst: tuple[float, float, float], w: Weights) -> float:
    penalty = failure_penalty(v.failure_rate)
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
