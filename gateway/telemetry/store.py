"""The telemetry store seam: a Protocol, the snapshot it hands to scoring, and the in-process MemoryStore.

Writes (`record`, `add_in_flight`, cooldowns) are sync and O(1); `snapshot()` is sync and refreshes only the
keys that changed, and every key once per `max_age_s` (decay is slow, in-flight counts are not). What changed
decides the cost. In-flight counts, the AIMD limit, headroom and Retry-After are copied into the key's Stats
at once (cheap). The figures derived from its window (rates, means, TTFT quantiles) are recomputed at once
after a failure, but after a success or a neutral outcome at most once per `window_every_s`: under load they
move by a hair per sample, and the quantiles are the costly part of a snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeVar, overload

from gateway.telemetry.estimators import Estimates, Ewma
from gateway.telemetry.headroom import Headroom
from gateway.telemetry.loadsignals import LoadSignal
from gateway.telemetry.window import NEUTRAL, WIDTH, Aimd, Sample, Stats, Window, make_stats

Key = tuple[str, str]  # (backend, provider model id)
_T = TypeVar("_T")
# Outcomes whose effect on the window figures may wait `window_every_s`; any other is a failure, seen at once.
_GRADUAL = NEUTRAL | {"ok"}
_Live = tuple[
    int, int, float | None, Headroom | None, float | None, float | None, Estimates | None, float | None
]


_Entry = tuple[Key, list[float], int, Headroom | None, float | None, float | None, Estimates, float | None]


def learn_first_byte(est: Estimates, ttft_s: float, now: float) -> None:
    """A stream's first event: its TTFT, and that the backend answered, are known before its end."""
    est.failure.add(0.0, now)
    est.ttft.add(ttft_s, now)


def learn(est: Estimates, sample: Sample, now: float) -> None:
    """Feeds one finished attempt to the recency-weighted estimates (what its first byte did not already
    say, `Sample.early`: a TTFT is learned once per attempt)."""
    outcome = sample.outcome
    if outcome == "ok":
        if not sample.early:
            est.failure.add(0.0, now)
            if sample.ttft_s is not None:
                est.ttft.add(sample.ttft_s, now)
        if sample.duration_s is not None and not sample.stream:
            est.latency.add(sample.duration_s, now)
    elif outcome not in NEUTRAL:
        est.failure.add(1.0, now)
    if sample.waited_s is not None:  # gave up without a first byte: at least this slow
        figure = est.ttft if sample.stream else est.latency
        figure.censor(sample.waited_s, now, project=outcome == "cancelled")


_NO_LOADS: Mapping[str, LoadSignal] = MappingProxyType({})  # shared by every empty snapshot: read-only


