"""The router's exploration by expected gain, on a real MemoryStore whose samples are 5 s old: a backend
measured slow once leads again only as a probe, within the route's probe share."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.endpoints import CHAT
from gateway.events import Observers
from gateway.policy.model import Policy
from gateway.routing.candidates import build_catalog
from gateway.routing.router import Router
from gateway.telemetry import MemoryStore, Sample
from tests.mock_transport import MockTransport

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def router_and_catalog(**route: Any) -> tuple[Router, Any]:
    policy = Policy.model_validate(
        {
            "backends": {
                name: {
                    "provider": "openai",
                    "base_url": f"http://{name}",
                    "models": {"m": {"id": f"up-{name}", "input_price": price, "output_price": price}},
                }
                for name, price in (("a", 1.0), ("b", 2.0))
            },
            "routes": [{"name": "r", "objective": "cheapest", "max_ttft_ms": 500, **route}],
        }
    )
    store = MemoryStore(clock=lambda: time.time() - 5.0, max_age_s=0.0)  # every sample 5 s old
    store.record(("a", "up-a"), Sample("ok", ttft_s=0.25, stream=True))
    store.record(("a", "up-a"), Sample("ok", ttft_s=0.9, stream=True))  # then slow: over max_ttft_ms
    store.record(("b", "up-b"), Sample("ok", ttft_s=0.2, stream=True))
    return Router(MockTransport(lambda r: None), Observers(), store=store), build_catalog(policy, {})


@pytest.mark.parametrize(
    ("route", "first", "pick"),
    [
        ({"probe_share": 1.0}, "a", "probe"),  # forgiven to ~270 ms, cheaper: the probe with most to gain
        ({"probe_share": 0.0}, "b", "best"),  # no allowance now: behind the others, no probe
        ({"probe_interval_s": 0}, "b", "best"),  # exploration off: the 900 ms peak stands, a is dropped
    ],
)
def test_a_backend_measured_slow_leads_again_only_as_a_probe(
    route: dict[str, Any], first: str, pick: str
) -> None:
    router, catalog = router_and_catalog(**route)
    plan = router.plan(catalog, CHAT, BODY)
    assert (plan.ranked[0].target.backend, plan.pick) == (first, pick)


def test_explain_shows_the_forgiven_ranking_and_spends_nothing() -> None:
    router, catalog = router_and_catalog(probe_share=0.0)
    plan = router.plan(catalog, CHAT, BODY, probe=False)
    lead = plan.ranked[0]
    assert lead.target.backend == "a" and lead.forgiven_lead and lead.age_s == pytest.approx(5.0, abs=1.0)
    assert plan.pick == "best"  # explain plans without probing
