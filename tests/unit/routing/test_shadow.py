"""Shadow traffic below the integration level, on the in-memory transport: sampling with a seeded RNG, only
answered requests mirrored, the concurrency cap, the per-shadow timeout, the daily cap, streams timed and
discarded, and what each outcome reaches (telemetry and shadow metrics, never breakers or client series)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.endpoints import CHAT
from gateway.events import RequestRecord
from gateway.observability.metrics import Metrics
from gateway.policy.model import Policy, Resilience
from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.resilience.health import Health, health_key
from gateway.routing.candidates import Catalog, build_catalog
from gateway.routing.router import Router
from gateway.routing.shadow import Shadow
from gateway.routing.shadow_cap import CapUnavailable, LocalCap, Ticket
from gateway.telemetry import MemoryStore, TelemetryRecorder
from tests.mock_transport import HANG, MockReply, MockTransport, backend_of, chat_doc, chunk_doc, sse

MSG = [{"role": "user", "content": "hello"}]


def shadow_catalog(**shadow: Any) -> Catalog:
    """Route `r` serves `m` from backend a only; b and c (pricier) are its shadows."""
    config = {"backends": ["b", "c"], "sample": 1.0, "max_usd_per_day": 5.0, **shadow}
    policy = Policy.model_validate(
        {
            "backends": {
                name: {
                    "provider": "openai",
                    "base_url": f"http://{name}",
                    "models": {"m": {"id": f"up-{name}", "input_price": i + 1, "output_price": i + 1}},
                }
                for i, name in enumerate("abc")
            },
            "routes": [{"name": "r", "backends": ["a"], "probe_interval_s": 0, "shadow": config}],
        }
    )
    return build_catalog(policy, {})


def answer_all(req: UpstreamRequest) -> MockReply:
    return MockReply(200, chat_doc(usage=(1000, 500)))


class Rig:
    """A Shadow wired as the runtime wires it, plus the health it must not touch."""

    def __init__(
        self,
        handler: Callable[
            [UpstreamRequest], MockReply | ProviderError | Awaitable[MockReply | ProviderError]
        ],
        cat: Catalog | None = None,
        *,
        max_concurrent: int = 16,
        rng: Callable[[], float] = random.random,
        cap: LocalCap | None = None,
    ) -> None:
        self.catalog = cat or shadow_catalog()
        self.transport = MockTransport(handler)
        self.store = MemoryStore(window_every_s=0)
        self.health = Health(Resilience())
        self.metrics = Metrics()
        self.cap = cap or LocalCap()
        self.shadow = Shadow(
            self.transport,
            TelemetryRecorder(self.store),
            self.cap,
            health=self.health,
            metrics=self.metrics,
            max_concurrent=max_concurrent,
            rng=rng,
        )
        self.router = Router(self.transport)

    def request(self, stream: bool = False, status: int = 200, **extra: Any) -> RequestRecord:
        """Plans, considers and finishes one client request answered by `a` (nothing sent for it)."""
        body = {"model": "m", "messages": MSG, "stream": stream, **extra}
        req = RequestRecord("r1", "chat", "/v1/chat/completions", stream=stream)
        plan = self.router.plan(self.catalog, CHAT, body, req=req)
        self.shadow.consider(plan, body, req, self.catalog.targets["m"])
        req.status, req.backend, req.input_tokens, req.output_tokens = status, "a", 10, 5
        self.shadow.request_finished(req)
        return req

    async def settle(self) -> None:
        """Waits for every shadow in flight (bounded: a hanging one is cut by its own timeout)."""
        async with asyncio.timeout(10):
            while self.shadow.in_flight:
                await asyncio.sleep(0.005)

    def sent_to(self) -> list[str]:
        return sorted(backend_of(r) for r in self.transport.requests)

    def series(self, name: str) -> dict[tuple[str, ...], Any]:
        family = getattr(self.metrics, name)
        return dict(family.values)


def test_sampled_requests_match_a_replay_of_the_same_seeded_rng() -> None:
    async def run() -> Rig:
        cat = shadow_catalog(backends=["b"], sample=0.3)
        rig = Rig(answer_all, cat, rng=random.Random(42).random, max_concurrent=1000)
        for _ in range(200):
            rig.request()
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    replay = random.Random(42)
    expected = sum(replay.random() < 0.3 for _ in range(200))
    assert len(rig.transport.requests) == expected
    assert 40 <= expected <= 80  # the seed is not a degenerate one: ~60 of 200


def test_each_sampled_request_goes_to_every_shadow_backend_never_the_serving_one() -> None:
    cat = shadow_catalog(backends=["a", "b", "c"])

    async def run() -> Rig:
        rig = Rig(answer_all, cat)
        rig.request()
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert rig.sent_to() == ["b", "c"]  # a answered the client: mirroring it there teaches nothing
    assert all(b'"model":"up-' in r.body for r in rig.transport.requests)


def test_only_requests_answered_in_full_are_mirrored_and_only_once() -> None:
    async def run() -> Rig:
        rig = Rig(answer_all)
        rig.request(status=502)  # an error answer: nothing mirrored
        body = {"model": "m", "messages": MSG, "stream": True}
        cut = RequestRecord("r2", "chat", "/v1/chat/completions", stream=True)
        plan = rig.router.plan(rig.catalog, CHAT, body, req=cut)
        rig.shadow.consider(plan, body, cut, rig.catalog.targets["m"])
        cut.status, cut.backend, cut.error = 200, "a", "stream_interrupted"  # a stream cut after its start
        rig.shadow.request_finished(cut)
        none = RequestRecord("r3", "chat", "/v1/chat/completions")
        rig.shadow.consider(plan, body, none, [])
        assert not none.context  # no shadow backend serves the model: no job kept
        whole = rig.request()
        rig.shadow.request_finished(whole)  # a record finished twice is mirrored once
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert rig.sent_to() == ["b", "c"]


def test_a_streamed_shadow_is_timed_at_its_first_event_read_whole_and_fed_to_telemetry() -> None:
    def stream(req: UpstreamRequest) -> MockReply:
        return MockReply(200, steps=sse(chunk_doc("x"), chunk_doc("y"), chunk_doc(None, usage=(10, 2))))

    async def run() -> Rig:
        rig = Rig(stream, shadow_catalog(backends=["b"]))
        rig.request(stream=True)
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    reply = rig.transport.replies[0]
    assert reply.released and not reply.closed and reply.read_steps == len(reply.steps)
    assert b'"include_usage":true' in rig.transport.requests[0].body
    stats = rig.store.snapshot()[("b", "up-b")]
    assert stats.ttft_p50_s is not None and stats.samples > 0.5 and stats.failure_rate == 0
    assert stats.in_flight == 0
    assert rig.series("shadow_requests") == {("r", "b", "ok"): 1.0}
    assert ("b",) in rig.series("shadow_ttft")
    assert rig.series("shadow_cost") == {("r", "b"): (10 * 2 + 2 * 2) / 1e6}


def test_a_hanging_shadow_ends_at_its_timeout_as_telemetry_not_as_a_breaker() -> None:
    async def hang(req: UpstreamRequest) -> MockReply:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def run() -> Rig:
        rig = Rig(hang, shadow_catalog(backends=["b"], timeout_s=0.05))
        for _ in range(8):  # more than the breaker's 5 consecutive failures
            rig.request()
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert rig.series("shadow_requests") == {("r", "b", "timeout"): 8.0}
    assert rig.store.snapshot()[("b", "up-b")].failure_rate > 0.9  # scoring learns it
    assert rig.health.breakers.peek(health_key(rig.catalog.targets["m"][1]))[0] == "closed"


def test_a_failing_shadow_is_recorded_with_its_kind_and_costs_nothing() -> None:
    def fail(req: UpstreamRequest) -> MockReply:
        return MockReply(503, {"error": {"message": "overloaded"}})

    async def run() -> Rig:
        rig = Rig(fail, shadow_catalog(backends=["b"]))
        rig.request()
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert rig.series("shadow_requests") == {("r", "b", "server"): 1.0}
    assert rig.series("shadow_cost") == {}
    assert asyncio.run(rig.cap.spent("r")) == 0.0  # the reservation was given back
    assert rig.series("shadow_in_flight") == {(): 0.0}


def test_beyond_the_concurrency_cap_shadows_are_dropped_and_counted() -> None:
    def slow(req: UpstreamRequest) -> MockReply:
        return MockReply(200, steps=[HANG])

    async def run() -> Rig:
        rig = Rig(slow, shadow_catalog(backends=["b"], timeout_s=0.2), max_concurrent=3)
        for _ in range(5):
            rig.request()
        assert rig.shadow.in_flight == 3
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert len(rig.transport.requests) == 3
    assert rig.series("shadow_skipped") == {("r", "concurrency"): 2.0}


def test_the_daily_cap_stops_shadows_at_the_cap() -> None:
    # Each shadow on b costs (1000 + 500) * 2 / 1e6 = 0.003 USD; max_tokens=500 bounds the reservation.
    async def run() -> Rig:
        rig = Rig(answer_all, shadow_catalog(backends=["b"], max_usd_per_day=0.01))
        for _ in range(6):
            rig.request(max_tokens=500)
            await rig.settle()
        return rig

    rig = asyncio.run(run())
    spent = asyncio.run(rig.cap.spent("r"))
    assert len(rig.transport.requests) == 3 and abs(spent - 0.009) < 1e-9
    assert rig.series("shadow_skipped") == {("r", "daily_cap"): 3.0}


def test_a_backend_with_an_open_breaker_gets_no_shadow() -> None:
    async def run() -> Rig:
        rig = Rig(answer_all)
        rig.health.breakers.force_open(health_key(rig.catalog.targets["m"][1]), 60)
        rig.request()
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert rig.sent_to() == ["c"]
    assert rig.series("shadow_skipped") == {("r", "blocked"): 1.0}


def test_close_cancels_shadows_in_flight() -> None:
    def slow(req: UpstreamRequest) -> MockReply:
        return MockReply(200, steps=[HANG])

    async def run() -> Rig:
        rig = Rig(slow, shadow_catalog(backends=["b"]))
        rig.request()
        await asyncio.sleep(0.01)
        await rig.shadow.close()
        return rig

    rig = asyncio.run(run())
    assert rig.shadow.in_flight == 0
    assert rig.series("shadow_requests") == {("r", "b", "cancelled"): 1.0}
    assert rig.transport.replies[0].closed


class DownCap(LocalCap):
    """A shared cap whose Redis is gone, until `up` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    async def reserve(self, route: str, usd: float, cap_usd: float) -> Ticket | None:
        if not self.up:
            raise CapUnavailable("ConnectionError: refused")
        return await super().reserve(route, usd, cap_usd)


def test_an_unreachable_cap_sends_no_shadow_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="routeway.shadow")
    cap = DownCap()

    async def run() -> Rig:
        rig = Rig(answer_all, shadow_catalog(backends=["b"]), cap=cap)
        for _ in range(3):
            rig.request()
            await rig.settle()
        cap.up = True
        rig.request()
        await rig.settle()
        return rig

    rig = asyncio.run(run())
    assert rig.sent_to() == ["b"]  # only once the cap answered again
    assert rig.series("shadow_skipped") == {("r", "cap_unavailable"): 3.0}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("shadows paused" in m for m in messages) == 1
    assert sum("shadows resumed" in m for m in messages) == 1
