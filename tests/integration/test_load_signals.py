"""Self-hosted load signals over real sockets: the simulator's vLLM-style /metrics page, scraped by the
gateway in the background, moves traffic to a hosted backend before the local server's latency rises;
a scrape that fails never fails a request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sim import SimThread
from gateway.telemetry.loadsignals import parse_load
from tests.conftest import free_port
from tests.integration.conftest import GatewayThread, default_policy
from tests.integration.test_shadow import metric, wait_for

MSG = [{"role": "user", "content": "Say hello"}]


def metrics_url(sims: SimThread, name: str) -> str:
    return sims.urls[name].removesuffix("/v1") + "/metrics"


def explained(gw: GatewayThread) -> dict[str, dict[str, Any]]:
    doc = httpx.post(
        gw.base_url + "/route/explain", json={"model": "chat", "messages": MSG}, timeout=5
    ).json()
    return {c["backend"]: c for c in doc["candidates"]}


def served_by(gw: GatewayThread, n: int) -> list[str]:
    client = gw.client()
    return [
        client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=2).headers[
            "x-routeway-backend"
        ]
        for _ in range(n)
    ]


@pytest.fixture
def local_gateway(sims: SimThread, tmp_path: Path) -> Iterator[GatewayThread]:
    """`cheap` plays the self-hosted vLLM server (cheapest, so it serves while it has room); `fast` the
    hosted provider."""
    policy = default_policy(sims)
    policy["backends"]["cheap"].update(metrics_url=metrics_url(sims, "cheap"), metrics_interval_s=0.5)
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        yield gw


def test_a_saturated_local_server_loses_traffic_before_its_latency_rises(
    local_gateway: GatewayThread, sims: SimThread
) -> None:
    gw = local_gateway
    assert served_by(gw, 3) == ["cheap"] * 3
    wait_for(lambda: explained(gw)["cheap"]["load"] is not None, "a first scrape")
    calm = explained(gw)["cheap"]
    assert (
        calm["load"]["requests_waiting"] == 0 and calm["load"]["source"] == "vllm" and calm["demoted"] is None
    )

    sims.control(
        "cheap", force_waiting=6, force_kv_cache=0.97
    )  # its metrics say saturated; its speed does not
    wait_for(
        lambda: (explained(gw)["cheap"]["load"] or {}).get("requests_waiting") == 6, "the saturated scrape"
    )
    before = sims.stats("cheap")["total_requests"]
    assert served_by(gw, 10) == ["fast"] * 10
    assert sims.stats("cheap")["total_requests"] == before  # overflowed without trying the local server
    saturated = explained(gw)["cheap"]
    assert saturated["demoted"].startswith("saturated: 6 requests queued, KV cache 97%")
    assert saturated["ttft_ms"] < 200 and saturated["load"]["age_s"] < 3  # fast as before; fresh signals

    sims.control("cheap", force_waiting=None, force_kv_cache=None)
    wait_for(lambda: explained(gw)["cheap"]["demoted"] is None, "the drained scrape")
    assert served_by(gw, 3) == ["cheap"] * 3
    assert metric(gw, "routeway_load_scrapes_total", backend="cheap", outcome="ok") >= 3


@pytest.mark.parametrize("where", ["dead-port", "not-a-metrics-page"])
def test_failed_scrapes_never_fail_requests(sims: SimThread, tmp_path: Path, where: str) -> None:
    policy = default_policy(sims)
    url = (
        f"http://127.0.0.1:{free_port()}/metrics" if where == "dead-port" else sims.urls["cheap"] + "/models"
    )
    policy["backends"]["cheap"].update(metrics_url=url, metrics_interval_s=0.5)
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        wait_for(lambda: metric(gw, "routeway_load_scrapes_total", outcome="failed") >= 2, "failed scrapes")
        assert served_by(gw, 5) == ["cheap"] * 5
        assert explained(gw)["cheap"]["load"] is None and explained(gw)["cheap"]["demoted"] is None
        assert metric(gw, "routeway_load_scrapes_total", outcome="ok") == 0


def test_the_simulators_page_counts_its_real_in_flight_requests(sims: SimThread) -> None:
    sims.control("cheap", hang=True, max_running=1)
    page = metrics_url(sims, "cheap")
    body = {"model": "up-cheap", "messages": MSG, "max_tokens": 2}

    def hung_request() -> None:
        try:
            httpx.post(sims.urls["cheap"] + "/chat/completions", json=body, timeout=3)
        except httpx.TimeoutException:
            pass

    threads = [threading.Thread(target=hung_request) for _ in range(3)]
    for t in threads:
        t.start()

    def load() -> tuple[float | None, float | None, float | None]:
        signal = parse_load(httpx.get(page, timeout=5).text, 0.0)
        assert signal is not None
        return signal.waiting, signal.running, signal.kv_cache

    wait_for(lambda: load() == (2.0, 1.0, 1.0), "three requests in flight: one running, two waiting")
    for t in threads:
        t.join()
    assert load() == (0.0, 0.0, 0.0)


def test_a_reload_starts_and_stops_scraping(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        assert explained(gw)["cheap"]["load"] is None
        policy["backends"]["cheap"].update(metrics_url=metrics_url(sims, "cheap"), metrics_interval_s=0.5)
        gw.write_policy(policy)
        assert httpx.post(gw.root + "/admin/reload", timeout=10).status_code == 200
        sims.control("cheap", force_waiting=3)
        wait_for(lambda: (explained(gw)["cheap"]["load"] or {}).get("requests_waiting") == 3, "scraping")
        del policy["backends"]["cheap"]["metrics_url"]
        gw.write_policy(policy)
        assert httpx.post(gw.root + "/admin/reload", timeout=10).status_code == 200
        scraped = metric(gw, "routeway_load_scrapes_total", backend="cheap")
        wait_for(lambda: explained(gw)["cheap"]["load"] is None, "the last scrape to go stale")  # 3 intervals
        assert metric(gw, "routeway_load_scrapes_total", backend="cheap") == scraped
        assert served_by(gw, 2) == ["cheap"] * 2  # its old queue no longer demotes it
