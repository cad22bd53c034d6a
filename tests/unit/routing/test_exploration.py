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


@pytest.mark.parametrize(
    ("out", "first", "pick"),
    [
        (None, "b", "probe"),  # all well: a backend that could not win gets its probe once per interval
        ("c", "b", "probe"),  # the dearest is out: it could not win anyway, the probe goes on
        ("a", "b", "best"),  # the cheapest is out and would lead once well: the allowance waits for its trial
    ],
)
def test_probes_of_backends_that_could_not_win_wait_while_one_that_would_is_out(
    out: str | None, first: str, pick: str
) -> None:
    from gateway.policy.model import Resilience
    from gateway.resilience.cooldown import health_key
    from gateway.resilience.health import Health
    from gateway.routing.probes import Watch

    prices = (("a", 1.0), ("b", 2.0), ("c", 3.0))
    policy = Policy.model_validate(
        {
            "backends": {
                name: {
                    "provider": "openai",
                    "base_url": f"http://{name}",
                    "models": {
                        "m": {"id": f"up-{name}", "input_price": price, "output_price": price, "ttft_ms": 100}
                    },
                }
                for name, price in prices
            },
            "routes": [{"name": "r", "objective": "cheapest", "probe_share": 1.0, "probe_interval_s": 1}],
        }
    )
    catalog = build_catalog(policy, {})
    now = [0.0]
    health = Health(Resilience(), lambda: now[0])
    router = Router(MockTransport(lambda r: None), Observers(), health=health)
    router.watch = Watch(lambda: now[0])
    if out is not None:
        target = next(t for t in catalog.targets["m"] if t.backend == out)
        health.breakers.failure(health_key(target), hard=True)  # open for its cooldown
    now[0] += 1.0  # a probe interval since the gateway began
    plan = router.plan(catalog, CHAT, BODY)
    assert (plan.ranked[0].target.backend, plan.pick) == (first, pick)
