"""One try at one backend, owned from begin to close: finished once, its connection never left open."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from gateway.events import AttemptRecord, Observers, RequestRecord
from gateway.providers.base import ProviderError, Target, Usage
from gateway.upstream import Reply


class InFlight(Protocol):
    """The attempts still waiting for a first byte (implemented by routing.probes.Watch)."""

    def started(self, target: Target, token: int, expected_s: float | None = None) -> None: ...

    def answered(self, target: Target, token: int) -> None: ...


class Attempt:
    """begin (constructor) → replied → answered (first byte) → finish, whatever path ends it.

    Every way out goes through `_finish`, which runs once: the in-flight count is given back and the
    observers hear `attempt_finished` exactly once, even when a hedge loser, a failure and a client that went
    away all try to end the same attempt. `close` drops the upstream connection; it is always safe to call."""

    __slots__ = ("req", "record", "reply", "_inflight", "_observers", "_done")

    def __init__(
        self,
        req: RequestRecord,
        target: Target,
        headers: dict[str, str],
        inflight: InFlight,
        observers: Observers,
        expected_s: float | None = None,
    ) -> None:
        self.req = req
        self.record = AttemptRecord(target, len(req.attempts) + 1, expected_s=expected_s)
        self.reply: Reply | None = None
        self._inflight = inflight
        self._observers = observers
        self._done = False
        req.attempts.append(self.record)
        inflight.started(target, id(self.record), expected_s)  # past ~4x expected it counts as stuck
        observers.attempt_started(req, self.record, headers)

    @property
    def target(self) -> Target:
        return self.record.target

    @property
    def finished(self) -> bool:
        return self._done

    def replied(self, reply: Reply) -> None:
        """The response headers arrived; from here on `close` has a connection to drop. The observers hear
        `attempt_replied` (a breaker's trial may be judged by its status line)."""
        self.reply = reply
        rec = self.record
        rec.status, rec.headers = reply.status, reply.headers
        rec.replied_s = time.monotonic() - rec.started
        self._observers.attempt_replied(self.req, rec)

    def answered(self) -> None:
        """The first byte (non-stream) or first event (stream): it no longer counts as waiting, and the
        observers hear `attempt_answered` (once: a second call, or one after the end, changes nothing)."""
        rec = self.record
        if rec.ttft_s is not None or self._done:
            return
        rec.ttft_s = time.monotonic() - rec.started
        self._inflight.answered(rec.target, id(rec))
        self._observers.attempt_answered(self.req, rec)

    def succeeded(self, usage: Usage | None) -> None:
        """A whole answer was read (the connection went back to the pool with it)."""
        self.record.outcome = "ok"
        self._finish(usage)

    def failed(self, exc: BaseException) -> None:
        """Ends the attempt with what went wrong; a cancellation (hedge lost, client gone) is 'cancelled'."""
        rec = self.record
        if isinstance(exc, ProviderError):
            rec.outcome, rec.error, rec.retry_after = exc.kind, exc.message, exc.retry_after
            rec.status = exc.status or rec.status
        elif rec.outcome == "pending":
            rec.outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
        self.close()

    def close(self) -> None:
        """Drops the upstream connection and ends the attempt as 'cancelled' unless it already ended."""
        if self.reply is not None:
            self.reply.close()
        if not self._done:
            if self.record.outcome == "pending":
                self.record.outcome = "cancelled"
            self._finish(None)

    def end_stream(self, finished: bool, usage: Usage | None) -> None:
        """A stream that was relayed ends: cleanly (connection back to the pool) or cut (dropped)."""
        if self.reply is not None:
            if finished:
                self.reply.release()
            else:
                self.reply.close()
        self.record.partial = not finished
        self._finish(usage)

    def _finish(self, usage: Usage | None) -> None:
        if self._done:
            return
        self._done = True
        rec = self.record
        if rec.ttft_s is None:  # never answered: it stops counting as waiting now
            self._inflight.answered(rec.target, id(rec))
        if usage is not None:
            rec.input_tokens, rec.output_tokens = usage.input_tokens, usage.output_tokens
        self._observers.attempt_finished(self.req, rec)
