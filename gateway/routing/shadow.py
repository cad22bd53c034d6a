"""Shadow traffic: a sample of a route's answered requests mirrored to other backends, after the answer.

A route's `shadow: {backends, sample, max_usd_per_day, timeout_s}` (policy/model.py) turns it on. The relay
calls `consider` once the plan is known: one draw of the injected RNG, and for a sampled request a job kept
in the record's context (the parsed body, the shadow targets). `request_finished`, an observer hook, runs
once the answer is whole (a non-streaming body built, a stream's last chunk written) and only starts tasks:
nothing the client waits on ever awaits a shadow. Only a request answered in full (200, no error) is mirrored.

Each shadow is one attempt, the same shape as the client's (a stream is streamed, timed to its first event
and read to its end, then discarded; a whole answer is read and discarded); never retried, never hedged,
bounded by `timeout_s`. Its attempt is heard by the telemetry recorder only, so scoring learns the backend's
TTFT, tokens/s, latency, failures and headroom from real prompts. It is not heard by the breakers, the
retry budget, the router's probe watch, metrics of client requests, tracing or the access log: a shadow's
failure is telemetry about that backend (its failure rate, a Retry-After it sent), never a breaker opened
on client traffic's behalf and never an error any client sees. A backend whose breaker is open or that is
cooling down gets no shadow (counted as `blocked`). Beyond `max_concurrent` shadows in flight in this
process, new ones are dropped and counted; each reserves its predicted cost against the route's daily cap
first (shadow_cap.py) and settles with its real cost (router.cost_usd).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.events import AttemptRecord, Observer, Observers, RequestRecord
from gateway.observability.metrics import Metrics
from gateway.policy.model import Route
from gateway.providers.base import Adapter, Operation, ProviderError, Target, UpstreamRequest, Usage
from gateway.providers.credentials import authorize, authorize_now
from gateway.providers.stream import UpstreamStream
from gateway.resilience.attempt import Attempt
from gateway.resilience.health import Health
from gateway.routing.router import Plan, cost_usd
from gateway.routing.shadow_cap import CapUnavailable, DailyCap, Ticket
from gateway.upstream import Deadlines, Transport

_JOB = "shadow.job"  # RequestRecord.context key: the job a sampled request carries until it is answered
log = logging.getLogger("routeway.shadow")


@dataclass(slots=True)
class Job:
    """What mirroring one answered request needs: nothing from the client's answer but its usage."""

    op: Operation
    path: str
    route: Route
    body: dict[str, Any]
    stream: bool
    targets: list[Target]
    adapters: dict[str, Adapter]
    predicted_input: int
    predicted_output: int


class _Unwatched:
    """The router's probe watch is not told of shadows: they are no client request waiting on a backend."""

    def started(self, target: Target, token: int, expected_s: float | None = None) -> None:
        return None

    def answered(self, target: Target, token: int) -> None:
        return None


