"""Circuit breakers per (backend, model): closed → open → half-open trials → closed with a slow start."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.policy.model import BreakerConfig

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class _Window:
    """Outcomes in one-second buckets over the last `size` seconds."""

    size: int
    ok: list[int] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)
    stamp: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ok, self.bad, self.stamp = [0] * self.size, [0] * self.size, [-1] * self.size

    def add(self, now: float, good: bool) -> None:
        second = int(now)
        i = second % self.size
        if self.stamp[i] != second:
            self.stamp[i], self.ok[i], self.bad[i] = second, 0, 0
        if good:
            self.ok[i] += 1
        else:
            self.bad[i] += 1

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now) - self.size
        live = [i for i in range(self.size) if self.stamp[i] > oldest]
        return sum(self.ok[i] for i in live), sum(self.bad[i] for i in live)

    def clear(self) -> None:
        self.stamp = [-1] * self.size


@dataclass(slots=True)
class _Breaker:
    window: _Window
    state: State = "closed"
    consecutive: int = 0
    open_until: float = 0.0
    cooldown_s: float = 0.0
    trials_in_flight: int = 0
    closed_at: float = -1e18  # long ago: no slow start for a backend never opened
    fast: bool = False  # the last trip was on a fast failure: short cooldown, short ramp back
    down_since: float | None = None  # when the first hung attempt of the current outage began
    trial_at: float = -1e18  # when the latest half-open trial was sent
    # The failure that tripped it came after a 2xx status line (a hang or cut after the headers), so a
    # trial's status line proves nothing; True until a local trip says otherwise (another replica's opening).
    after_ok: bool = True


def hang_gap_s(cfg: BreakerConfig, down_s: float) -> float:
    """Time to a hung backend's next trial, `down_s` into its outage: `hang_trial_share` of that age,
    within [`hang_trial_s`, `max_cooldown_s`]. Each gap grows with the age, so the trials back off
    exponentially (x(1 + share) per trial past the floor), yet a recovered backend waits at most a share of
    how long it was down. A trial is one request with a short deadline that then fails over: cheap."""
    return min(cfg.max_cooldown_s, max(cfg.hang_trial_s, cfg.hang_trial_share * down_s))


class Breakers:
    """Local breaker state for every key. Queries (`peek`, `weight`, `states`) never change it; `admit` and
    the outcomes (`success`, `failure`, `release`, `force_open`) are the transitions."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._items: dict[str, _Breaker] = {}

    def _get(self, key: str) -> _Breaker:
        b = self._items.get(key)
        if b is None:
            b = self._items[key] = _Breaker(_Window(max(1, int(self.config.window_s))))
        return b

    def _hang_trial_due(self, b: _Breaker, now: float) -> bool:
        """A hung backend's next trial does not wait for the previous one: a trial sent into a hang stays
        hung however soon the backend recovers, so the next goes a hang gap after it, even while it is out."""
        return b.down_since is not None and now >= b.trial_at + hang_gap_s(self.config, now - b.down_since)

    def _advance(self, b: _Breaker, now: float) -> None:
        """open → half-open once the cooldown is over: only transitions (admit, outcomes) call it."""
        if b.state == "open" and now >= b.open_until:
            b.state, b.trials_in_flight = "half_open", 0

    def advance(self, key: str) -> State:
        """The explicit open → half-open step for `key` (when its cooldown is over); returns the state."""
        b = self._items.get(key)
        if b is None:
            return "closed"
        if b.state == "open":  # the only state `_advance` changes
            self._advance(b, self._clock())
        return b.state

    def peek(self, key: str) -> tuple[State, float]:
        """The state and, when open, the seconds until trials start; a query: it changes nothing (an open
        breaker whose cooldown is over reads as half-open until `admit` makes it so)."""
        b = self._items.get(key)
        if b is None:
            return "closed", 0.0
        now = self._clock()
        state, trials = b.state, b.trials_in_flight
        if state == "open" and now >= b.open_until:
            state, trials = "half_open", 0
        if (
            state == "half_open"
            and trials >= self.config.half_open_trials
            and not self._hang_trial_due(b, now)
        ):
            return "open", 0.0  # a trial is already under way
        return state, max(0.0, b.open_until - now) if state == "open" else 0.0

    def admit(self, key: str) -> bool:
        """At send time: the step that moves an open breaker past its cooldown and takes a trial slot."""
        b = self._items.get(key)
        if b is None or b.state == "closed":  # `_advance` changes only an open breaker
            return True
        now = self._clock()
        self._advance(b, now)
        if b.state == "half_open" and (
            b.trials_in_flight < self.config.half_open_trials or self._hang_trial_due(b, now)
        ):
            b.trials_in_flight += 1
            b.trial_at = now
            return True
        return False

    def weight(self, key: str) -> float:
        """Share of traffic a recently closed breaker should take (slow start), 1.0 once ramped up. After a
        fast trip, or a trial that answered in its expected time, the ramp lasts `fast_ramp_s`: a relapse
        is cheap to notice (the breaker trips again and re-trials at `fast_cooldown_s`), while each tenth
        of a second of ramp keeps traffic from the backend that should have it."""
        b = self._items.get(key)
        if b is None or b.state != "closed" or self.config.slow_start_s <= 0:
            return 1.0
        cfg = self.config
        span = min(cfg.slow_start_s, cfg.fast_ramp_s) if b.fast else cfg.slow_start_s
        ramp = (self._clock() - b.closed_at) / span
        return 1.0 if ramp >= 1.0 else max(0.1, ramp)

    def success(self, key: str, *, prompt: bool = False) -> None:
        """Counts a success; one in half-open closes the breaker. `prompt`: it answered in its expected
        time, which proves recovery, so traffic ramps back as quickly as after a fast failure."""
        b = self._get(key)
        now = self._clock()
        b.window.add(now, True)
        b.consecutive = 0
        if b.state == "half_open":
            b.state, b.cooldown_s, b.closed_at, b.trials_in_flight = "closed", 0.0, now, 0
            b.fast, b.down_since = b.fast or prompt, None
            b.window.clear()

    def status_decides(self, key: str) -> bool:
        """Whether the breaker is out for failures that never had a 2xx status line (an error status, a
        refused connection, a hang before the headers): a trial's 2xx status line is then its verdict,
        without waiting a TTFT for its first token."""
        b = self._items.get(key)
        return b is not None and b.state != "closed" and not b.after_ok

    def hung(self, key: str) -> bool:
        """Whether the breaker is out of traffic for a hang (its trials should get a short deadline)."""
        b = self._items.get(key)
        return b is not None and b.state != "closed" and b.down_since is not None

    def failure(
        self,
        key: str,
        *,
        hard: bool = False,
        fast: bool = False,
        hang_s: float | None = None,
        after_ok: bool = True,
    ) -> bool:
        """Counts a failure; returns True when this failure opened the breaker. `fast`: it failed in
        milliseconds (a 503, a refused connection), so re-trialling it is cheap. `hang_s`: it timed out
        after waiting that long (re-trialled at the hang cadence, `_trip`). `after_ok`: it failed after a
        2xx status line, or nobody said (`status_decides`: then only a first byte is a trial's verdict)."""
        b = self._get(key)
        now = self._clock()
        b.window.add(now, False)
        b.consecutive += 1
        if not hard and b.state == "half_open" and hang_s is not None and now - hang_s < b.trial_at:
            return False  # sent into the hang before the latest trial, which is still out: that one decides
        if b.state == "half_open" or hard:
            return self._trip(b, now, fast, hang_s, after_ok)
        if b.state == "open":
            return False
        ok, bad = b.window.totals(now)
        cfg = self.config
        by_rate = ok + bad >= cfg.min_requests and bad / (ok + bad) >= cfg.error_rate
        if b.consecutive >= cfg.consecutive_failures or by_rate:
            return self._trip(b, now, fast, hang_s, after_ok)
        return False

    def release(self, key: str) -> None:
        """A trial that ended without a verdict (cancelled, the client's own error) frees its slot."""
        b = self._items.get(key)
        if b is not None and b.state == "half_open" and b.trials_in_flight > 0:
            b.trials_in_flight -= 1

    def force_open(self, key: str, seconds: float) -> None:
        """Opens from outside (another replica's verdict), without counting a local failure."""
        b = self._get(key)
        now = self._clock()
        if b.state != "open" or b.open_until < now + seconds:
            b.state, b.open_until, b.trials_in_flight = "open", now + seconds, 0

    def _trip(self, b: _Breaker, now: float, fast: bool, hang_s: float | None, after_ok: bool) -> bool:
        """Opens: after a fast failure for `fast_cooldown_s` (a trial costs milliseconds: re-trial about
        twice a second); after a hang until the next trial at the hang cadence (`hang_gap_s` after the
        failed attempt was sent); else for a cooldown that doubles on each re-open."""
        cfg = self.config
        if fast:
            b.cooldown_s, b.down_since = 0.0, None  # the next slow trip starts the doubling afresh
            wait = cfg.fast_cooldown_s
        elif hang_s is not None:
            sent = now - hang_s  # when the attempt that timed out was sent
            if b.down_since is None:
                b.down_since = sent
            # The gap runs from that attempt's start, not its timeout: a trial's own deadline is part of
            # the gap rather than added to it (a trial ~1 s long and a 1 s gap: one a second, not every 2 s).
            wait = max(0.0, sent + hang_gap_s(cfg, now - b.down_since) - now)
        else:
            b.cooldown_s = min(cfg.max_cooldown_s, b.cooldown_s * 2 if b.cooldown_s else cfg.cooldown_s)
            wait = b.cooldown_s
        b.state, b.open_until, b.trials_in_flight, b.fast, b.after_ok = "open", now + wait, 0, fast, after_ok
        return True

    def states(self) -> dict[str, State]:
        return {k: self.peek(k)[0] for k in list(self._items)}
