"""What the router knows between samples: attempts still waiting for a first byte (and which of them are
overdue: stuck), when each backend was last tried, and each route's probe allowance, so exploration renews
old figures without costing more than a bounded share of the route's requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.providers.base import Target

Key = tuple[str, str]

# An attempt is stuck once it has waited this many times its expected duration for a first byte...
STUCK_FACTOR = 4.0
STUCK_MIN_S = 1.0  # ...and at least this long: a loaded event loop or a cold connection is no hang
# A trial of a backend out for a hang needs only a first byte within this many times what it took when
# well (its last-good figure, near its fastest)... A trial sent into a hang stays hung: its deadline, not
# only the breaker's gap, sets how often a hung backend is re-trialled.
TRIAL_FACTOR = 3.0
TRIAL_MIN_S = 0.25  # ...and at least this
PROBE_CREDIT_CAP = 5.0  # probes a quiet route may save up for a fault (a backend to rediscover)...
PROBE_PACE = 2.0  # ...and spend at most this many times faster than it earns them (`share` per request)


def patience_s(expected_s: float | None) -> float:
    """How long an attempt may wait for its first byte before it counts as stuck (inf: no prediction)."""
    return max(STUCK_MIN_S, STUCK_FACTOR * expected_s) if expected_s is not None else float("inf")


def trial_patience_s(well_s: float | None) -> float | None:
    """A hung backend's trial's first-byte deadline: `TRIAL_FACTOR` x its last-good expectation, at least
    `TRIAL_MIN_S`, never more than `patience_s` (when it would count as stuck); None: no expectation."""
    if well_s is None:
        return None
    return min(patience_s(well_s), max(TRIAL_MIN_S, TRIAL_FACTOR * well_s))


@dataclass(slots=True)
class _Allowance:
    """One route's probe budget: `share` of a credit per planned request, and one per `interval_s`."""

    credit: float
    last: float  # monotonic time of the last probe (or of the route's first request)
    since: int = 0  # requests planned since the last probe


class Watch:
    """Per-process and cheap: dict operations per attempt. What other replicas must know of it (stuck
    attempts) reaches them through the telemetry store, which reads `stuck_ms`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._began = clock()  # a backend never tried counts as tried now (`pick_probe`)
        self._last_tried: dict[Key, float] = {}
        # Only backends with an attempt waiting; insertion order: the first entry is the oldest.
        # token -> (started, due): past `due` without a first byte, the attempt is stuck.
        self._waiting: dict[Key, dict[int, tuple[float, float]]] = {}
        # Per key in `_waiting`, a time no attempt of it is due before (the earliest due, or earlier once
        # that attempt answered): until then `stuck_ms` skips the key instead of walking its attempts.
        self._next_due: dict[Key, float] = {}
        self._allowance: dict[str, _Allowance] = {}

    def started(self, target: Target, token: int, expected_s: float | None = None) -> None:
        """An attempt began; `expected_s` is how long its first byte should take (the plan's prediction)."""
        now = self._clock()
        key = target.key
        self._last_tried[key] = now
        due = now + patience_s(expected_s)
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = {token: (now, due)}
            self._next_due[key] = due
        else:
            waiting[token] = (now, due)
            if due < self._next_due[key]:
                self._next_due[key] = due

    def answered(self, target: Target, token: int) -> None:
        """The first token arrived, or the attempt ended without one: it no longer counts as waiting."""
        key = target.key
        waiting = self._waiting.get(key)
        if waiting is not None and waiting.pop(token, None) is not None and not waiting:
            del self._waiting[key]  # so waiting_ms() walks only the backends something waits on
            del self._next_due[key]

    def last_tried(self, target: Target) -> float | None:
        """Monotonic time the backend was last tried or claimed for a probe (the dashboard shows its age)."""
        return self._last_tried.get(target.key)

    def waiting_ms(self) -> dict[Key, float]:
        """Age of the oldest attempt still waiting for its first token, per backend with one."""
        if not self._waiting:
            return {}
        now = self._clock()
        return {k: (now - next(iter(w.values()))[0]) * 1000 for k, w in self._waiting.items()}

    def stuck_ms(self) -> dict[Key, float]:
        """Per backend with an overdue attempt (waiting past its due time), how long the oldest one waited."""
        if not self._waiting:
            return {}
        now = self._clock()
        out: dict[Key, float] = {}
        next_due = self._next_due
        for key, attempts in self._waiting.items():
            if now < next_due[key]:
                continue  # none due yet: at c=32 this saves walking 32 attempts per plan
            overdue = [started for started, due in attempts.values() if now >= due]
            if overdue:
                out[key] = (now - min(overdue)) * 1000
            else:  # the earliest due answered: the bound moves to the earliest still waiting
                next_due[key] = min(due for _, due in attempts.values())
        return out

    def may_probe(self, route: str, share: float, interval_s: float) -> bool:
        """Counts one planned request of `route` and says whether it may be a probe: the route has saved a
        credit (`share` per request, so probes stay within that share at steady load; saved credits are spent
        no more than `PROBE_PACE` times as often, so savings last through a fault rather than going in its
        first second) or sent no probe for `interval_s` (so a quiet route still renews its figures). `spend`
        takes the allowance."""
        now = self._clock()
        allowance = self._allowance.get(route)
        if allowance is None:
            if len(self._allowance) >= 10_000:  # route names come from the policy, but stay bounded
                self._allowance.clear()
            allowance = self._allowance[route] = _Allowance(0.0, now)
        allowance.credit = min(PROBE_CREDIT_CAP, allowance.credit + share)
        allowance.since += 1
        paced = share > 0 and allowance.since * share * PROBE_PACE >= 1.0 - 1e-9
        return (allowance.credit >= 1.0 - 1e-9 and paced) or now - allowance.last >= interval_s

    def spend(self, route: str) -> None:
        """A probe was sent on `route`: one credit (or the interval's allowance) is used."""
        allowance = self._allowance.get(route)
        if allowance is not None:
            allowance.credit = max(0.0, allowance.credit - 1.0)  # or the interval's: never below 0
            allowance.last = self._clock()
            allowance.since = 0

    def pick_probe(self, candidates: Sequence[Target], interval_s: float) -> Target | None:
        """The candidate tried least recently, if that was at least `interval_s` ago. These candidates could
        not win on what is known (a candidate that might is probed by `Router._explore` as a forgiven lead
        or a trial), so one never tried waits `interval_s` from when this watch began, like the others:
        the allowance is saved for a backend that could win, and a fresh gateway's first requests follow
        the objective."""
        if interval_s <= 0 or not candidates:
            return None
        now = self._clock()
        began = self._began
        due = [(self._last_tried.get(t.key, began), i) for i, t in enumerate(candidates)]
        due = [(last, i) for last, i in due if now - last >= interval_s]
        if not due:
            return None
        pick = candidates[min(due)[1]]
        self._last_tried[pick.key] = now  # claimed now, so concurrent requests do not all probe it
        return pick
