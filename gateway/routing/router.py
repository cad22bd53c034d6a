"""The router: plans a request (route, ranked candidates) and drives its attempts through the transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import BadRequest, ContextLengthExceeded, GatewayError, RateLimited, ServiceUnavailable
from gateway.events import Observers, RequestRecord
from gateway.policy.model import Objective, Route
from gateway.providers.base import Adapter, Operation, Parsed, ProviderError, Target, Usage
from gateway.providers.credentials import authorize, authorize_now
from gateway.providers.stream import UpstreamStream
from gateway.resilience.attempt import Attempt
from gateway.resilience.budget import RetryBudget
from gateway.resilience.health import Health
from gateway.resilience.retry import AttemptLog, RetryPolicy, attempt
from gateway.routing.candidates import Catalog
from gateway.routing.preferences import Preferences
from gateway.routing.probes import Watch
from gateway.routing.scoring import Dropped, Estimate, Scored, failure_penalty, rank
from gateway.telemetry import MemoryStore, TelemetryStore
from gateway.upstream import Deadlines, Reply, Transport

if TYPE_CHECKING:
    from gateway.endpoints.spec import EndpointSpec

R = TypeVar("R")
SLO_HEDGE_MARGIN = 0.1  # of max_ttft_ms, kept for the gateway's own time and the backup's jitter...
SLO_HEDGE_MIN_MARGIN_MS = 25.0  # ...and at least this


@dataclass(slots=True)
class Plan:
    op: Operation
    route: Route
    objective: Objective
    estimate: Estimate
    ranked: list[Scored]
    dropped: list[Dropped]
    adapters: dict[str, Adapter]
    # Why ranked[0] leads: "best" (ranked on measured or declared speed), "probe" (promoted to renew its
    # numbers) or "unmeasured" (neither telemetry nor a declared speed: tried once on an optimistic guess).
    pick: str = "best"
    endpoint: EndpointSpec | None = None  # the client-facing operation planned for


@dataclass(slots=True)
class Completed:
    parsed: Parsed
    target: Target
    log: AttemptLog
    attempt: Attempt | None = None  # already finished: a hedge loser's answer needs nothing more


@dataclass(slots=True)
class OpenStream:
    """A stream that has produced its first event: from here on, no failover."""

    target: Target
    log: AttemptLog
    attempt: Attempt  # still open: the API layer ends it with end_stream (or close)
    reply: Reply
    upstream: UpstreamStream  # read on by the relay
    first: list[bytes]  # the canonical chunks read so far (at least one, unless the stream already ended)


class Router:
    def __init__(
        self,
        transport: Transport,
        observers: Observers | None = None,
        health: Health | None = None,
        store: TelemetryStore | None = None,
    ) -> None:
        self._transport = transport
        self.observers = observers or Observers()
        self.health = health
        self.store = store
        self.watch = Watch()
        if isinstance(store, MemoryStore):  # stuck attempts reach the other replicas with the telemetry
            store.stuck = self.watch.stuck_ms

    def plan(
        self,
        catalog: Catalog,
        endpoint: EndpointSpec,
        body: dict[str, Any],
        prefs: Preferences | None = None,
        req: RequestRecord | None = None,
        *,
        probe: bool = True,
    ) -> Plan:
        """The route and its candidates for the canonical `body`, best first. `probe=False` (explain) changes
        no state."""
        op = endpoint.operation
        route, targets = catalog.resolve(body["model"], endpoint)
        prefs = prefs or Preferences()
        chosen: Objective = prefs.objective or route.objective  # type: ignore[assignment]
        if req is not None:  # known before ranking, so even a fail-fast 429/503 is labelled by route
            req.route, req.objective = route.name, chosen
        est = endpoint.estimate(body, route)
        snap = self.store.snapshot() if self.store is not None else None
        explore = route.probe_interval_s > 0
        ranked, dropped = rank(
            targets,
            chosen,
            est,
            telemetry=snap,
            constraints=catalog.constraints(route, prefs),
            weights=route.weights,
            now=time.time(),
            waiting_ms=self.watch.waiting_ms(),
            loads=snap.loads if snap is not None else None,
            stuck_ms=self.watch.stuck_ms(),
            forgive_s=route.forgive_half_life_s if explore else None,
        )
        if not ranked:
            # Every backend breaks a speed constraint by what was measured: the least slow still serves.
            ranked = sorted((d.probe for d in dropped if d.probe is not None), key=lambda p: p.latency_ms)
        if not ranked:
            raise _nothing_eligible(body["model"], est, dropped)
        scored = ranked
        if self.health is not None:
            if probe:  # a transition, kept out of the queries below (explain changes nothing)
                self.health.sync()
            ranked = self._healthy(ranked, dropped)
        ordered = bool(prefs.order) or not prefs.allow_fallbacks
        if ordered:
            ranked = _apply_order(ranked, prefs)
        pick = "unmeasured" if ranked[0].ttft_ms is None else "best"
        if probe and explore and not ordered:
            hold = _sidelined_winner(ranked[0], scored, ranked)
            ranked, pick = self._explore(route, ranked, pick, hold=hold)
        return Plan(op, route, chosen, est, ranked, dropped, catalog.adapters, pick, endpoint)

    def _explore(
        self, route: Route, ranked: list[Scored], pick: str, *, hold: bool = False
    ) -> tuple[list[Scored], str]:
        """Exploration by expected gain, within the route's probe allowance. A candidate that leads only on
        an estimate forgiven with age (it was slow or failing, it is cheaper or was faster when well) is the
        probe with the most to gain: it goes first when the allowance has room, else behind the others.
        A backend whose breaker waits for its half-open trial, and would lead once well, gets it first.
        Otherwise, now and then, the candidate tried least recently gets one request (it could not win on
        what we know, so only at `probe_interval_s`). A candidate dropped for breaking the request's speed
        constraint is never probed while another may serve: its forgiven estimate must meet the constraint
        first, which is when it leads here. `hold`: a backend that would lead once well is out (its breaker
        or a cooldown): the allowance is kept for its trial, not spent on one that could not win."""
        allowed = self.watch.may_probe(route.name, route.probe_share, route.probe_interval_s)
        trial = self._trial(ranked) if allowed else None
        if trial is not None:  # a breaker's half-open trial: the cheapest way to learn it is well again
            self.watch.spend(route.name)
            return [trial, *(s for s in ranked if s is not trial)], "probe"
        if ranked[0].forgiven_lead:
            if allowed:
                self.watch.spend(route.name)
                return ranked, "probe"
            ranked = [*ranked[1:], ranked[0]]  # not now: where its unforgiven figures would put it, or near
            return ranked, "unmeasured" if ranked[0].ttft_ms is None else "best"
        if not allowed or hold:
            return ranked, pick
        others = [s for s in ranked[1:] if s.demoted is None]
        target = self.watch.pick_probe([s.target for s in others], route.probe_interval_s)
        if target is None:
            return ranked, pick
        self.watch.spend(route.name)
        chosen = next(s for s in others if s.target is target)
        return [chosen, *(s for s in ranked if s is not chosen)], "probe"

    def _trial(self, ranked: list[Scored]) -> Scored | None:
        """A candidate whose breaker waits for its half-open trial and that, once well, would lead: its
        score without the failure penalty beats the leader's."""
        health = self.health
        if health is None:
            return None
        lead = ranked[0].score
        for s in ranked[1:]:
            if (
                s.demoted is None
                and s.score / failure_penalty(s.failure_rate) < lead
                and health.trial_ready(s.target)
            ):
                return s
        return None

    def _healthy(self, ranked: list[Scored], dropped: list[Dropped]) -> list[Scored]:
        """Drops backends that are cooling down or whose circuit is open; fails fast when none is left."""
        assert self.health is not None
        kept: list[Scored] = []
        waits: list[tuple[float, bool]] = []
        for s in ranked:
            blocked = self.health.blocked(s.target)
            if blocked is None:
                kept.append(s)
            else:
                dropped.append(Dropped(s.target.backend, blocked[0]))
                waits.append((blocked[1], blocked[2]))
        if not kept:
            wait = min(w for w, _ in waits)
            if all(limited for _, limited in waits):
                raise RateLimited(f"Every backend is rate-limited; retry after {wait:.1f}s", retry_after=wait)
            raise ServiceUnavailable(
                "Every backend is unavailable (circuit open); " + "; ".join(d.reason for d in dropped[-3:]),
                headers={"retry-after": str(max(1, int(wait + 0.999)))},
            )
        return self.health.demote_slow_starters(kept, lambda s: s.target)

    def _attempt(
        self, plan: Plan, send: Callable[[Target], Awaitable[R]], log: AttemptLog, *, stream: bool
    ) -> Awaitable[tuple[R, Target]]:
        """The attempt loop's coroutine, returned rather than awaited here: one frame less to resume."""
        policy = RetryPolicy(plan.route.max_attempts, plan.route.timeouts.total_s)
        health = self.health
        targets = [s.target for s in plan.ranked]
        budget = health.budget if health is not None else None
        if plan.route.hedge.enabled and len(targets) > 1:
            send = self._hedged(plan, send, targets, stream)
        return attempt(targets, send, policy, log, gate=health, budget=budget)

    def _hedged(
        self, plan: Plan, send: Callable[[Target], Awaitable[R]], targets: list[Target], stream: bool
    ) -> Callable[[Target], Awaitable[R]]:
        """Wraps the first attempt: when its answer is late (`hedge_delay`), the next-best backend is asked
        too and the first success wins; the other is cancelled (its attempt ends 'cancelled', is not billed
        by us, and leaves a censored TTFT)."""
        first_call = True

        async def hedged(target: Target) -> R:
            nonlocal first_call
            backup = next((t for t in targets if t is not target and self._can_take(t)), None)
            delay = hedge_delay(plan, target, backup, stream=stream)
            if not first_call or backup is None or delay is None:
                return await send(target)
            first_call = False
            budget = self.health.budget if self.health else None
            return await race(send, target, backup, delay, budget, discard=_close_loser)

        return hedged

    def _can_take(self, target: Target) -> bool:
        return self.health is None or self.health.blocked(target) is None

    def _trial_cap(self, target: Target, expected: float | None, limit_s: float) -> float:
        """`limit_s`, shortened for a trial of a backend out for a hang (`Health.trial_deadline_s`)."""
        trial = self.health.trial_deadline_s(target, expected) if self.health is not None else None
        return limit_s if trial is None else min(limit_s, trial)

    async def complete(self, plan: Plan, body: dict[str, Any], req: RequestRecord) -> Completed:
        t = plan.route.timeouts
        log = AttemptLog()
        started = time.monotonic()

        async def send(target: Target) -> Completed:
            adapter = plan.adapters[target.adapter_key]
            upstream = adapter.build_request(plan.op, body, target)
            expected, well = expected_s(plan, target, stream=False)
            per_try = per_try_s(plan, expected, t.total_s - (time.monotonic() - started))
            per_try = self._trial_cap(target, well, per_try)
            deadlines = Deadlines(t.connect_s, per_try, t.idle_s, per_try)
            att = Attempt(req, target, upstream.headers, self.watch, self.observers, expected)
            try:
                if not authorize_now(upstream, target):  # signed last: observers' headers are in
                    upstream = await authorize(upstream, target)
                reply = await self._transport.send(upstream, deadlines)
                att.replied(reply)
                data = await reply.read()
                att.answered()
                if reply.status >= 300:
                    raise adapter.parse_error(reply.status, reply.headers, data, target)
                parsed = adapter.parse_response(plan.op, data, target)
            except BaseException as exc:
                att.failed(exc)
                raise
            att.succeeded(parsed.usage)
            # The winner names itself: with hedging it may be the backup.
            return Completed(parsed, target, log, att)

        done, _ = await self._attempt(plan, send, log, stream=False)
        return done

    async def open_stream(self, plan: Plan, body: dict[str, Any], req: RequestRecord) -> OpenStream:
        """Returns once the winning upstream produced its first event; its attempt stays open until the
        stream ends (the API layer finishes it)."""
        t = plan.route.timeouts
        deadlines = Deadlines(t.connect_s, t.first_token_s, t.idle_s, t.total_s)
        log = AttemptLog()
        opts = body.get("stream_options")
        show_usage = isinstance(opts, dict) and opts.get("include_usage") is True

        async def send(target: Target) -> OpenStream:
            adapter = plan.adapters[target.adapter_key]
            upstream = adapter.build_request(plan.op, body, target)
            expected, well = expected_s(plan, target, stream=True)
            first_s = self._trial_cap(target, well, t.first_token_s)
            att = Attempt(req, target, upstream.headers, self.watch, self.observers, expected)
            try:
                if not authorize_now(upstream, target):  # signed last: observers' headers are in
                    upstream = await authorize(upstream, target)
                limits = deadlines if first_s == t.first_token_s else replace(deadlines, first_byte_s=first_s)
                reply = await self._transport.send(upstream, limits)
                att.replied(reply)
                if reply.status >= 300:
                    raise adapter.parse_error(reply.status, reply.headers, await reply.read(), target)
                stream = UpstreamStream(
                    reply.chunks(),
                    adapter.stream_decoder(plan.op, target, max_event_bytes=reply.max_event_bytes),
                    adapter.stream_translator(plan.op, target, show_usage=show_usage),
                )
                opened = await _first_chunks(reply, stream, target, log, att, first_s)
            except BaseException as exc:
                att.failed(exc)  # also drops the connection
                raise
            att.answered()
            return opened

        opened, _ = await self._attempt(plan, send, log, stream=True)
        return opened


