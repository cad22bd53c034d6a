"""Run-time knobs (faults and speed overrides) and request statistics of one simulated server."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.sim.profiles import Profile
from gateway.sim.ratelimit import RateLimiter

MAX_ARRIVALS = 10_000


class KnobError(ValueError):
    """A control update named an unknown knob or gave a value of the wrong kind."""


@dataclass
class Knobs:
    """Everything `POST /sim/control` may change while the server runs."""

    ttft_ms: float
    tokens_per_s: float
    rpm_limit: int
    tpm_limit: int
    rate_window_s: float = 60.0  # the rate limits' rolling window; shorter in tests that watch a reset
    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    hang: bool = False
    reset: bool = False
    cut_after_tokens: int | None = None
    stall_after_tokens: int | None = None
    # AWS event streams only: after this many tokens an exception message (named by stream_exception)
    # ends the stream, as Bedrock's modelStreamErrorException or SageMaker's ModelStreamError do.
    stream_exception_after_tokens: int | None = None
    stream_exception: str = "modelStreamErrorException"
    # {"status": 400, "body": {...} | "text", "headers": {...}}; body defaults to an OpenAI-shaped error.
    bad_status_body: dict[str, Any] | None = None
    # The vLLM-style `GET /metrics` page (sim/metrics_page.py): the batch holds `max_running` requests in
    # flight and the rest count as waiting; a `force_*` value replaces what the load would show.
    max_running: int = 64
    force_waiting: int | None = None
    force_running: int | None = None
    force_kv_cache: float | None = None

    @classmethod
    def from_profile(cls, profile: Profile) -> Knobs:
        return cls(
            ttft_ms=profile.ttft_ms,
            tokens_per_s=profile.tokens_per_s,
            rpm_limit=profile.rpm_limit,
            tpm_limit=profile.tpm_limit,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply all of `changes` or, if any is invalid, none of them."""
        checked = {key: _check(key, value) for key, value in changes.items()}
        for key, value in checked.items():
            setattr(self, key, value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rate(value: Any) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise KnobError("must be a number between 0 and 1")
    return float(value)


def _non_negative(value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise KnobError("must be a non-negative number")
    return float(value)


def _positive(value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise KnobError("must be a positive number")
    return float(value)


def _count(value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise KnobError("must be a non-negative integer")
    return int(value)


def _optional_count(value: Any) -> int | None:
    return None if value is None else _count(value)


def _optional_rate(value: Any) -> float | None:
    return None if value is None else _rate(value)


def _slots(value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise KnobError("must be a positive integer")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise KnobError("must be true or false")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise KnobError("must be an exception name such as throttlingException")
    return value


def _status(value: Any) -> int:
    if not _is_int(value) or not 400 <= value <= 599:
        raise KnobError("must be an HTTP error status (400-599)")
    return int(value)


def _bad_status_body(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "status" not in value:
        raise KnobError('must be null or an object like {"status": 400, "body": {...}}')
    unknown = set(value) - {"status", "body", "headers"}
    if unknown:
        raise KnobError(f"unknown fields {sorted(unknown)}")
    headers = value.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise KnobError("headers must be an object of strings")
    return {"status": _status(value["status"]), "body": value.get("body"), "headers": headers}


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "ttft_ms": _non_negative,
    "tokens_per_s": _positive,
    "rpm_limit": _count,
    "rate_window_s": _positive,
    "tpm_limit": _count,
    "error_rate": _rate,
    "error_status": _status,
    "rate_limit_rate": _rate,
    "retry_after_s": _non_negative,
    "hang": _flag,
    "reset": _flag,
    "cut_after_tokens": _optional_count,
    "stall_after_tokens": _optional_count,
    "stream_exception_after_tokens": _optional_count,
    "stream_exception": _name,
    "bad_status_body": _bad_status_body,
    "max_running": _slots,
    "force_waiting": _optional_count,
    "force_running": _optional_count,
    "force_kv_cache": _optional_rate,
}


def _check(key: str, value: Any) -> Any:
    check = _CHECKS.get(key)
    if check is None:
        raise KnobError(f"unknown knob {key!r}; known knobs: {', '.join(_CHECKS)}")
    try:
        return check(value)
    except KnobError as exc:
        raise KnobError(f"{key} {exc}") from None


@dataclass
class Arrival:
    """One request as the server saw it; `status` stays None while unanswered or if never answered."""

    t: float
    path: str
    model: str | None = None
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Stats:
    """Counters tests and benchmarks read through `GET /sim/stats`."""

    total_requests: int = 0
    requests_by_model: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    cancelled: int = 0
    last_cancelled_at: float | None = None
    last_headers: dict[str, str] = field(default_factory=dict)
    last_body: Any = None
    arrivals: deque[Arrival] = field(default_factory=lambda: deque(maxlen=MAX_ARRIVALS))

    def record_arrival(self, path: str, headers: Mapping[str, str]) -> Arrival:
        arrival = Arrival(t=time.monotonic(), path=path)
        self.total_requests += 1
        self.last_headers = {key.lower(): value for key, value in headers.items()}
        self.arrivals.append(arrival)
        return arrival

    def record_body(self, arrival: Arrival, body: Any) -> None:
        self.last_body = body
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str):
            arrival.model = model
            self.requests_by_model[model] = self.requests_by_model.get(model, 0) + 1

    def record_cancel(self) -> None:
        self.cancelled += 1
        self.last_cancelled_at = time.monotonic()

    def to_json(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for arrival in self.arrivals:
            key = "none" if arrival.status is None else str(arrival.status)
            statuses[key] = statuses.get(key, 0) + 1
        return {
            "now": time.monotonic(),
            "total_requests": self.total_requests,
            "requests_by_model": dict(self.requests_by_model),
            "in_flight": self.in_flight,
            "cancelled": self.cancelled,
            "last_cancelled_at": self.last_cancelled_at,
            "last_headers": dict(self.last_headers),
            "last_body": self.last_body,
            "status_counts": statuses,
            "arrivals": [arrival.to_json() for arrival in self.arrivals],
        }


class SimState:
    """Profile, knobs, statistics, limiter and dice of one server; `reset()` returns to the profile."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.knobs = Knobs.from_profile(profile)
        self.stats = Stats()
        # Seeded by name so a fault rate produces the same sequence on every run.
        self.rng = random.Random(profile.name)
        self.limiter = RateLimiter(profile.rpm_limit, profile.tpm_limit)

    def update_knobs(self, changes: Mapping[str, Any]) -> None:
        self.knobs.update(changes)
        self.limiter.set_limits(self.knobs.rpm_limit, self.knobs.tpm_limit, self.knobs.rate_window_s)

    def reset(self) -> None:
        self.knobs = Knobs.from_profile(self.profile)
        self.stats = Stats()
        self.rng = random.Random(self.profile.name)
        self.limiter = RateLimiter(self.profile.rpm_limit, self.profile.tpm_limit)

    def roll(self, rate: float) -> bool:
        """True with probability `rate`; rates of exactly 0 and 1 consume no randomness."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self.rng.random() < rate
