"""Time-decayed telemetry of one (backend, model): forward-decayed sums, a TTFT histogram, AIMD, Stats.

Every measurement is weighted 2^((t - landmark) / half_life) when added ("forward decay"), so adding is O(1)
and the sums decayed to any moment are the stored values times 2^((landmark - now) / half_life). Decayed sums
are additive, which is what makes replicas mergeable: bring each replica's vector to the same moment and add.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.telemetry.estimators import Estimates
from gateway.telemetry.headroom import Headroom

OUTCOMES = (
    "ok", "rate_limited", "server", "timeout", "connect", "auth", "client", "context_length", "protocol",
    "cancelled", "error",
)  # fmt: skip
_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
# Outcomes that say nothing about the backend's health: the caller's fault, or the caller went away.
NEUTRAL = frozenset({"client", "context_length", "cancelled"})
_COUNTED = [i for i, name in enumerate(OUTCOMES) if name not in NEUTRAL]

# TTFT histogram: bucket 0 is [0, 20 ms), bucket i is [20 ms·r^(i-1), 20 ms·r^i), the last one is open.
HIST_BASE_S = 0.02
HIST_RATIO = 1.35
HIST_BUCKETS = 32
_LOG_RATIO = math.log(HIST_RATIO)

# Vector layout: outcome counts, then weighted sums, then the histogram.
_N_OUT = len(OUTCOMES)
TTFT_W, TTFT_SUM, LAT_W, LAT_SUM, TPS_TOKENS, TPS_SECONDS = range(_N_OUT, _N_OUT + 6)
HIST0 = _N_OUT + 6
WIDTH = HIST0 + HIST_BUCKETS

_REBASE_HALF_LIVES = 64.0  # keeps forward-decay weights far inside float range


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished attempt, as telemetry needs it. `ttft_s` only for streams: a buffered body's first byte
    is its last, so it would pass latency off as time to first token."""

    outcome: str
    ttft_s: float | None = None
    duration_s: float | None = None
    output_tokens: int | None = None
    headroom: Headroom | None = None
    # Ended (hedged away, cancelled, timed out) after waiting this long without a first byte: a censored
    # figure, "at least this long", for the TTFT (a stream) or the latency (a whole answer).
    waited_s: float | None = None
    stream: bool = False
    # The estimates already learned this attempt's TTFT and that it answered, at its first byte
    # (`TelemetryStore.first_byte`): its end adds only what the first byte could not say.
    early: bool = False


def bucket(ttft_s: float) -> int:
    if ttft_s < HIST_BASE_S:
        return 0
    return min(HIST_BUCKETS - 1, 1 + int(math.log(ttft_s / HIST_BASE_S) / _LOG_RATIO))


