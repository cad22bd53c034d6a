"""TelemetryRecorder: the observer that feeds every finished attempt into the telemetry store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from gateway.events import AttemptRecord, Observer, RequestRecord
from gateway.resilience.cooldown import wait_s
from gateway.telemetry.headroom import Headroom
from gateway.telemetry.store import TelemetryStore
from gateway.telemetry.window import Sample

# Ended without a first byte and without a verdict from the backend (hedged away, client gone, our own
# deadline): its wait is a censored figure, "at least this long".
_CENSORED = frozenset({"cancelled", "timeout"})
_OPEN = "telemetry.in_flight"  # set in AttemptRecord.context while this attempt counts as in flight
_EARLY = "telemetry.early"  # set once the estimates learned this stream's first event (`first_byte`)


class TelemetryRecorder(Observer):
    """Counts attempts in flight and records each finished one; only sync, in-memory work (no I/O).

    Request events are left to Observer's no-ops, which `Observers` never calls."""

    __slots__ = ("_adapter_for", "_clock", "_store")

    def __init__(self, store: TelemetryStore, clock: Callable[[], float] = time.time) -> None:
        # Imported here: the registry's adapters import telemetry (their header parser).
        from gateway.providers.registry import adapter_for

        self._store = store
        self._clock = clock
        self._adapter_for = adapter_for

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        self._store.add_in_flight(att.target.key, 1)
        att.context[_OPEN] = True

    def attempt_answered(self, req: RequestRecord, att: AttemptRecord) -> None:
        """A stream's first event: its TTFT reaches the estimates now, not at the stream's end."""
        if req.stream and att.ttft_s is not None:
            self._store.first_byte(att.target.key, att.ttft_s)
            att.context[_EARLY] = True

    def attempt_finished(self, req: RequestRecord, att: AttemptRecord) -> None:
        t = att.target
        key = t.key
        # The adapter knows its provider's rate-limit headers (x-ratelimit-*, Bedrock's, Anthropic's...).
        headroom = self._adapter_for(t.provider, t.dialect).headroom(att.headers) if att.headers else None
        if att.retry_after is not None and (headroom is None or headroom.retry_after_s is None):
            headroom = replace(headroom or Headroom(), retry_after_s=att.retry_after)
        if headroom is not None and headroom.retry_after_s is not None:
            # What the upstream asked, bounded by the one rule Health's cooldowns also follow.
            wait = wait_s(headroom.retry_after_s)
            if wait != headroom.retry_after_s:
                headroom = replace(headroom, retry_after_s=wait)
        sample = Sample(
            outcome=att.outcome,
            # A buffered body's first byte is its last: only a stream's first event is a time to first token.
            ttft_s=att.ttft_s if req.stream else None,
            duration_s=att.duration_s,
            output_tokens=att.output_tokens,
            headroom=headroom,
            waited_s=att.duration_s if att.ttft_s is None and att.outcome in _CENSORED else None,
            stream=req.stream,
            early=att.context.pop(_EARLY, False),
        )
        # Recorded while still counted in flight, so AIMD sees the concurrency the outcome came from.
        self._store.record(key, sample)
        if att.context.pop(_OPEN, False):
            self._store.add_in_flight(key, -1)
