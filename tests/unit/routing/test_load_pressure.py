"""Scoring with self-hosted load signals: queue depth and KV-cache pressure move traffic to hosted
backends before the local fleet's latency rises; stale or absent signals change nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.api.admin import candidate_json
from gateway.policy.model import Objective
from gateway.routing.scoring import Estimate, rank
from gateway.telemetry.loadsignals import LoadSignal
from tests.unit.targets import target

NOW = 1_733_000_000.0
# The local fleet is cheaper and, by its declared speed, as fast: it wins whenever it has room.
LOCAL = target(backend="local", input_price=0.1, output_price=0.1, ttft_ms=100, tokens_per_s=100)
HOSTED = target(backend="hosted", input_price=0.6, output_price=0.8, ttft_ms=150, tokens_per_s=100)
EST = Estimate(input_tokens=500, output_tokens=100)


def signal(
    waiting: float | None = 0, running: float | None = 8, kv: float | None = 0.3, age: float = 1.0
) -> LoadSignal:
    return LoadSignal(NOW - age, waiting, running, kv, None, "vllm", stale_after_s=15.0)


@pytest.mark.parametrize(
    ("load", "first", "demoted"),
    [
        (None, "local", None),
        (signal(), "local", None),
        (signal(kv=0.85), "local", None),  # past the knee: slower predicted, still has room
        (signal(waiting=1), "hosted", "saturated: 1 requests queued, KV cache 30% (1.0s ago)"),
        (signal(waiting=0, kv=0.97), "hosted", "saturated: 0 requests queued, KV cache 97% (1.0s ago)"),
        (signal(waiting=None, running=None, kv=None), "local", None),  # a page without these gauges
        (signal(waiting=40, age=16.0), "local", None),  # older than its staleness bound: ignored
    ],
    ids=["none", "idle", "kv-knee", "queue", "kv-full", "no-gauges", "stale"],
)
@pytest.mark.parametrize("objective", ["cheapest", "balanced", "greenest"])
def test_saturation_overflows_to_hosted(
    load: LoadSignal | None, first: str, demoted: str | None, objective: Objective
) -> None:
    loads = {"local": load} if load is not None else {}
    ranked, dropped = rank([LOCAL, HOSTED], objective, EST, now=NOW, loads=loads)
    assert ranked[0].target.backend == first and dropped == []
    local = next(s for s in ranked if s.target.backend == "local")
    assert local.demoted == demoted


def test_queue_and_kv_stretch_the_predicted_latency() -> None:
    calm = rank([LOCAL], "fastest", EST, now=NOW, loads={"local": signal()})[0][0]
    knee = rank([LOCAL], "fastest", EST, now=NOW, loads={"local": signal(kv=0.9)})[0][0]
    queued = rank([LOCAL], "fastest", EST, now=NOW, loads={"local": signal(waiting=4, running=8)})[0][0]
    assert knee.latency_ms == pytest.approx(calm.latency_ms * 1.5)
    assert queued.latency_ms == pytest.approx(calm.latency_ms * 1.5)


def test_under_fastest_a_nearly_full_cache_loses_to_a_slightly_slower_hosted_backend() -> None:
    ranked, _ = rank([LOCAL, HOSTED], "fastest", EST, now=NOW, loads={"local": signal(kv=0.9)})
    assert [s.target.backend for s in ranked] == ["hosted", "local"]


def test_loads_are_per_backend_and_other_backends_are_untouched() -> None:
    other = replace(LOCAL, backend="other-local")
    ranked, _ = rank([LOCAL, other, HOSTED], "cheapest", EST, now=NOW, loads={"local": signal(waiting=3)})
    assert [s.target.backend for s in ranked] == ["other-local", "hosted", "local"]


def test_explain_shows_the_signals_and_their_age() -> None:
    ranked, _ = rank([LOCAL, HOSTED], "cheapest", EST, now=NOW, loads={"local": signal(waiting=2, age=2.5)})
    shown = {c["backend"]: c for c in map(candidate_json, ranked)}
    assert shown["hosted"]["load"] is None
    assert shown["local"]["load"] == {
        "requests_waiting": 2,
        "requests_running": 8,
        "kv_cache_usage": 0.3,
        "max_running": None,
        "source": "vllm",
        "age_s": 2.5,
    }
    assert shown["local"]["demoted"].startswith("saturated: 2 requests queued")
