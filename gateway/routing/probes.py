"""What the router knows between samples: attempts still waiting for a first token, and when each backend
was last tried, so every backend gets one probe per interval instead of a share of all traffic."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.providers.base import Target

Key = tuple[str, str]


def key_of(target: Target) -> Key:
    return target.backend, target.model_id


class Watch:
    """Per-process and cheap: dict operations per attempt, nothing shared (yet) through the store."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_tried: dict[Key, float] = {}
        # Only backends with an attempt waiting; insertion order: the first entry is the oldest.
        self._waiting: dict[Key, dict[int, float]] = {}

    def started(self, target: Target, token: int) -> None:
        now = self._clock()
        key = key_of(target)
        self._last_tried[key] = now
        self._waiting.setdefault(key, {})[token] = now

    def answered(self, target: Target, token: int) -> None:
        """The first token arrived, or the attempt ended without one: it no longer counts as waiting."""
        key = key_of(target)
        waiting = self._waiting.get(key)
        if waiting is not None and waiting.pop(token, None) is not None and not waiting:
            del self._waiting[key]  # so waiting_ms() walks only the backends something waits on

    def last_tried(self, target: Target) -> float | None:
        """Monotonic time the backend was last tried or claimed for a probe (the dashboard shows its age)."""
        return self._last_tried.get(key_of(target))

    def waiting_ms(self) -> dict[Key, float]:
        """Age of the oldest attempt still waiting for its first token, per backend with one."""
        if not self._waiting:
            return {}
        now = self._clock()
        return {k: (now - next(iter(w.values()))) * 1000 for k, w in self._waiting.items()}

    def pick_probe(self, candidates: Sequence[Target], interval_s: float) -> Target | None:
        """The candidate tried least recently, if that was at least `interval_s` ago (never: right away)."""
        if interval_s <= 0:
            return None
        now = self._clock()
        due = [(self._last_tried.get(key_of(t), float("-inf")), i) for i, t in enumerate(candidates)]
        due = [(last, i) for last, i in due if now - last >= interval_s]
        if not due:
            return None
        pick = candidates[min(due)[1]]
        self._last_tried[key_of(pick)] = now  # claimed now, so concurrent requests do not all probe it
        return pick