async def _first_chunks(
    reply: Reply, stream: UpstreamStream, target: Target, log: AttemptLog, att: Attempt, timeout_s: float
) -> OpenStream:
    """Reads until the upstream's first canonical chunk (or its clean end); until then a failure (a cut, a
    malformed or error event, a stream that ends unfinished) may still fail over."""
    try:
        async with asyncio.timeout(timeout_s):
            first = await stream.read()
            while not first and not stream.done:
                first = await stream.read()
    except TimeoutError:
        raise ProviderError("timeout", f"no first token within {timeout_s:g}s") from None
    return OpenStream(target, log, att, reply, stream, first)


def expected_s(plan: Plan, target: Target, *, stream: bool) -> tuple[float | None, float | None]:
    """How long `target` should take to its first byte for this request: its predicted TTFT for a stream,
    its predicted whole duration otherwise (the plan's figures: telemetry, the request's max_tokens); and
    the same from its last-good figures (what it takes once recovered). (None, None) if not planned."""
    for s in plan.ranked:
        if s.target is target:
            if stream:
                return s.expected_ttft_ms / 1000, s.well_ttft_ms / 1000
            return s.expected_ms / 1000, s.well_ms / 1000
    return None, None


def per_try_s(plan: Plan, expected: float | None, left_s: float) -> float:
    """A non-streaming attempt's deadline: `per_try_factor` x its predicted duration when the request bounds
    its output, never under first_token_s; at most half of total_s while another backend could take the
    retry, `per_try_s` when set, and what is left of the request's deadline."""
    t = plan.route.timeouts
    limit = t.total_s
    if t.per_try_factor is not None and expected is not None and plan.estimate.bounded:
        limit = max(t.first_token_s, t.per_try_factor * expected)
        if len(plan.ranked) > 1 and plan.route.max_attempts > 1:
            limit = min(limit, max(t.first_token_s, t.total_s / 2))
    if t.per_try_s is not None:
        limit = min(limit, t.per_try_s)
    return max(0.001, min(limit, left_s))


