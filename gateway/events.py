"""What happened to a request and each of its attempts, and the observers that learn of it.

The router and the API fill these records; telemetry, metrics and tracing are observers. Observers run on
the event loop inside the request, so each hook must be cheap and must never raise or await.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.providers.base import Target


class RequestIds:
    """Request ids for one runtime: a random prefix and a counter (unique across replicas and runtimes, no
    syscall per request); a client's printable `x-request-id` (at most 128 characters) is kept instead."""

    __slots__ = ("_prefix", "_counter")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def take(self, headers: Mapping[str, str]) -> str:
        rid = headers.get("x-request-id", "")
        if rid and rid.isascii() and rid.isprintable():
            return rid[:128]
        return f"{self._prefix}{next(self._counter):012x}"


@dataclass(slots=True)
class AttemptRecord:
    target: Target
    number: int  # 1-based, in the order tried
    started: float = field(default_factory=time.monotonic)
    replied_s: float | None = None  # the status line and headers, this long after the start
    ttft_s: float | None = None  # first byte of the body (non-stream) or first SSE event (stream)
    expected_s: float | None = None  # the plan's predicted time to that first byte
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
    op: str  # the backend operation (chat, completions, embeddings) the endpoint routes as
    path: str
    operation_name: str | None = None  # gen_ai.operation.name of the endpoint (None: the same as `op`)
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
    pick: str | None = None  # best | probe | unmeasured | fallback (routing.router.Plan.pick)
    cost_usd: float | None = None
    principal: str | None = None  # access.principal.Principal.label: who called, never their key
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_s: float | None = None
    context: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # the parsed request, set only for the sampled request log

    def upstream_s(self) -> float:
        """Time spent waiting on upstreams, to tell the gateway's own overhead apart."""
        total = 0.0  # a plain loop: cheaper than sum() over a generator for the usual one or two attempts
        for a in self.attempts:
            if a.duration_s is not None:
                total += a.duration_s
        return total


class Observer(Protocol):
    """Learns of each request and attempt; every hook is sync, cheap, and never awaits.

    A class that explicitly subclasses Observer inherits a no-op for each hook it does not define, and
    `Observers` never calls an inherited no-op, so leaving a hook out is the way to say "not interested"
    (it costs nothing per request; a hook defined with an empty body is still called). A structural
    observer (one that does not subclass) must define all four. Hooks are looked up once, when the
    observer is added to `Observers`.

    Two more hooks are optional, and called only where an observer defines them (no no-op here, so
    structural observers need not): `attempt_replied(req, att)`, when the response's status line and headers
    arrived (`att.status` set; a stream's first event may still be far off), and `attempt_answered(req, att)`,
    at the attempt's first byte (non-stream: the whole body) or first event (stream), with `att.ttft_s` set,
    so what is known then (a stream's TTFT, a breaker trial's verdict) need not wait for the stream's end.
    See `Replied` and `FirstByte`.
    """

    __slots__ = ()

    def request_started(self, req: RequestRecord) -> None:
        return None

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        """May add headers to the upstream request (e.g. traceparent)."""
        return None

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        return None

    def request_finished(self, req: RequestRecord) -> None:
        return None


class Replied(Protocol):
    """The optional status-line hook (see Observer)."""

    def attempt_replied(self, req: RequestRecord, att: AttemptRecord) -> None: ...


class FirstByte(Protocol):
    """The optional first-byte hook (see Observer)."""

    def attempt_answered(self, req: RequestRecord, att: AttemptRecord) -> None: ...


def _acts(observer: Observer, hook: str) -> bool:
    """False when the observer's hook is the no-op it inherited from Observer."""
    return getattr(getattr(observer, hook), "__func__", None) is not getattr(Observer, hook)


def _optional(observer: Observer, name: str) -> Callable[[RequestRecord, AttemptRecord], None] | None:
    hook: Callable[[RequestRecord, AttemptRecord], None] | None = getattr(observer, name, None)
    return hook if callable(hook) else None


class Observers:
    """Fans each event out to every observer; an observer that raises is logged and skipped, so it never
    fails the request. Each event calls a tuple of bound methods, rebuilt by `add`."""

    __slots__ = (
        "_items", "_log", "_req_started", "_att_started", "_att_replied", "_att_answered", "_att_finished",
        "_req_finished",
    )  # fmt: skip

    def __init__(self, items: list[Observer] | None = None) -> None:
        self._items: list[Observer] = []
        self._log = logging.getLogger("routeway")
        self._req_started: tuple[Callable[[RequestRecord], None], ...] = ()
        self._att_started: tuple[Callable[[RequestRecord, AttemptRecord, dict[str, str]], None], ...] = ()
        self._att_replied: tuple[Callable[[RequestRecord, AttemptRecord], None], ...] = ()
        self._att_answered: tuple[Callable[[RequestRecord, AttemptRecord], None], ...] = ()
        self._att_finished: tuple[Callable[[RequestRecord, AttemptRecord], None], ...] = ()
        self._req_finished: tuple[Callable[[RequestRecord], None], ...] = ()
        for observer in items or ():
            self.add(observer)

    def add(self, observer: Observer) -> None:
        self._items.append(observer)
        items = self._items
        self._req_started = tuple(o.request_started for o in items if _acts(o, "request_started"))
        self._att_started = tuple(o.attempt_started for o in items if _acts(o, "attempt_started"))
        self._att_replied = tuple(h for o in items if (h := _optional(o, "attempt_replied")) is not None)
        self._att_answered = tuple(h for o in items if (h := _optional(o, "attempt_answered")) is not None)
        self._att_finished = tuple(o.attempt_finished for o in items if _acts(o, "attempt_finished"))
        self._req_finished = tuple(o.request_finished for o in items if _acts(o, "request_finished"))

    def _failed(self, hook: Callable[..., None], event: str) -> None:
        owner = getattr(hook, "__self__", hook)
        self._log.exception("observer %s failed in %s", type(owner).__name__, event)

    # One loop per event rather than a shared helper: no *args packing or extra call on the hot path.
    def request_started(self, req: RequestRecord) -> None:
        for hook in self._req_started:
            try:
                hook(req)
            except Exception:  # noqa: BLE001 - an observer must never fail a request
                self._failed(hook, "request_started")

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        for hook in self._att_started:
            try:
                hook(req, att, headers)
            except Exception:  # noqa: BLE001
                self._failed(hook, "attempt_started")

    def attempt_replied(self, req: RequestRecord, att: AttemptRecord) -> None:
        for hook in self._att_replied:
            try:
                hook(req, att)
            except Exception:  # noqa: BLE001
                self._failed(hook, "attempt_replied")

    def attempt_answered(self, req: RequestRecord, att: AttemptRecord) -> None:
        for hook in self._att_answered:
            try:
                hook(req, att)
            except Exception:  # noqa: BLE001
                self._failed(hook, "attempt_answered")

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        if att.duration_s is None:
            att.duration_s = time.monotonic() - att.started
        for hook in self._att_finished:
            try:
                hook(req, att)
            except Exception:  # noqa: BLE001
                self._failed(hook, "attempt_finished")

    def request_finished(self, req: RequestRecord) -> None:
        if req.duration_s is None:
            req.duration_s = time.monotonic() - req.started
        for hook in self._req_finished:
            try:
                hook(req)
            except Exception:  # noqa: BLE001
                self._failed(hook, "request_finished")
