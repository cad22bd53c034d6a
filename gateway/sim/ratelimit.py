"""Rolling 60-second request and token windows with OpenAI/Groq-style `x-ratelimit-*` headers."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW_S = 60.0


def format_duration(seconds: float) -> str:
    """Go `time.Duration` spelling, as providers use in reset headers: `2m59.56s`, `6m0s`, `1.5s`, `12ms`."""
    total_ms = max(0, round(seconds * 1000))
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, sec_ms = divmod(rest_ms, 60_000)
    secs = f"{sec_ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class RollingWindow:
    """Amounts spent in the last `WINDOW_S` seconds against a fixed limit."""

    def __init__(self, limit: int, window_s: float = WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.window_s:
            self._total -= self._spent.popleft()[1]

    def used(self, now: float) -> int:
        self._expire(now)
        return self._total

    def fits(self, amount: int, now: float) -> bool:
        return self.used(now) + amount <= self.limit

    def spend(self, amount: int, now: float) -> None:
        self._expire(now)
        self._spent.append((now, amount))
        self._total += amount

    def remaining(self, now: float) -> int:
        return max(0, self.limit - self.used(now))

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until `amount` more would fit, as entries age out of the window."""
        self._expire(now)
        excess = self._total + amount - self.limit
        if excess <= 0:
            return 0.0
        for stamp, spent in self._spent:
            excess -= spent
            if excess <= 0:
                return max(0.0, stamp + self.window_s - now)
        return self.window_s  # larger than the whole limit: it will never fit, so say "a full window"

    def reset_in(self, now: float) -> float:
        # Time until the oldest spend ages out: the moment capacity next grows, which is what a
        # client waiting on an exhausted window needs to know.
        self._expire(now)
        return max(0.0, self._spent[0][0] + self.window_s - now) if self._spent else 0.0

    def clear(self) -> None:
        self._spent.clear()
        self._total = 0


@dataclass
class Verdict:
    """Outcome of asking the limiter for one request: allowed or not, and the headers to send."""

    allowed: bool
    headers: dict[str, str]
    retry_after_s: float = 0.0
    kind: str = ""
    used: int = 0
    limit: int = 0


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits; a limit of 0 means unlimited and no headers."""

    def __init__(self, rpm_limit: int, tpm_limit: int) -> None:
        self.requests = RollingWindow(rpm_limit)
        self.tokens = RollingWindow(tpm_limit)

    def set_limits(self, rpm_limit: int, tpm_limit: int, window_s: float = WINDOW_S) -> None:
        self.requests.limit = rpm_limit
        self.tokens.limit = tpm_limit
        self.requests.window_s = self.tokens.window_s = window_s

    def clear(self) -> None:
        self.requests.clear()
        self.tokens.clear()

    def admit(self, tokens: int, now: float) -> Verdict:
        """Spend one request and `tokens` tokens if both fit; otherwise say how long to wait."""
        rpm, tpm = self.requests.limit, self.tokens.limit
        if rpm and not self.requests.fits(1, now):
            wait = self.requests.wait_for(1, now)
            used = self.requests.used(now)
            return Verdict(False, self.headers(now), wait, "requests", used, rpm)
        if tpm and not self.tokens.fits(tokens, now):
            wait = self.tokens.wait_for(tokens, now)
            used = self.tokens.used(now)
            return Verdict(False, self.headers(now), wait, "tokens", used, tpm)
        if rpm:
            self.requests.spend(1, now)
        if tpm:
            self.tokens.spend(tokens, now)
        return Verdict(True, self.headers(now))

    def headers(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, window in (("requests", self.requests), ("tokens", self.tokens)):
            if not window.limit:
                continue
            out[f"x-ratelimit-limit-{kind}"] = str(window.limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(window.remaining(now))
            out[f"x-ratelimit-reset-{kind}"] = format_duration(window.reset_in(now))
        return out


def retry_after_headers(seconds: float) -> dict[str, str]:
    """`retry-after` in whole seconds (at least 1) plus the precise `retry-after-ms`."""
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, round(seconds * 1000))),
    }