def _sidelined_winner(lead: Scored, scored: list[Scored], kept: list[Scored]) -> bool:
    """Whether a candidate its breaker or a cooldown keeps out of `kept` would lead once well: scored
    without its failure penalty, it beats the leader."""
    if len(kept) == len(scored):
        return False
    best = lead.score
    return any(s.score / failure_penalty(s.failure_rate) < best for s in scored if s not in kept)


def _nothing_eligible(model: str, est: Estimate, dropped: list[Dropped]) -> GatewayError:
    reasons = "; ".join(f"{d.backend}: {d.reason}" for d in dropped)
    if all("context window" in d.reason for d in dropped):
        return ContextLengthExceeded(
            f"The prompt (~{est.input_tokens} tokens) exceeds the context window of every backend",
            param="messages",
        )
    if all("rate limit" in d.reason for d in dropped):
        return RateLimited(f"Every backend is at its rate limit: {reasons}", retry_after=1.0)
    if all("the request's provider." in d.reason for d in dropped) and any(
        "provider.quantizations" in d.reason for d in dropped
    ):
        # The client's own filter leaves nothing (no retry helps): say which precision each backend serves.
        return BadRequest(
            f"No backend serves '{model[:200]}' at the requested quantizations: {reasons}",
            param="provider.quantizations",
        )
    return ServiceUnavailable(f"No backend meets the route's constraints: {reasons}")


