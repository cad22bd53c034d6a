"""Rate-limit headroom parsed from upstream response headers, one table per dialect (providers/dialects)."""

from __future__ import annotations

import math
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
        seconds = float(value)
    except ValueError:
        if len(value) > 64 or not _DURATION.fullmatch(value):
            return None
        seconds = sum(float(num) * _UNIT_S[unit] for num, unit in _DURATION_PART.findall(value))
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _rfc3339_in(value: str, now: float) -> float | None:
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now)
    except (ValueError, OverflowError):  # not a time, or one no float holds (year 1 minus an offset)
        return None


def _retry_after(value: str, now: float) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_MAX_COUNT = 10**15  # more requests or tokens than any limit: a broken header, not a figure


def _int(value: str) -> int | None:
    """A count, or None for anything that is not one (negative, beyond _MAX_COUNT, not a number)."""
    try:
        n = int(value) if len(value) <= 32 else None
    except ValueError:
        try:
            n = int(float(value))
        except (ValueError, OverflowError):  # "nan", "inf"
            return None
    return n if n is not None and 0 <= n <= _MAX_COUNT else None


# Slots in the scratch list; the input/output token windows (Anthropic's, Fireworks' prompt/generated) only
# stand in when the combined `tokens` window is absent.
(_R_LIMIT, _R_LEFT, _R_RESET, _T_LIMIT, _T_LEFT, _T_RESET, _RA_MS, _RA,
 _I_LIMIT, _I_LEFT, _I_RESET, _O_LIMIT, _O_LEFT, _O_RESET) = range(14)  # fmt: skip
_SLOTS = {
    "requests_limit": _R_LIMIT, "requests_remaining": _R_LEFT, "requests_reset": _R_RESET,
    "tokens_limit": _T_LIMIT, "tokens_remaining": _T_LEFT, "tokens_reset": _T_RESET,
    "retry_after_ms": _RA_MS, "retry_after": _RA,
    "input_tokens_limit": _I_LIMIT, "input_tokens_remaining": _I_LEFT, "input_tokens_reset": _I_RESET,
    "output_tokens_limit": _O_LIMIT, "output_tokens_remaining": _O_LEFT, "output_tokens_reset": _O_RESET,
}  # fmt: skip
# How a header's value is read: a count, or a time turned into seconds from now.
UNITS = ("count", "duration", "rfc3339", "epoch_s", "ms", "http")
_COUNT, _DUR, _TS, _EPOCH, _MS, _HTTP = range(len(UNITS))
_NEEDS_WALL = frozenset({_TS, _EPOCH, _HTTP})


class HeaderTable:
    """Which response headers carry which rate-limit figure, in which unit: one per provider dialect.

    `spec` maps a header name (any case) to (field, unit): field is a Headroom field, `retry_after` or
    `retry_after_ms` (which wins over `retry_after`), or an `input_tokens_*` / `output_tokens_*` window (the
    tighter of the two stands for `tokens_*` when those are absent); unit is one of UNITS: `count`,
    `duration` (Go's `6m0s`, `1.5s`, `12ms`, or plain seconds), `rfc3339` and `epoch_s` (absolute), `ms`
    (milliseconds from now), `http` (Retry-After: seconds or an HTTP date)."""

    __slots__ = ("_names", "_first")

    def __init__(self, spec: Mapping[str, tuple[str, str]]) -> None:
        self._names = {
            name.lower(): (_SLOTS[field], UNITS.index(unit)) for name, (field, unit) in spec.items()
        }
        # A header not starting with one of these is skipped without lowercasing.
        self._first = frozenset(c for name in self._names for c in (name[0], name[0].upper()))

    def parse(
        self, headers: Mapping[str, str] | None, now: Callable[[], float] = time.time
    ) -> Headroom | None:
        """The headroom the headers describe, or None when they say nothing about limits.

        One pass over the headers with a table lookup per name, so it is cheap enough for every response;
        names are matched case-insensitively. `now` (wall clock) turns absolute times into seconds."""
        if not headers:
            return None
        names, first = self._names, self._first
        raw: list[tuple[str, int] | None] | None = None
        for name, value in headers.items():
            if not name or name[0] not in first:
                continue
            hit = names.get(name)
            if hit is None:
                hit = names.get(name.lower())
                if hit is None:
                    continue
            if raw is None:
                raw = [None] * 14
            raw[hit[0]] = (value, hit[1])
        if raw is None:
            return None
        return _build(raw, now)


