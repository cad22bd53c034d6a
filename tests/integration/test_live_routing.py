"""Routing on live telemetry through the real gateway: speed changes, constraints, headroom, preferences,
and two replicas sharing telemetry and breakers through a real redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]
FASTEST = {"x-routeway-objective": "fastest"}


def live_policy(sims: SimThread, **route: Any) -> dict[str, Any]:
    """`chat` on two backends with no declared speed: only telemetry tells them apart."""
    policy = default_policy(sims)
    for name in ("fast", "cheap"):
        policy["backends"][name]["models"]["chat"].pop("ttft_ms", None)
    policy["routes"][0].update(route)
    return policy


def backend_of(client: openai.OpenAI, headers: dict[str, str] | None = None, **extra: Any) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="chat",
        messages=MSG,  # type: ignore[arg-type]
        max_tokens=1,
        extra_headers=headers,
        **extra,
    )
    return raw.headers["x-routeway-backend"]


def explain(gw: GatewayThread, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"model": "chat", "messages": MSG, "max_tokens": 1}
    r = httpx.post(gw.base_url + "/route/explain", json=body, headers=headers or {}, timeout=5)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_fastest_follows_measured_speed_both_ways(sims: SimThread, tmp_path: Path) -> None:
    sims.control("fast", ttft_ms=5)
    sims.control("cheap", ttft_ms=40)
    policy = live_policy(sims, probe_interval_s=0.3)
    with GatewayThread(policy, tmp_path, reload_policies=False, telemetry_half_life_s=1.0) as gw:
        client = gw.client()
        first = Counter(backend_of(client, FASTEST) for _ in range(100))
        assert first["fast"] >= 90, first

        sims.control("fast", ttft_ms=150)
        moved = [backend_of(client, FASTEST) for _ in range(50)]
        assert Counter(moved[25:])["cheap"] > 12, moved

        sims.control("fast", ttft_ms=5)
        recent: list[str] = []
        deadline = time.monotonic() + 15
        while not (len(recent) >= 20 and Counter(recent[-20:])["fast"] >= 16):
            assert time.monotonic() < deadline, f"traffic did not come back: {Counter(recent[-40:])}"
            recent.append(backend_of(client, FASTEST))


def test_cheapest_that_meets_max_ttft(sims: SimThread, tmp_path: Path) -> None:
    sims.control("cheap", ttft_ms=150)
    with GatewayThread(
        live_policy(sims, max_ttft_ms=60, probe_interval_s=0), tmp_path, reload_policies=False
    ) as gw:
        client = gw.client()
        seen = [backend_of(client) for _ in range(10)]
        assert seen[0] == "cheap"  # nothing measured yet: the cheapest is tried
        assert set(seen[1:]) == {"fast"}, seen  # measured too slow: dropped by the constraint
        dropped = explain(gw)["dropped"]
        assert dropped and dropped[0]["backend"] == "cheap" and "max_ttft_ms" in dropped[0]["reason"]


def test_exhausted_headroom_stops_traffic_before_a_429(sims: SimThread, tmp_path: Path) -> None:
    sims.control("cheap", rpm_limit=5, rate_window_s=2)
    with GatewayThread(live_policy(sims, probe_interval_s=0), tmp_path, reload_policies=False) as gw:
        client = gw.client()
        seen = [backend_of(client) for _ in range(12)]
        assert seen[:5] == ["cheap"] * 5 and set(seen[5:]) == {"fast"}, seen
        assert "429" not in sims.stats("cheap")["status_counts"]
        time.sleep(2.3)  # the window resets
        assert backend_of(client) == "cheap"
    assert "429" not in sims.stats("cheap")["status_counts"]


def test_openrouter_provider_preferences(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(live_policy(sims, probe_interval_s=0), tmp_path, reload_policies=False) as gw:
        client = gw.client()
        assert backend_of(client) == "cheap"
        assert backend_of(client, extra_body={"provider": {"only": ["fast"]}}) == "fast"
        assert backend_of(client, extra_body={"provider": {"ignore": ["cheap"]}}) == "fast"
        assert backend_of(client, extra_body={"provider": {"order": ["fast", "cheap"]}}) == "fast"
        assert backend_of(client, extra_body={"provider": {"max_price": {"prompt": 1.0}}}) == "cheap"
        assert "provider" not in sims.stats("cheap")["last_body"]
        sims.control("fast", error_rate=1.0)
        with pytest.raises(openai.APIStatusError):
            backend_of(client, extra_body={"provider": {"order": ["fast"], "allow_fallbacks": False}})
        with pytest.raises(openai.BadRequestError):
            backend_of(client, extra_body={"provider": {"sort": "vibes"}})


def test_price_cap_that_excludes_everything_is_503(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(live_policy(sims), tmp_path, reload_policies=False) as gw:
        with pytest.raises(openai.APIStatusError) as info:
            backend_of(gw.client(), extra_body={"provider": {"max_price": {"prompt": 0.01}}})
        assert info.value.status_code == 503 and "input price" in info.value.message


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    """A redis-server this test can stop and start again on the same port."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (make test installs it)"
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop() -> None:
        procs[-1].kill()
        procs[-1].wait(timeout=10)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def teach(client: openai.OpenAI) -> None:
    """Sends a few requests to each backend so this replica measures both."""
    for name in ("fast", "cheap"):
        for _ in range(4):
            backend_of(client, FASTEST, extra_body={"provider": {"only": [name]}})