def _apply_order(ranked: list[Scored], prefs: Preferences) -> list[Scored]:
    """OpenRouter semantics: `order` first, in its order; without fallbacks only the first candidate."""
    first = [s for name in prefs.order for s in ranked if s.target.backend == name]
    rest = [s for s in ranked if s not in first]
    ordered = first + rest
    if not prefs.allow_fallbacks:
        ordered = ordered[:1]
    if not ordered:
        raise ServiceUnavailable("None of the backends in provider.order can take the request")
    return ordered


def hedge_delay(plan: Plan, target: Target, backup: Target | None, *, stream: bool) -> float | None:
    """Seconds to wait before hedging `target`: the route's `after_ms`, else twice the backend's declared
    TTFT; for a stream on a route with `max_ttft_ms`, no later than the SLO deadline, the moment the backup
    must start to still answer within `max_ttft_ms` by its expected TTFT (less a margin). None: no hedge."""
    route = plan.route
    delay = route.hedge.after_ms / 1000 if route.hedge.after_ms is not None else None
    if delay is None and target.ttft_ms is not None:
        delay = target.ttft_ms * 2 / 1000
    if not stream or route.max_ttft_ms is None or backup is None:
        return delay
    backup_s, _ = expected_s(plan, backup, stream=True)
    if backup_s is None:
        return delay
    slo = slo_hedge_s(route.max_ttft_ms, backup_s)
    if slo is None:
        return delay
    return slo if delay is None else min(delay, slo)