class Shadow(Observer):
    """Samples, launches and bounds shadow requests; one per process, in the Runtime."""

    def __init__(
        self,
        transport: Transport,
        telemetry: Observer | None,
        cap: DailyCap,
        *,
        health: Health | None = None,
        metrics: Metrics | None = None,
        max_concurrent: int = 16,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._transport = transport
        self._observers = Observers([telemetry] if telemetry is not None else [])
        self._cap = cap
        self._health = health
        self._metrics = metrics
        self.max_concurrent = max_concurrent
        self.rng = rng  # injectable: tests and benches seed it
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch = _Unwatched()
        self._cap_down = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def consider(self, plan: Plan, body: dict[str, Any], req: RequestRecord, targets: list[Target]) -> None:
        """At plan time: one draw; a sampled request keeps a job until it is answered. `targets` are the
        catalog's for the requested model (any backend, not only the route's)."""
        config = plan.route.shadow
        if config is None or self.rng() >= config.sample:
            return
        chosen = [t for t in targets if t.backend in config.backends]
        if not chosen:
            return
        est = plan.estimate
        req.context[_JOB] = Job(
            op=plan.op,
            path=req.path,
            route=plan.route,
            body=body,
            stream=body.get("stream") is True and plan.op != "embeddings",
            targets=chosen,
            adapters=plan.adapters,
            predicted_input=est.input_tokens,
            predicted_output=est.output_tokens,
        )

    def request_finished(self, req: RequestRecord) -> None:
        job: Job | None = req.context.pop(_JOB, None)
        if job is None or req.status != 200 or req.error is not None:
            return
        loop = asyncio.get_running_loop()
        for target in job.targets:
            if target.backend == req.backend:
                continue  # it served the request: its figures are already the client's
            if len(self._tasks) >= self.max_concurrent:
                self._skip(job, "concurrency")
                continue
            if self._health is not None and self._health.blocked(target) is not None:
                self._skip(job, "blocked")
                continue
            task = loop.create_task(self._run(job, target, _usage_hint(req)), name="shadow")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancels the shadows in flight (they are expendable) and lets go of the cap's connection."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._cap.close()

    async def spent_today(self, route: str) -> float | None:
        """Today's shadow spend on `route`; None when the shared cap cannot be read."""
        try:
            return await self._cap.spent(route)
        except CapUnavailable:
            return None

    def _skip(self, job: Job, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.shadow_skip(job.route.name, reason)

    async def _run(self, job: Job, target: Target, hint: Usage | None) -> None:
        try:
            await self._reserve_and_mirror(job, target, hint)
        except Exception as exc:  # noqa: BLE001 - a bug in a shadow is logged, never raised into the loop
            log.error("shadow failed", extra={"backend": target.backend, "exc_type": type(exc).__name__})

    async def _reserve_and_mirror(self, job: Job, target: Target, hint: Usage | None) -> None:
        config = job.route.shadow
        assert config is not None
        predicted = _predicted_usd(job, target, hint)
        try:
            ticket = await self._cap.reserve(job.route.name, predicted, config.max_usd_per_day)
        except CapUnavailable as exc:
            if not self._cap_down:  # one line per outage, not one per shadow
                self._cap_down = True
                log.warning("shadows paused: the daily cap cannot be checked (%s)", exc)
            self._skip(job, "cap_unavailable")
            return
        if self._cap_down:
            self._cap_down = False
            log.info("shadows resumed: the daily cap can be checked again")
        if ticket is None:
            self._skip(job, "daily_cap")
            return
        await self._mirror(job, target, ticket)

    async def _mirror(self, job: Job, target: Target, ticket: Ticket) -> None:
        """One attempt; its outcome goes to telemetry and the shadow metrics, its cost to the cap."""
        config = job.route.shadow
        assert config is not None
        rec = RequestRecord("shadow", job.op, job.path, stream=job.stream, route=job.route.name)
        rec.model = target.model
        adapter = job.adapters[target.adapter_key]
        upstream = adapter.build_request(job.op, job.body, target)
        if self._metrics is not None:
            self._metrics.shadow_started()
        att = Attempt(rec, target, upstream.headers, self._watch, self._observers)
        usage: Usage | None = None
        try:
            async with asyncio.timeout(config.timeout_s):
                if not authorize_now(upstream, target):
                    upstream = await authorize(upstream, target)
                usage = await self._exchange(job, adapter, upstream, att, config.timeout_s)
        except TimeoutError:
            att.failed(ProviderError("timeout", f"shadow not done within {config.timeout_s:g}s"))
        except ProviderError as err:
            att.failed(err)
        except Exception as exc:  # noqa: BLE001 - a shadow must never raise into the loop's handler
            att.failed(exc)
            log.error("shadow failed", extra={"backend": target.backend, "exc_type": type(exc).__name__})
        except BaseException as exc:  # cancelled (shutdown): the reservation stays counted as spent
            att.failed(exc)
            self._finished(job, att.record, None)
            raise
        # A failed shadow costs nothing at the gateway's pricing, as a failed client attempt does.
        spent = cost_usd(target, usage) if att.record.outcome == "ok" else None
        self._finished(job, att.record, spent)
        try:
            await self._cap.settle(ticket, spent or 0.0)
        except CapUnavailable:
            pass  # the reservation stays counted: the cap errs on the side of spending less

    def _finished(self, job: Job, rec: AttemptRecord, spent: float | None) -> None:
        if self._metrics is not None:
            self._metrics.shadow_finished(job.route.name, rec, job.stream, spent)

    async def _exchange(
        self, job: Job, adapter: Adapter, upstream: UpstreamRequest, att: Attempt, timeout_s: float
    ) -> Usage | None:
        target = att.target
        connect_s = job.route.timeouts.connect_s
        reply = await self._transport.send(upstream, Deadlines(connect_s, timeout_s, timeout_s, timeout_s))
        att.replied(reply)
        if not job.stream:
            data = await reply.read()
            att.answered()
            if reply.status >= 300:
                raise adapter.parse_error(reply.status, reply.headers, data, target)
            usage = adapter.parse_response(job.op, data, target).usage
            att.succeeded(usage)
            return usage
        if reply.status >= 300:
            raise adapter.parse_error(reply.status, reply.headers, await reply.read(), target)
        stream = UpstreamStream(
            reply.chunks(),
            adapter.stream_decoder(job.op, target, max_event_bytes=reply.max_event_bytes),
            adapter.stream_translator(job.op, target, show_usage=False),
        )
        while not stream.done:  # a stream that stops before its clean end raises ProviderError("protocol")
            chunks = await stream.read()  # read for the usage, then dropped
            if chunks and att.record.ttft_s is None:
                att.answered()  # the first chunk, as the router times a client's stream
        att.record.outcome = "ok"  # as the relay marks a client's stream that finished
        att.end_stream(True, stream.usage)
        return stream.usage


def _usage_hint(req: RequestRecord) -> Usage | None:
    """The client's answer's usage: the same prompt on another backend costs about the same."""
    if req.input_tokens is None or req.output_tokens is None:
        return None
    return Usage(req.input_tokens, req.output_tokens)


def _predicted_usd(job: Job, target: Target, hint: Usage | None) -> float:
    """What the shadow is reserved at: the client's `max_tokens` bound the output when given (the cap then
    holds exactly); otherwise the larger of the answer's real output and the route's estimate."""
    body = job.body
    bound = body.get("max_completion_tokens") or body.get("max_tokens")
    output = job.predicted_output
    if not isinstance(bound, int) and hint is not None:
        output = max(output, hint.output_tokens)
    input_tokens = max(job.predicted_input, hint.input_tokens if hint is not None else 0)
    return cost_usd(target, Usage(input_tokens, output)) or 0.0
