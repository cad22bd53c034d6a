"""Rate-limit headroom parsed from upstream response headers (OpenAI/Groq, Anthropic, Retry-After)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Headroom:
    """What an upstream said about its limits when it answered; resets are seconds from that moment."""

    requests_remaining: int | None = None
    requests_limit: int | None = None
    requests_reset_s: float | None = None
    tokens_remaining: int | None = None
    tokens_limit: int | None = None
    tokens_reset_s: float | None = None
    retry_after_s: float | None = None

    def requests_after(self, elapsed_s: float) -> int | None:
        """Requests left `elapsed_s` after the observation: the window refills to the limit at its reset."""
        return _project(self.requests_remaining, self.requests_limit, self.requests_reset_s, elapsed_s)

    def tokens_after(self, elapsed_s: float) -> int | None:
        return _project(self.tokens_remaining, self.tokens_limit, self.tokens_reset_s, elapsed_s)


def _project(remaining: int | None, limit: int | None, reset_s: float | None, elapsed_s: float) -> int | None:
    if reset_s is not None and elapsed_s >= reset_s and limit is not None:
        return limit
    return remaining


# Go's time.Duration spelling (`2m59.56s`, `1h2m3s`, `12ms`), which OpenAI and Groq use for resets.
_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:h|ms|m|s|us|µs|μs|ns))+")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(h|ms|m|s|us|µs|μs|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}


def parse_duration(value: str) -> float | None:
    """Seconds from a Go duration or a plain number of seconds; None when it is neither."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    if not _DURATION.fullmatch(value):
        return None
    return sum(float(num) * _UNIT_S[unit] for num, unit in _DURATION_PART.findall(value))


def _rfc3339_in(value: str, now: float) -> float | None:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def _retry_after(value: str, now: float) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return None


# Slots in the scratch list; the Anthropic input/output token windows only stand in when the combined
# `tokens` window is absent.
(_R_LIMIT, _R_LEFT, _R_RESET, _T_LIMIT, _T_LEFT, _T_RESET, _RA_MS, _RA,
 _I_LIMIT, _I_LEFT, _I_RESET, _O_LIMIT, _O_LEFT, _O_RESET) = range(14)  # fmt: skip
_INT, _DUR, _TS = 0, 1, 2

_HEADERS: dict[str, tuple[int, int]] = {
    "x-ratelimit-limit-requests": (_R_LIMIT, _INT),
    "x-ratelimit-remaining-requests": (_R_LEFT, _INT),
    "x-ratelimit-reset-requests": (_R_RESET, _DUR),
    "x-ratelimit-limit-tokens": (_T_LIMIT, _INT),
    "x-ratelimit-remaining-tokens": (_T_LEFT, _INT),
    "x-ratelimit-reset-tokens": (_T_RESET, _DUR),
    "retry-after-ms": (_RA_MS, _INT),
    "retry-after": (_RA, _INT),
}
_HEADERS.update(
    {
        f"anthropic-ratelimit-{window}-{part}": (slots[i], kind)
        for window, slots in (
            ("requests", (_R_LIMIT, _R_LEFT, _R_RESET)),
            ("tokens", (_T_LIMIT, _T_LEFT, _T_RESET)),
            ("input-tokens", (_I_LIMIT, _I_LEFT, _I_RESET)),
            ("output-tokens", (_O_LIMIT, _O_LEFT, _O_RESET)),
        )
        for i, (part, kind) in enumerate((("limit", _INT), ("remaining", _INT), ("reset", _TS)))
    }
)
_FIRST = frozenset("xXaArR")  # a header not starting with one of these is skipped without lowercasing


def parse_headroom(
    headers: Mapping[str, str] | None, now: Callable[[], float] = time.time
) -> Headroom | None:
    """The headroom an upstream's headers describe, or None when they say nothing about limits.

    One pass over the headers with a table lookup per name, so it is cheap enough for every response;
    names are matched case-insensitively. `now` (wall clock) turns absolute resets into seconds.
    """
    if not headers:
        return None
    raw: list[tuple[str, int] | None] | None = None
    for name, value in headers.items():
        if not name or name[0] not in _FIRST:
            continue
        hit = _HEADERS.get(name)
        if hit is None:
            hit = _HEADERS.get(name.lower())
            if hit is None:
                continue
        if raw is None:
            raw = [None] * 14
        raw[hit[0]] = (value, hit[1])
    if raw is None:
        return None
    return _build(raw, now)


def _build(raw: list[tuple[str, int] | None], now: Callable[[], float]) -> Headroom | None:
    wall: float | None = None

    def reset(slot: int) -> float | None:
        nonlocal wall
        item = raw[slot]
        if item is None:
            return None
        if item[1] == _TS:
            if wall is None:
                wall = now()
            return _rfc3339_in(item[0], wall)
        return parse_duration(item[0])

    def num(slot: int) -> int | None:
        item = raw[slot]
        return None if item is None else _int(item[0])

    t_limit, t_left, t_reset = num(_T_LIMIT), num(_T_LEFT), reset(_T_RESET)
    if t_left is None:
        # Anthropic without the combined window: the tighter of input and output stands for "tokens".
        best: tuple[float, int, int | None, float | None] | None = None
        for lim_s, left_s, reset_s in ((_I_LIMIT, _I_LEFT, _I_RESET), (_O_LIMIT, _O_LEFT, _O_RESET)):
            left = num(left_s)
            if left is None:
                continue
            lim = num(lim_s)
            share = left / lim if lim else float(left)
            if best is None or share < best[0]:
                best = (share, left, lim, reset(reset_s))
        if best is not None:
            _, t_left, t_limit, t_reset = best
    retry_s: float | None = None
    ms = raw[_RA_MS]
    if ms is not None:
        try:
            retry_s = max(0.0, float(ms[0]) / 1000)
        except ValueError:
            retry_s = None
    ra = raw[_RA]
    if retry_s is None and ra is not None:
        if wall is None:
            wall = now()
        retry_s = _retry_after(ra[0], wall)
    out = Headroom(num(_R_LEFT), num(_R_LIMIT), reset(_R_RESET), t_left, t_limit, t_reset, retry_s)
    return None if out == _EMPTY else out


_EMPTY = Headroom()