def slo_hedge_s(max_ttft_ms: float, backup_ttft_s: float) -> float | None:
    """When a stream's backup must start to open within `max_ttft_ms`: the limit less the backup's expected
    TTFT and a margin (`SLO_HEDGE_MARGIN` of the limit, at least `SLO_HEDGE_MIN_MARGIN_MS`) for the
    gateway's own time and the backup's jitter. None when the backup could not make it either."""
    margin_ms = max(SLO_HEDGE_MIN_MARGIN_MS, SLO_HEDGE_MARGIN * max_ttft_ms)
    left_s = (max_ttft_ms - margin_ms) / 1000 - backup_ttft_s
    return left_s if left_s > 0 else None


async def race(
    send: Callable[[Target], Awaitable[R]],
    primary: Target,
    backup: Target,
    delay: float,
    budget: RetryBudget | None,
    discard: Callable[[R], None] | None = None,
) -> R:
    """Starts `primary`, adds `backup` after `delay` if still waiting (and the retry budget allows), returns
    the first success; raises the primary's error when both fail. Every success that is not returned (both
    answered in the same wake-up, or one finished while being cancelled) goes to `discard`, so no loser is
    left open; a cancelled caller (client gone) cancels both."""
    first = asyncio.ensure_future(send(primary))
    second: asyncio.Future[R] | None = None
    winner: asyncio.Future[R] | None = None
    try:
        early, _ = await asyncio.wait({first}, timeout=delay)
        if early or (budget is not None and not budget.try_spend()):
            winner = first
            return await first
        second = asyncio.ensure_future(send(backup))
        pending: set[asyncio.Future[R]] = {first, second}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in (first, second):  # the primary wins a tie: it was ranked first
                if task in done and _succeeded(task):
                    winner = task
                    return task.result()
        winner = first
        return await first  # both failed: re-raises the primary's error
    finally:
        await _settle([t for t in (first, second) if t is not None], winner, discard)


def _succeeded(task: asyncio.Future[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def _settle(
    tasks: list[asyncio.Future[R]], winner: asyncio.Future[R] | None, discard: Callable[[R], None] | None
) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if discard is not None and task is not winner and _succeeded(task):
            discard(task.result())


def _close_loser(result: object) -> None:
    """A hedge's answer nobody will use: a stream's connection is dropped and its attempt ended."""
    if isinstance(result, Completed | OpenStream) and result.attempt is not None:
        result.attempt.close()


def cost_usd(target: Target, usage: Usage | None) -> float | None:
    if usage is None:
        return None
    return (usage.input_tokens * target.input_price + usage.output_tokens * target.output_price) / 1e6