def percentile(hist: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of a decayed histogram, interpolated geometrically inside the bucket."""
    return quantiles(hist, (q,))[0]


def quantiles(hist: list[float], qs: tuple[float, ...]) -> list[float | None]:
    """Several quantiles (ascending) in one pass over the histogram."""
    total = sum(hist)
    if total <= 0:
        return [None] * len(qs)
    out: list[float | None] = []
    targets = iter(q * total for q in qs)
    target = next(targets, None)
    seen = 0.0
    last = 0
    for i, weight in enumerate(hist):
        if weight <= 0:
            continue
        last = i
        while target is not None and seen + weight >= target:
            out.append(_inside(i, (target - seen) / weight))
            target = next(targets, None)
        if target is None:
            return out
        seen += weight
    out.extend(_inside(last, 1.0) for _ in range(len(qs) - len(out)))  # rounding: a hair above total
    return out


def _inside(i: int, frac: float) -> float:
    frac = min(1.0, max(0.0, frac))
    if i == 0:
        return HIST_BASE_S * frac
    low = HIST_BASE_S * HIST_RATIO ** (i - 1)
    if i == HIST_BUCKETS - 1:
        return low  # the open bucket has no upper edge to interpolate to
    return float(low * HIST_RATIO**frac)


class Window:
    """Forward-decayed sums of the attempts to one key."""

    __slots__ = ("_half_life", "_landmark", "_vec")

    def __init__(self, half_life_s: float, now: float) -> None:
        self._half_life = half_life_s
        self._landmark = now
        self._vec = [0.0] * WIDTH

    def add(self, sample: Sample, now: float) -> None:
        age = now - self._landmark
        if age > _REBASE_HALF_LIVES * self._half_life:
            self._vec = self.vector(now)
            self._landmark, age = now, 0.0
        w = 2.0 ** (age / self._half_life)
        v = self._vec
        v[_OUTCOME_INDEX.get(sample.outcome, _OUTCOME_INDEX["error"])] += w
        if sample.outcome != "ok":
            return
        ttft, dur = sample.ttft_s, sample.duration_s
        if ttft is not None and ttft >= 0:
            v[TTFT_W] += w
            v[TTFT_SUM] += w * ttft
            v[HIST0 + bucket(ttft)] += w
        if dur is not None and dur >= 0:
            v[LAT_W] += w
            v[LAT_SUM] += w * dur
            tokens = sample.output_tokens
            if ttft is not None and tokens is not None and tokens >= 2 and dur - ttft >= 1e-3:
                v[TPS_TOKENS] += w * tokens
                v[TPS_SECONDS] += w * (dur - ttft)

    def vector(self, now: float) -> list[float]:
        """The sums decayed to `now` (a fresh list)."""
        f = 2.0 ** ((self._landmark - now) / self._half_life)
        return [x * f for x in self._vec]


class Aimd:
    """A concurrency limit learned from 429s: halve on a rate limit (at most once per `hold_s`, since one
    burst brings several), add 1/limit per success while the limit is actually in use (so it grows by about
    one per limit's worth of successes and never inflates while idle). None until the first 429."""

    __slots__ = ("limit", "_last_cut")

    DECREASE = 0.5
    HOLD_S = 1.0
    CAP = 10_000.0

    def __init__(self) -> None:
        self.limit: float | None = None
        self._last_cut = -math.inf

    def on_success(self, in_flight: int) -> None:
        limit = self.limit
        if limit is not None and in_flight + 1 >= limit * 0.5:
            self.limit = min(self.CAP, limit + 1.0 / limit)

    def on_rate_limited(self, in_flight: int, now: float) -> None:
        if now - self._last_cut < self.HOLD_S:
            return
        self._last_cut = now
        base = float(max(in_flight, 1)) if self.limit is None else min(self.limit, max(in_flight, 1))
        self.limit = max(1.0, base * self.DECREASE)


@dataclass(frozen=True, slots=True)
class Stats:
    """What scoring may know about a (backend, model): recent behaviour across every replica.

    Decayed counts are "attempts in about the last half-life or two"; `samples` < ~1 means no recent data,
    so fall back to the declared priors. Means and percentiles come from successful attempts only.
    """

    samples: float  # decayed weight of attempts that say something about the backend (not NEUTRAL)
    outcomes: Mapping[str, float]  # decayed count per outcome, every name in OUTCOMES
    failure_rate: float  # backend-attributable failures (rate limits included) / samples; 0 with no data
    rate_limited_rate: float
    ttft_s: float | None  # mean time to first token of successful streams
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_samples: float
    tokens_per_s: float | None  # output tokens / generation time (after the first token), streams only
    latency_s: float | None  # mean end-to-end duration of successful attempts
    in_flight: int  # attempts open now, summed over replicas
    local_in_flight: int  # attempts this replica has open
    concurrency_limit: float | None  # this replica's AIMD limit; None = no 429 seen, no learned limit
    headroom: Headroom | None  # the latest an upstream told any replica
    headroom_at: float | None  # wall-clock epoch seconds of that response
    retry_at: float | None  # epoch s before which an upstream asked (Retry-After) not to be called again
    est: Estimates | None = None  # peak-sensitive, recency-weighted figures (telemetry/estimators.py)
    stuck_since: float | None = None  # epoch s: another replica's oldest overdue attempt began (stuck)

    def with_live(
        self,
        in_flight: int,
        local_in_flight: int,
        limit: float | None,
        headroom: Headroom | None,
        headroom_at: float | None,
        retry_at: float | None,
        est: Estimates | None = None,
        stuck_since: float | None = None,
    ) -> Stats:
        """The same window figures with new live ones: `dataclasses.replace` at a third of its cost."""
        return Stats(
            self.samples, self.outcomes, self.failure_rate, self.rate_limited_rate, self.ttft_s,
            self.ttft_p50_s, self.ttft_p95_s, self.ttft_samples, self.tokens_per_s, self.latency_s,
            in_flight, local_in_flight, limit, headroom, headroom_at, retry_at, est, stuck_since,
        )  # fmt: skip

    def requests_remaining(self, now: float) -> int | None:
        """Requests the provider will still accept at `now` (wall clock), projecting the reset."""
        if self.headroom is None or self.headroom_at is None:
            return None
        return self.headroom.requests_after(now - self.headroom_at)

    def tokens_remaining(self, now: float) -> int | None:
        if self.headroom is None or self.headroom_at is None:
            return None
        return self.headroom.tokens_after(now - self.headroom_at)

    def saturated(self, now: float) -> bool:
        """True when this replica should not expect the backend to take one more request right now."""
        if self.retry_at is not None and now < self.retry_at:
            return True
        hr = self.headroom  # None (most backends send no rate-limit headers): nothing to project
        if hr is not None and (self.requests_remaining(now) == 0 or self.tokens_remaining(now) == 0):
            return True
        return self.concurrency_limit is not None and self.local_in_flight >= self.concurrency_limit


def make_stats(
    vec: list[float],
    in_flight: int,
    local_in_flight: int,
    limit: float | None,
    headroom: Headroom | None,
    headroom_at: float | None,
    retry_at: float | None,
    est: Estimates | None = None,
    stuck_since: float | None = None,
) -> Stats:
    """Stats from a vector already decayed to the moment of the snapshot."""
    outcomes = MappingProxyType(dict(zip(OUTCOMES, vec[:_N_OUT], strict=True)))
    samples = sum([vec[i] for i in _COUNTED])
    failures = samples - outcomes["ok"]
    ttft_w, lat_w, tps_s = vec[TTFT_W], vec[LAT_W], vec[TPS_SECONDS]
    tiny = 1e-9
    p50, p95 = quantiles(vec[HIST0:], (0.5, 0.95)) if ttft_w > tiny else (None, None)
    return Stats(
        samples=samples,
        outcomes=outcomes,
        failure_rate=max(0.0, failures / samples) if samples > tiny else 0.0,
        rate_limited_rate=outcomes["rate_limited"] / samples if samples > tiny else 0.0,
        ttft_s=vec[TTFT_SUM] / ttft_w if ttft_w > tiny else None,
        ttft_p50_s=p50,
        ttft_p95_s=p95,
        ttft_samples=ttft_w,
        tokens_per_s=vec[TPS_TOKENS] / tps_s if tps_s > tiny else None,
        latency_s=vec[LAT_SUM] / lat_w if lat_w > tiny else None,
        in_flight=in_flight,
        local_in_flight=local_in_flight,
        concurrency_limit=limit,
        headroom=headroom,
        headroom_at=headroom_at,
        retry_at=retry_at,
        est=est,
        stuck_since=stuck_since,
    )