def _read(value: str, unit: int, wall: float) -> float | None:
    """A time header as seconds from now (never negative), or None when it does not parse."""
    if unit == _DUR:
        return parse_duration(value)
    if unit == _TS:
        return _rfc3339_in(value, wall)
    if unit == _HTTP:
        return _retry_after(value, wall)
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    if unit == _MS:
        return max(0.0, number / 1000)
    if unit == _EPOCH:
        return max(0.0, number - wall)
    return max(0.0, number)  # a count where a time was expected: seconds


def _build(raw: list[tuple[str, int] | None], now: Callable[[], float]) -> Headroom | None:
    wall: float | None = None

    def seconds(slot: int) -> float | None:
        nonlocal wall
        item = raw[slot]
        if item is None:
            return None
        if item[1] in _NEEDS_WALL and wall is None:
            wall = now()
        return _read(item[0], item[1], wall or 0.0)

    def num(slot: int) -> int | None:
        item = raw[slot]
        return None if item is None else _int(item[0])

    t_limit, t_left, t_reset = num(_T_LIMIT), num(_T_LEFT), seconds(_T_RESET)
    if t_left is None:
        # Without the combined window: the tighter of input and output stands for "tokens".
        best: tuple[float, int, int | None, float | None] | None = None
        for lim_s, left_s, reset_s in ((_I_LIMIT, _I_LEFT, _I_RESET), (_O_LIMIT, _O_LEFT, _O_RESET)):
            left = num(left_s)
            if left is None:
                continue
            lim = num(lim_s)
            share = left / lim if lim else float(left)
            if best is None or share < best[0]:
                best = (share, left, lim, seconds(reset_s))
        if best is not None:
            _, t_left, t_limit, t_reset = best
    retry_s = seconds(_RA_MS)
    if retry_s is None:
        retry_s = seconds(_RA)
    out = Headroom(num(_R_LEFT), num(_R_LIMIT), seconds(_R_RESET), t_left, t_limit, t_reset, retry_s)
    return None if out == _EMPTY else out


# OpenAI's and Groq's `x-ratelimit-*` (resets as Go durations), Anthropic's `anthropic-ratelimit-*` (resets
# as RFC 3339 times), `retry-after-ms` (OpenAI's SDK honours it first) and `retry-after`.
DEFAULT_SPEC: dict[str, tuple[str, str]] = {
    "x-ratelimit-limit-requests": ("requests_limit", "count"),
    "x-ratelimit-remaining-requests": ("requests_remaining", "count"),
    "x-ratelimit-reset-requests": ("requests_reset", "duration"),
    "x-ratelimit-limit-tokens": ("tokens_limit", "count"),
    "x-ratelimit-remaining-tokens": ("tokens_remaining", "count"),
    "x-ratelimit-reset-tokens": ("tokens_reset", "duration"),
    "retry-after-ms": ("retry_after_ms", "ms"),
    "retry-after": ("retry_after", "http"),
}
DEFAULT_SPEC.update(
    {
        f"anthropic-ratelimit-{window}-{part}": (f"{field}_{name}", unit)
        for window, field in (
            ("requests", "requests"),
            ("tokens", "tokens"),
            ("input-tokens", "input_tokens"),
            ("output-tokens", "output_tokens"),
        )
        for part, name, unit in (
            ("limit", "limit", "count"),
            ("remaining", "remaining", "count"),
            ("reset", "reset", "rfc3339"),
        )
    }
)
DEFAULT_TABLE = HeaderTable(DEFAULT_SPEC)


def parse_headroom(
    headers: Mapping[str, str] | None, now: Callable[[], float] = time.time
) -> Headroom | None:
    """The headroom in OpenAI-style or Anthropic-style headers (DEFAULT_TABLE), or None."""
    return DEFAULT_TABLE.parse(headers, now)


_EMPTY = Headroom()
