"""The telemetry store seam: a Protocol, the snapshot it hands to scoring, and the in-process MemoryStore.

Writes (`record`, `add_in_flight`, cooldowns) are sync and O(1); `snapshot()` is sync and rebuilds only the
keys that changed, at most once per change or per `max_age_s` (decay is slow, in-flight counts are not).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.telemetry.headroom import Headroom
from gateway.telemetry.window import WIDTH, Aimd, Sample, Stats, Window, make_stats

Key = tuple[str, str]  # (backend, provider model id)


class Snapshot(Mapping[Key, Stats]):
    """An immutable view at one moment: Stats per key plus the shared cooldowns (name -> until, epoch s)."""

    __slots__ = ("_stats", "cooldowns", "at")

    def __init__(self, stats: Mapping[Key, Stats], cooldowns: Mapping[str, float], at: float) -> None:
        self._stats = stats
        self.cooldowns = cooldowns
        self.at = at

    def __getitem__(self, key: Key) -> Stats:
        return self._stats[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def cooldown_until(self, name: str) -> float | None:
        return self.cooldowns.get(name)

    def cooling(self, name: str, now: float) -> bool:
        until = self.cooldowns.get(name)
        return until is not None and now < until


class TelemetryStore(Protocol):
    def record(self, key: Key, sample: Sample) -> None:
        """Learn from one finished attempt. Sync, never blocks, never raises on a healthy process."""
        ...

    def add_in_flight(self, key: Key, delta: int) -> None: ...

    def set_cooldown(self, name: str, until: float) -> None:
        """Open a shared cooldown (breaker) until `until` (epoch s); only ever extends an existing one."""
        ...

    def clear_cooldown(self, name: str) -> None: ...

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


@dataclass(frozen=True, slots=True)
class RemoteView:
    at: float
    keys: Mapping[Key, Remote] = field(default_factory=dict)


@dataclass(slots=True)
class _State:
    window: Window
    aimd: Aimd = field(default_factory=Aimd)
    in_flight: int = 0
    headroom: Headroom | None = None
    headroom_at: float | None = None
    retry_at: float | None = None


class MemoryStore:
    """Telemetry of this process only: the embedded default, and the local half of RedisStore."""

    def __init__(
        self,
        half_life_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.time,
        max_age_s: float = 0.25,
    ) -> None:
        self.half_life_s = half_life_s
        self._clock = clock
        self._max_age = max_age_s
        self._states: dict[Key, _State] = {}
        self._cooldowns: dict[str, float] = {}
        self._remote: RemoteView | None = None
        self._snap = Snapshot({}, {}, -float("inf"))
        self._changed: set[Key] = set()  # keys to recompute at the next snapshot
        self._full = True  # recompute every key: decay moved them all, or the remote view changed
        self._full_at = -float("inf")
        self._cooldowns_changed = False

    def _state(self, key: Key) -> _State:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(Window(self.half_life_s, self._clock()))
        return state

    def record(self, key: Key, sample: Sample) -> None:
        now = self._clock()
        state = self._state(key)
        state.window.add(sample, now)
        if sample.outcome == "ok":
            state.aimd.on_success(state.in_flight)
        elif sample.outcome == "rate_limited":
            state.aimd.on_rate_limited(state.in_flight, now)
        hr = sample.headroom
        if hr is not None:
            if hr.retry_after_s is not None:
                state.retry_at = max(state.retry_at or 0.0, now + hr.retry_after_s)
            if hr.requests_remaining is not None or hr.tokens_remaining is not None:
                state.headroom, state.headroom_at = hr, now
        self._changed.add(key)

    def add_in_flight(self, key: Key, delta: int) -> None:
        state = self._state(key)
        state.in_flight = max(0, state.in_flight + delta)
        self._changed.add(key)

    def set_cooldown(self, name: str, until: float) -> None:
        if until > self._cooldowns.get(name, 0.0):
            self._cooldowns[name] = until
            self._cooldowns_changed = True

    def clear_cooldown(self, name: str) -> None:
        if self._cooldowns.pop(name, None) is not None:
            self._cooldowns_changed = True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def snapshot(self) -> Snapshot:
        """The current view; the same object until something changes or it is `max_age_s` old."""
        now = self._clock()
        snap = self._snap
        if now - self._full_at > self._max_age:
            self._full = True
        elif not (self._full or self._changed or self._cooldowns_changed):
            return snap
        remote = self._remote
        if self._full:
            keys = self._states.keys() | remote.keys.keys() if remote is not None else self._states.keys()
            stats = {key: self._stats(key, remote, now) for key in keys}
            self._full, self._full_at = False, now
        else:
            stats = dict(snap._stats)
            for key in self._changed:
                stats[key] = self._stats(key, remote, now)
        self._changed.clear()
        self._cooldowns_changed = False
        cooldowns = {name: until for name, until in self._cooldowns.items() if until > now}
        self._snap = Snapshot(stats, cooldowns, now)
        return self._snap

    def _stats(self, key: Key, remote: RemoteView | None, now: float) -> Stats:
        state = self._states.get(key)
        vec = state.window.vector(now) if state is not None else [0.0] * WIDTH
        local_in_flight = state.in_flight if state is not None else 0
        in_flight = local_in_flight
        headroom = state.headroom if state is not None else None
        headroom_at = state.headroom_at if state is not None else None
        retry_at = state.retry_at if state is not None else None
        part = remote.keys.get(key) if remote is not None else None
        if remote is not None and part is not None:
            f = 2.0 ** ((remote.at - now) / self.half_life_s) if now > remote.at else 1.0
            vec = [a + b * f for a, b in zip(vec, part.vec, strict=True)]
            in_flight += part.in_flight
            if part.headroom_at is not None and (headroom_at is None or part.headroom_at > headroom_at):
                headroom, headroom_at = part.headroom, part.headroom_at
            if part.retry_at is not None and (retry_at is None or part.retry_at > retry_at):
                retry_at = part.retry_at
        limit = state.aimd.limit if state is not None else None
        return make_stats(vec, in_flight, local_in_flight, limit, headroom, headroom_at, retry_at)

    # The local half as RedisStore publishes it.
    def _local_entries(
        self, now: float
    ) -> list[tuple[Key, list[float], int, Headroom | None, float | None, float | None]]:
        return [
            (key, s.window.vector(now), s.in_flight, s.headroom, s.headroom_at, s.retry_at)
            for key, s in self._states.items()
        ]

    def _set_remote(self, remote: RemoteView | None, cooldowns: dict[str, float] | None = None) -> None:
        self._remote = remote
        if cooldowns is not None:
            self._cooldowns = cooldowns
        self._full = True
