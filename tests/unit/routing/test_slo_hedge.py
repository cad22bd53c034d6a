"""The SLO hedge: on a route with `max_ttft_ms` and hedging enabled, a stream's backup starts when it can
still open within the limit (the limit less its expected TTFT and a margin), not later."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.policy.model import Policy
from gateway.providers.base import UpstreamRequest
from gateway.routing.candidates import Catalog, build_catalog
from gateway.routing.router import hedge_delay, slo_hedge_s
from tests.mock_transport import MockReply, backend_of, chunk_doc, sse
from tests.unit.routing.router_kit import Kit, body


def fleet(*, max_ttft_ms: float | None = 500, after_ms: float | None = None, hedge: bool = True) -> Catalog:
    """a: cheapest, declared TTFT 250 ms; b: dearer, declared 150 ms."""
    route: dict[str, Any] = {"name": "r", "objective": "cheapest", "probe_interval_s": 0}
    if max_ttft_ms is not None:
        route["max_ttft_ms"] = max_ttft_ms
    route["hedge"] = {"enabled": hedge} | ({"after_ms": after_ms} if after_ms is not None else {})
    backends = {
        name: {
            "provider": "openai",
            "base_url": f"http://{name}",
            "models": {
                "m": {"id": f"up-{name}", "input_price": price, "output_price": price, "ttft_ms": ttft}
            },
        }
        for name, price, ttft in (("a", 1, 250), ("b", 2, 150))
    }
    return build_catalog(Policy.model_validate({"backends": backends, "routes": [route]}), {})


@pytest.mark.parametrize(
    ("max_ttft_ms", "backup_s", "expected"),
    [
        (500, 0.15, 0.30),  # 500 - 50 (10%) - 150
        (1000, 0.2, 0.70),  # 1000 - 100 - 200
        (100, 0.05, 0.025),  # the margin's floor: 25 ms
        (500, 0.45, None),  # the backup could not make it either: no SLO hedge
        (500, 0.60, None),
    ],
)
def test_slo_hedge_starts_when_the_backup_can_still_make_it(
    max_ttft_ms: float, backup_s: float, expected: float | None
) -> None:
    got = slo_hedge_s(max_ttft_ms, backup_s)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("max_ttft_ms", "after_ms", "stream", "expected"),
    [
        (500, None, True, 0.30),  # the SLO deadline comes before twice a's declared TTFT (0.5 s)
        (500, None, False, 0.50),  # not a stream: the route's usual delay
        (None, None, True, 0.50),  # no max_ttft_ms: the usual delay
        (500, 200, True, 0.20),  # an earlier after_ms stands
        (500, 400, True, 0.30),  # a later one gives way to the SLO deadline
        (2000, None, True, 0.50),  # a loose limit leaves the usual delay
    ],
)
def test_hedge_delay(
    max_ttft_ms: float | None, after_ms: float | None, stream: bool, expected: float
) -> None:
    kit = Kit(lambda req: MockReply(200, {}), fleet(max_ttft_ms=max_ttft_ms, after_ms=after_ms))
    plan = kit.plan(body(stream))
    a, b = (s.target for s in plan.ranked)
    assert (a.backend, b.backend) == ("a", "b")
    assert hedge_delay(plan, a, b, stream=stream) == pytest.approx(expected)


def test_a_stream_late_for_its_slo_is_hedged_in_time_and_the_loser_cancelled() -> None:
    asked: dict[str, float] = {}

    async def handler(req: UpstreamRequest) -> MockReply:
        asked[backend_of(req)] = time.monotonic()
        await asyncio.sleep(2 if backend_of(req) == "a" else 0.01)
        return MockReply(200, steps=sse(chunk_doc("hi")))

    kit = Kit(handler, fleet())
    opened = asyncio.run(kit.router.open_stream(kit.plan(body(True)), body(True), kit.req))
    assert opened.target.backend == "b"
    assert 0.25 <= asked["b"] - asked["a"] < 0.45  # at the SLO deadline (0.3 s), not at 2x 250 ms
    opened.attempt.end_stream(True, None)
    assert dict(zip(kit.tried(), kit.outcomes(), strict=True))["a"] == "cancelled"
    assert kit.balanced()