class Snapshot(Mapping[Key, Stats]):
    """An immutable view at one moment: Stats per key plus the shared cooldowns (name -> until, epoch s)
    and the self-hosted servers' load signals (backend -> the newest scrape any replica made)."""

    __slots__ = ("_stats", "cooldowns", "at", "loads")

    def __init__(
        self,
        stats: Mapping[Key, Stats],
        cooldowns: Mapping[str, float],
        at: float,
        loads: Mapping[str, LoadSignal] = _NO_LOADS,
    ) -> None:
        self._stats = stats
        self.cooldowns = cooldowns
        self.at = at
        self.loads = loads

    def __getitem__(self, key: Key) -> Stats:
        return self._stats[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def __contains__(self, key: object) -> bool:
        return key in self._stats

    # Straight to the dict: Mapping's mixin goes through __getitem__ and raises KeyError on every miss.
    @overload
    def get(self, key: Key, /) -> Stats | None: ...
    @overload
    def get(self, key: Key, /, default: Stats | _T) -> Stats | _T: ...
    def get(self, key: Key, /, default: Stats | _T | None = None) -> Stats | _T | None:
        return self._stats.get(key, default)

    def cooldown_until(self, name: str) -> float | None:
        return self.cooldowns.get(name)

    def cooling(self, name: str, now: float) -> bool:
        until = self.cooldowns.get(name)
        return until is not None and now < until


class TelemetryStore(Protocol):
    def record(self, key: Key, sample: Sample) -> None:
        """Learn from one finished attempt. Sync, never blocks, never raises on a healthy process."""
        ...

    def first_byte(self, key: Key, ttft_s: float) -> None:
        """A stream's first event, `ttft_s` after its start: the estimates learn its TTFT now (the attempt's
        `Sample` then says `early`, so its end does not count it again). Sync, O(1)."""
        ...

    def recovered(self, key: Key) -> None:
        """A half-open trial of the backend succeeded (its breaker closed): the failure share restarts from
        that success, so the failures that opened the breaker stop ranking it down (the breaker's ramp
        bounds a relapse). Sync, O(1)."""
        ...

    def add_in_flight(self, key: Key, delta: int) -> None: ...

    def set_cooldown(self, name: str, until: float) -> None:
        """Open a shared cooldown (breaker) until `until` (epoch s); only ever extends an existing one."""
        ...

    def clear_cooldown(self, name: str) -> None: ...

    def set_load(self, backend: str, signal: LoadSignal) -> None:
        """A self-hosted server's scraped load (telemetry/loadsignals.py); the newest per backend wins."""
        ...

    def snapshot(self) -> Snapshot: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Remote:
    """What the other replicas report for one key, summed, with vectors decayed to `RemoteView.at`."""

    vec: list[float]
    in_flight: int = 0
    headroom: Headroom | None = None
    headroom_at: float | None = None
    retry_at: float | None = None
    est: Estimates | None = None  # the freshest of the other replicas' estimates
    stuck_since: float | None = None  # epoch s another replica's oldest overdue attempt began


@dataclass(frozen=True, slots=True)
class RemoteView:
    at: float
    keys: Mapping[Key, Remote] = field(default_factory=dict)
    loads: Mapping[str, LoadSignal] = field(default_factory=dict)  # the newest of other replicas' scrapes


@dataclass(slots=True)
class _State:
    window: Window
    aimd: Aimd = field(default_factory=Aimd)
    in_flight: int = 0
    headroom: Headroom | None = None
    headroom_at: float | None = None
    retry_at: float | None = None
    window_at: float = -float("inf")  # when a snapshot last showed new samples of this key
    window_new: bool = False  # samples added since the snapshot's figures were computed
    est: Estimates = field(default_factory=Estimates.empty)
    # The copy of `est` the snapshots show (they keep their figures while `est` learns on); None once `est`
    # has learned since. Between two attempts' ends a key changes only by in-flight counts: no new copy.
    shown: Estimates | None = None


class MemoryStore:
    """Telemetry of this process only: the embedded default, and the local half of RedisStore."""

    def __init__(
        self,
        half_life_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.time,
        max_age_s: float = 0.25,
        window_every_s: float = 0.02,
    ) -> None:
        self.half_life_s = half_life_s
        self._clock = clock
        self._max_age = max_age_s
        self._window_every = window_every_s  # 0: every snapshot shows every sample
        self._states: dict[Key, _State] = {}
        self._cooldowns: dict[str, float] = {}
        self._loads: dict[str, LoadSignal] = {}  # this replica's scrapes
        self._loads_changed = False
        self._remote: RemoteView | None = None
        self._snap = Snapshot({}, {}, -float("inf"))
        self._changed: set[Key] = set()  # keys to refresh at the next snapshot
        self._deferred: set[Key] = set()  # keys whose new samples wait for `window_every_s` to pass
        self._deferred_since = float("inf")  # the oldest `window_at` among them
        self._full = True  # recompute every key: decay moved them all, or the remote view changed
        self._full_at = -float("inf")
        self._cooldowns_changed = False
        # Per key, how long (ms) the oldest overdue attempt has waited: the router's Watch.stuck_ms.
        # Published to the other replicas (RedisStore), so every replica demotes a backend that hangs.
        self.stuck: Callable[[], Mapping[Key, float]] | None = None

    def _state(self, key: Key) -> _State:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(Window(self.half_life_s, self._clock()))
        return state

    def record(self, key: Key, sample: Sample) -> None:
        now = self._clock()
        state = self._states.get(key) or self._state(key)
        state.window.add(sample, now)
        learn(state.est, sample, now)
        state.shown = None
        if sample.outcome == "ok":
            if state.aimd.limit is not None:  # no limit is learned before the first 429
                state.aimd.on_success(state.in_flight)
        elif sample.outcome == "rate_limited":
            state.aimd.on_rate_limited(state.in_flight, now)
        hr = sample.headroom
        if hr is not None:
            if hr.retry_after_s is not None:
                state.retry_at = max(state.retry_at or 0.0, now + hr.retry_after_s)
            if hr.requests_remaining is not None or hr.tokens_remaining is not None:
                state.headroom, state.headroom_at = hr, now
        state.window_new = True
        if sample.outcome not in _GRADUAL:
            state.window_at = -float("inf")  # a failure shows at the next snapshot
        self._changed.add(key)

    def first_byte(self, key: Key, ttft_s: float) -> None:
        state = self._states.get(key) or self._state(key)
        learn_first_byte(state.est, ttft_s, self._clock())
        state.shown = None
        self._changed.add(key)

    def recovered(self, key: Key) -> None:
        state = self._states.get(key) or self._state(key)
        state.est.failure = Ewma(0.0, self._clock())
        state.shown = None
        self._changed.add(key)

    def add_in_flight(self, key: Key, delta: int) -> None:
        state = self._states.get(key) or self._state(key)
        state.in_flight = max(0, state.in_flight + delta)
        self._changed.add(key)

    def set_cooldown(self, name: str, until: float) -> None:
        if until > self._cooldowns.get(name, 0.0):
            self._cooldowns[name] = until
            self._cooldowns_changed = True

    def clear_cooldown(self, name: str) -> None:
        if self._cooldowns.pop(name, None) is not None:
            self._cooldowns_changed = True

    def set_load(self, backend: str, signal: LoadSignal) -> None:
        self._loads[backend] = signal
        self._loads_changed = True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def snapshot(self) -> Snapshot:
        """The current view; the same object until something changes or it is `max_age_s` old."""
        now = self._clock()
        if not 0.0 <= now - self._full_at <= self._max_age:  # too old, or the clock went back
            self._full = True
        elif self._deferred and not self._may_wait(self._deferred_since, now):
            self._changed |= self._deferred
            self._deferred.clear()
            self._deferred_since = float("inf")
        if not (self._full or self._changed or self._cooldowns_changed or self._loads_changed):
            return self._snap
        remote = self._remote
        full = self._full  # the remote view may have changed: its load signals too
        if full:
            keys = self._states.keys() | remote.keys.keys() if remote is not None else self._states.keys()
            stats = {key: self._stats(key, remote, now) for key in keys}
            self._full, self._full_at = False, now
            self._deferred.clear()
            self._deferred_since = float("inf")
        else:
            stats = dict(self._snap._stats)
            for key in self._changed:
                stats[key] = self._refresh(key, stats.get(key), remote, now)
        self._changed.clear()
        self._cooldowns_changed = False
        cooldowns = {n: u for n, u in self._cooldowns.items() if u > now} if self._cooldowns else {}
        loads = self._snap.loads
        if self._loads_changed or full:
            self._loads_changed = False
            loads = self._merged_loads(remote)
        self._snap = Snapshot(stats, cooldowns, now, loads)
        return self._snap

    def _merged_loads(self, remote: RemoteView | None) -> Mapping[str, LoadSignal]:
        """Per backend, the newest scrape this replica or any other made."""
        if remote is None or not remote.loads:
            return dict(self._loads) if self._loads else _NO_LOADS
        merged = dict(remote.loads)
        for backend, mine in self._loads.items():
            theirs = merged.get(backend)
            if theirs is None or mine.at >= theirs.at:
                merged[backend] = mine
        return merged

    def _refresh(self, key: Key, prev: Stats | None, remote: RemoteView | None, now: float) -> Stats:
        """A changed key's Stats: its window figures recomputed if new samples may show, else carried over."""
        state = self._states[key]
        if prev is None or (state.window_new and not self._may_wait(state.window_at, now)):
            return self._stats(key, remote, now)
        if state.window_new:
            self._deferred.add(key)
            self._deferred_since = min(self._deferred_since, state.window_at)
        return prev.with_live(*self._live(state, remote.keys.get(key) if remote is not None else None))

    def _may_wait(self, window_at: float, now: float) -> bool:
        """Whether window figures computed at `window_at` may stand at `now` (not if the clock went back)."""
        return 0.0 <= now - window_at < self._window_every

    def _stats(self, key: Key, remote: RemoteView | None, now: float) -> Stats:
        state = self._states.get(key)
        if state is None:
            vec = [0.0] * WIDTH
        else:
            vec = state.window.vector(now)
            if state.window_new:  # the throttle is on showing samples: the first after a lull shows at once
                state.window_at, state.window_new = now, False
                self._deferred.discard(key)
        part = remote.keys.get(key) if remote is not None else None
        if remote is not None and part is not None:
            f = 2.0 ** ((remote.at - now) / self.half_life_s) if now > remote.at else 1.0
            vec = [a + b * f for a, b in zip(vec, part.vec, strict=True)]
        return make_stats(vec, *self._live(state, part))

    @staticmethod
    def _live(state: _State | None, part: Remote | None) -> _Live:
        """in_flight, local_in_flight, limit, headroom, headroom_at, retry_at, estimates, stuck_since:
        the figures that never wait."""
        est: Estimates | None
        if state is None:
            local, limit, headroom, headroom_at, retry_at, est = 0, None, None, None, None, None
        else:
            local, limit = state.in_flight, state.aimd.limit
            headroom, headroom_at, retry_at = state.headroom, state.headroom_at, state.retry_at
            est = state.shown
            if est is None:  # the snapshot keeps its figures while the state learns on
                est = state.shown = state.est.copy()
        if part is None:
            return local, local, limit, headroom, headroom_at, retry_at, est, None
        if part.headroom_at is not None and (headroom_at is None or part.headroom_at > headroom_at):
            headroom, headroom_at = part.headroom, part.headroom_at
        if part.retry_at is not None and (retry_at is None or part.retry_at > retry_at):
            retry_at = part.retry_at
        if part.est is not None:
            est = part.est if est is None else est.merge(part.est)
        return local + part.in_flight, local, limit, headroom, headroom_at, retry_at, est, part.stuck_since

    # The local half as RedisStore publishes it.
    def _local_entries(self, now: float) -> list[_Entry]:
        stuck = self.stuck() if self.stuck is not None else {}
        return [
            (
                key, s.window.vector(now), s.in_flight, s.headroom, s.headroom_at, s.retry_at, s.est,
                now - stuck[key] / 1000 if key in stuck else None,
            )
            for key, s in self._states.items()
        ]  # fmt: skip

    def _set_remote(self, remote: RemoteView | None, cooldowns: dict[str, float] | None = None) -> None:
        self._remote = remote
        if cooldowns is not None:
            self._cooldowns = cooldowns
        self._full = True