def leader(gw: GatewayThread) -> str:
    return str(explain(gw, FASTEST)["candidates"][0]["backend"])


def test_two_replicas_share_telemetry_and_survive_redis_outage(
    sims: SimThread, tmp_path: Path, own_redis: tuple[str, Any, Any]
) -> None:
    url, start_redis, stop_redis = own_redis
    policy = live_policy(sims, probe_interval_s=0)
    sims.control("fast", ttft_ms=5)
    sims.control("cheap", ttft_ms=80)
    with (
        GatewayThread(policy, tmp_path / "a", reload_policies=False, redis_url=url) as a,
        GatewayThread(policy, tmp_path / "b", reload_policies=False, redis_url=url) as b,
    ):
        assert leader(b) == "cheap"  # no data anywhere: a tie, broken by price
        teach(a.client())
        _wait_for(lambda: leader(b) == "fast", 3, "replica B never saw what A learned")

        stop_redis()
        for gw in (a, b):  # zero failed requests while Redis is down
            for _ in range(10):
                assert backend_of(gw.client(), FASTEST)
        start_redis()

        sims.control("fast", ttft_ms=80)
        sims.control("cheap", ttft_ms=5)
        time.sleep(1.5)  # the stores reconnect
        for _ in range(3):  # outweigh the earlier samples
            teach(a.client())
        _wait_for(lambda: leader(b) == "cheap", 6, "sharing did not resume after Redis came back")


def test_breaker_opened_on_one_replica_is_seen_by_the_other(
    sims: SimThread, tmp_path: Path, redis_url: str
) -> None:
    policy = live_policy(sims, probe_interval_s=0)
    policy["resilience"] = {"breaker": {"cooldown_s": 30}}
    sims.control("cheap", error_rate=1.0)
    with (
        GatewayThread(policy, tmp_path / "a", reload_policies=False, redis_url=redis_url,
                      telemetry_redis_prefix="rw-breaker-test") as a,
        GatewayThread(policy, tmp_path / "b", reload_policies=False, redis_url=redis_url,
                      telemetry_redis_prefix="rw-breaker-test") as b,
    ):  # fmt: skip
        for _ in range(5):
            with pytest.raises(openai.APIStatusError):
                backend_of(a.client(), extra_body={"provider": {"only": ["cheap"]}})
        opened = time.monotonic()

        def b_sees_it_open() -> bool:
            return any("circuit" in d["reason"] for d in explain(b)["dropped"] if d["backend"] == "cheap")

        _wait_for(b_sees_it_open, 1.0, "replica B did not see the open breaker within 1 s")
        assert time.monotonic() - opened < 1.0
