"""Peak-sensitive, recency-weighted estimates of a backend: react to a worsening at once, forgive on evidence.

Finagle/Linkerd's Peak-EWMA: a sample above the estimate replaces it; a sample below moves it by a weight
that grows with the time since the previous sample, 1 - e^(-dt/tau). Under steady traffic (dt small) the
estimate comes down over about `tau` of good samples; after a gap one fresh sample outweighs everything
before it, which is what lets one probe win a recovered backend back. `good` is the last-good figure: it
drops at once to a faster sample and rises only slowly (`good_tau_s`), so after a spike it remembers what the
backend did when it was well. `view` lets an old peak decay with its age toward that figure (or the declared
one), so a backend nobody has tried for a while is forgiven and tried again rather than shunned forever.

Pure and clock-free: every call takes `now` (epoch seconds), so replicas can compare `at` and unit tests need
no timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TAU_S = 1.0  # how fast good samples bring a peak down under steady traffic
GOOD_TAU_S = 30.0  # how fast the last-good figure follows a lasting worsening
FAIL_TAU_S = 1.0  # the failure estimate's memory, by time between samples
PEAK_HALF_LIFE_S = 1.0  # an unrefreshed peak's excess over the last-good figure halves this often
MIN_WEIGHT = 1e-4  # the least weight a new sample gets, however soon after the previous one: never 0


@dataclass(slots=True)
class PeakEwma:
    """One figure (seconds): the peak-sensitive estimate, the last-good one, and when it was last fed."""

    value: float | None = None
    good: float | None = None
    at: float = 0.0  # epoch s of the last sample (or censored bound) that changed it

    def add(self, x: float, now: float, tau_s: float = TAU_S, good_tau_s: float = GOOD_TAU_S) -> None:
        if not math.isfinite(x) or x < 0:
            return
        value, good = self.value, self.good
        if value is None or good is None:
            self.value = self.good = x
            self.at = now
            return
        # Each figure moves toward the sample only where the sample is on its far side: the weight is
        # computed for that side alone (this runs for every attempt).
        dt = max(0.0, now - self.at)
        self.value = x if x >= value else value + (x - value) * _weight(dt, tau_s)
        self.good = x if x <= good else good + (x - good) * _weight(dt, good_tau_s)
        self.at = now

    def censor(self, at_least: float, now: float, *, project: bool = False) -> None:
        """An attempt given up on after `at_least` seconds without an answer (a hedge's loser, a client gone):
        the figure is at least that, now. Raises the peak only; says nothing about the last-good figure.
        `project`: the wait was cut short by us (cancelled), so keep what the live wait showed: late by d
        past the estimate, the answer was due about d later still (the router's projection of a waiting
        attempt, scoring.observe), so the peak becomes the estimate + 2d, not just the wait."""
        if not math.isfinite(at_least) or at_least <= 0:
            return
        value = self.value
        if value is None or at_least > value:
            self.value = 2 * at_least - value if project and value is not None else at_least
            self.at = now

    def view(
        self, now: float, prior: float | None = None, half_life_s: float | None = PEAK_HALF_LIFE_S
    ) -> float | None:
        """The estimate at `now`: with `half_life_s`, a peak not refreshed since decays toward the last-good
        figure (or `prior`, the declared one, when lower); None: the peak as it stands."""
        value = self.value
        if value is None or half_life_s is None or half_life_s <= 0:
            return value
        base = self.good if prior is None or (self.good is not None and self.good < prior) else prior
        if base is None or value <= base:
            return value
        age = max(0.0, now - self.at)
        left: float = 0.5 ** (age / half_life_s)
        return base + (value - base) * left

    def merge(self, other: PeakEwma) -> PeakEwma:
        """The fresher of two replicas' estimates (the one fed last knows the backend's latest state)."""
        if other.value is None:
            return self
        if self.value is None or other.at > self.at:
            return other
        return self


@dataclass(slots=True)
class Ewma:
    """A share (0..1) weighted by recency in time: the failure estimate. After a gap one outcome dominates."""

    value: float | None = None
    at: float = 0.0

    def add(self, x: float, now: float, tau_s: float = FAIL_TAU_S) -> None:
        if self.value is None:
            self.value, self.at = x, now
            return
        self.value += (x - self.value) * _weight(max(0.0, now - self.at), tau_s)
        self.at = now

    def merge(self, other: Ewma) -> Ewma:
        if other.value is None:
            return self
        if self.value is None or other.at > self.at:
            return other
        return self


def _weight(dt: float, tau_s: float) -> float:
    """The new sample's weight after `dt` seconds without one, 1 - e^(-dt/tau); never below MIN_WEIGHT, so a
    sample always counts a little."""
    return max(MIN_WEIGHT, 1.0 - math.exp(-dt / tau_s)) if tau_s > 0 else 1.0


@dataclass(slots=True)
class Estimates:
    """The recency-weighted figures of one (backend, model), kept beside its decayed window."""

    ttft: PeakEwma
    latency: PeakEwma
    failure: Ewma

    @classmethod
    def empty(cls) -> Estimates:
        return cls(PeakEwma(), PeakEwma(), Ewma())

    def copy(self) -> Estimates:
        t, lat, f = self.ttft, self.latency, self.failure
        return Estimates(
            PeakEwma(t.value, t.good, t.at), PeakEwma(lat.value, lat.good, lat.at), Ewma(f.value, f.at)
        )

    def merge(self, other: Estimates) -> Estimates:
        return Estimates(
            self.ttft.merge(other.ttft), self.latency.merge(other.latency), self.failure.merge(other.failure)
        )

    def to_list(self) -> list[float | None]:
        """Flat, for the replica blob in Redis."""
        t, lat, f = self.ttft, self.latency, self.failure
        return [t.value, t.good, t.at, lat.value, lat.good, lat.at, f.value, f.at]

    @classmethod
    def from_list(cls, raw: list[float | None]) -> Estimates:
        """The inverse of `to_list`; raises ValueError on a malformed list (another version's blob)."""
        if not isinstance(raw, list) or len(raw) != 8:
            raise ValueError("estimates: expected a list of 8")
        tv, tg, ta, lv, lg, la, fv, fa = (_num(x) for x in raw)
        return cls(PeakEwma(tv, tg, ta or 0.0), PeakEwma(lv, lg, la or 0.0), Ewma(fv, fa or 0.0))

    @property
    def at(self) -> float | None:
        """When this backend was last measured (any figure), epoch s; None: never."""
        stamps = [e.at for e in (self.ttft, self.latency, self.failure) if e.value is not None]
        return max(stamps) if stamps else None


def _num(x: object) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError("estimates: not a finite number")
    return float(x)
