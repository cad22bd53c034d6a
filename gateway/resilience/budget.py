"""The retry budget: extra upstream attempts stay within a share of requests over a sliding window."""

from __future__ import annotations

import time
from collections.abc import Callable


class RetryBudget:
    """Envoy-style budget: a retry is allowed while retries < ratio × requests (+ a small floor) over the
    last `window_s` seconds, so a provider outage cannot turn into a multiple of the offered load."""

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries: int = 10,
        window_s: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.min_retries = min_retries
        self._size = max(1, window_s)
        self._clock = clock
        self._requests = [0] * self._size
        self._retries = [0] * self._size
        self._stamp = [-1] * self._size

    def _slot(self) -> int:
        second = int(self._clock())
        i = second % self._size
        if self._stamp[i] != second:
            self._stamp[i], self._requests[i], self._retries[i] = second, 0, 0
        return i

    def _totals(self) -> tuple[int, int]:
        oldest = int(self._clock()) - self._size
        live = [i for i in range(self._size) if self._stamp[i] > oldest]
        return sum(self._requests[i] for i in live), sum(self._retries[i] for i in live)

    def note_request(self) -> None:
        self._requests[self._slot()] += 1

    def try_spend(self) -> bool:
        """Takes one retry from the budget if there is one left."""
        requests, retries = self._totals()
        if retries >= max(self.min_retries, self.ratio * requests):
            return False
        self._retries[self._slot()] += 1
        return True
