"""What happened to a request and each of its attempts, and the observers that learn of it.

The router and the API fill these records; telemetry, metrics and tracing are observers. Observers run on
the event loop inside the request, so each hook must be cheap and must never raise or await.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.providers.base import Target


@dataclass(slots=True)
class AttemptRecord:
    target: Target
    number: int  # 1-based, in the order tried
    started: float = field(default_factory=time.monotonic)
    ttft_s: float | None = None  # first byte of the body (non-stream) or first SSE event (stream)
    duration_s: float | None = None
    outcome: str = "pending"  # "ok", "cancelled" or a FailureKind
    status: int | None = None
    retry_after: float | None = None
    error: str | None = None
    headers: Mapping[str, str] | None = None  # upstream response headers (rate-limit headroom)
    input_tokens: int | None = None
    output_tokens: int | None = None
    partial: bool = False  # a stream that ended before it finished
    context: dict[str, Any] = field(default_factory=dict)  # per-observer state (e.g. an open span)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    op: str
    path: str
    stream: bool = False
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    model: str | None = None
    route: str | None = None
    objective: str | None = None
    incoming_headers: Mapping[str, str] | None = None
    candidates: list[Any] = field(default_factory=list)  # routing.scoring.Scored, best first
    dropped: list[Any] = field(default_factory=list)  # routing.scoring.Dropped
    attempts: list[AttemptRecord] = field(default_factory=list)
    status: int | None = None
    error: str | None = None
    backend: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_s: float | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def upstream_s(self) -> float:
        """Time spent waiting on upstreams, to tell the gateway's own overhead apart."""
        return sum(a.duration_s or 0.0 for a in self.attempts)


class Observer(Protocol):
    def request_started(self, req: RequestRecord) -> None: ...

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        """May add headers to the upstream request (e.g. traceparent)."""
        ...

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None: ...

    def request_finished(self, req: RequestRecord) -> None: ...


class Observers:
    """Fans each event out to every observer; an observer that raises is logged once and skipped."""

    __slots__ = ("_items", "_log")

    def __init__(self, items: list[Observer] | None = None) -> None:
        self._items: list[Observer] = list(items or [])
        self._log = logging.getLogger("routeway")

    def add(self, observer: Observer) -> None:
        self._items.append(observer)

    def _guard(self, name: str, *args: Any) -> None:
        for obs in self._items:
            try:
                getattr(obs, name)(*args)
            except Exception:  # noqa: BLE001 - an observer must never fail a request
                self._log.exception("observer %s failed in %s", type(obs).__name__, name)

    def request_started(self, req: RequestRecord) -> None:
        if self._items:
            self._guard("request_started", req)

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        if self._items:
            self._guard("attempt_started", req, att, headers)

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        if att.duration_s is None:
            att.duration_s = time.monotonic() - att.started
        if self._items:
            self._guard("attempt_finished", req, att)

    def request_finished(self, req: RequestRecord) -> None:
        if req.duration_s is None:
            req.duration_s = time.monotonic() - req.started
        if self._items:
            self._guard("request_finished", req)
