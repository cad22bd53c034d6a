"""Three `routeway serve` processes on one redis-server behave as one gateway, and lose one without a loss.

Each replica is a real process on its own loopback port, as pods behind a Service are; the client rotates
through them and, like a Service proxy, moves on to the next one when a connection is refused. Store-level
sharing is covered by test_telemetry_store.py; this file covers what only whole processes show: readiness,
routing on what another replica learned, breakers, and a replica killed under load.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import CLIENT_KEY, default_policy
from tests.redis_cluster import BOTH, SharedRedis

REPO = Path(__file__).resolve().parents[2]
MSG = [{"role": "user", "content": "Say hello"}]
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


class Replica:
    """`routeway serve` as a subprocess on a free port."""

    def __init__(self, config: Path, redis: SharedRedis | str, prefix: str, node: int = 0) -> None:
        self.port = free_port()
        if isinstance(redis, str):
            redis = SharedRedis((redis,), cluster=False)
        env = {
            **os.environ,
            "ROUTEWAY_API_KEYS": CLIENT_KEY,
            **redis.env(node),  # on a cluster, each replica starts from its own node
            "ROUTEWAY_TELEMETRY_REDIS_PREFIX": prefix,  # apart from other tests on the session's server
            "ROUTEWAY_RELOAD_POLICIES": "false",
            "ROUTEWAY_ACCESS_LOG": "false",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return httpx.get(self.root + "/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def replica_policy(sims: SimThread) -> dict[str, Any]:
    """`chat` on the cheap and the fast simulator; a breaker that opens after 3 failures and stays open."""
    policy = default_policy(sims)
    for name in ("fast", "cheap"):
        policy["backends"][name]["models"]["chat"].pop("ttft_ms", None)
    policy["resilience"] = {
        # The sims' 503s are fast failures, re-trialled every fast_cooldown_s by default: stay open here.
        "breaker": {
            "consecutive_failures": 3,
            "cooldown_s": 30,
            "max_cooldown_s": 30,
            "slow_start_s": 0,
            "fast_cooldown_s": 30,
        }
    }
    return policy


@pytest.fixture
def fleet(sims: SimThread, shared_redis: SharedRedis, tmp_path: Path) -> Iterator[list[Replica]]:
    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump(replica_policy(sims), sort_keys=False))
    prefix = f"test:replicas:{uuid.uuid4().hex[:8]}"
    replicas = [Replica(config, shared_redis, prefix, node=i) for i in range(3)]
    try:
        for r in replicas:
            wait_for(r.ready, 30, f"replica on port {r.port} never became ready")
        yield replicas
    finally:
        for r in replicas:
            r.stop()


def chat(
    root: str, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None, timeout: float = 10
) -> httpx.Response:
    body = {"model": "chat", "messages": MSG, "max_tokens": 1, **(extra or {})}
    return httpx.post(
        root + "/v1/chat/completions", json=body, headers={**AUTH, **(headers or {})}, timeout=timeout
    )


def served_by(root: str, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> str:
    r = chat(root, headers, extra)
    assert r.status_code == 200, r.text
    return r.headers["x-routeway-backend"]


def explain(root: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"model": "chat", "messages": MSG, "max_tokens": 1}
    r = httpx.post(root + "/v1/route/explain", json=body, headers={**AUTH, **(headers or {})}, timeout=5)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_readiness_waits_for_the_first_read_from_redis(sims: SimThread, tmp_path: Path) -> None:
    """Not ready (an OpenAI-shaped 503) until the shared telemetry is read; alive all along."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (make test installs it)"
    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump(replica_policy(sims)))
    port = free_port()
    replica = Replica(config, f"redis://127.0.0.1:{port}/0", "test:readiness")
    redis: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _answers(replica.root + "/healthz"), 30, "the replica never served /healthz")
        time.sleep(1.0)  # several failed reads of the absent Redis
        not_ready = httpx.get(replica.root + "/readyz", timeout=2)
        assert not_ready.status_code == 503
        error = not_ready.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and "Redis" in error["message"]
        assert error["code"] == "service_unavailable"
        assert httpx.get(replica.root + "/healthz", timeout=2).status_code == 200

        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
        redis = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(replica.ready, 10, "the replica did not become ready once Redis was up")
        assert httpx.get(replica.root + "/readyz", timeout=2).json()["status"] == "ready"
    finally:
        replica.stop()
        if redis is not None:
            redis.kill()
            redis.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@BOTH
def test_what_one_replica_learns_the_others_route_on(sims: SimThread, fleet: list[Replica]) -> None:
    a, b, c = fleet
    fastest = {"x-routeway-objective": "fastest"}
    sims.control("fast", ttft_ms=5)
    sims.control("cheap", ttft_ms=80)
    # Nothing measured yet: a tie everywhere, broken by price.
    assert [explain(r.root, fastest)["candidates"][0]["backend"] for r in fleet] == ["cheap"] * 3
    for name in ("fast", "cheap"):  # replica A alone measures both backends
        for _ in range(4):
            assert served_by(a.root, extra={"provider": {"only": [name]}}) == name
    for other in (b, c):
        wait_for(
            lambda r=other: explain(r.root, fastest)["candidates"][0]["backend"] == "fast",
            5,
            f"replica {other.port} never routed on what replica {a.port} measured",
        )
    # The gauge the HorizontalPodAutoscaler's custom metric reads (deploy/, docs/operations.md).
    assert "routeway_requests_in_flight" in httpx.get(b.root + "/metrics", timeout=5).text


@BOTH
def test_a_breaker_opened_by_one_replica_keeps_the_others_off_that_backend(
    sims: SimThread, fleet: list[Replica]
) -> None:
    a, b, c = fleet
    sims.control("cheap", error_rate=1.0, error_status=503)
    # Replica A alone meets the failures; each request still succeeds, on the fast backend.
    for _ in range(3):
        assert served_by(a.root) == "fast"
    dropped = lambda r: {d["backend"]: d["reason"] for d in explain(r.root)["dropped"]}  # noqa: E731
    assert "circuit open" in dropped(a).get("cheap", "")
    for other in (b, c):
        wait_for(lambda r=other: "cheap" in dropped(r), 5, f"replica {other.port} never saw A's breaker")
    before = sims.stats("cheap")["total_requests"]
    for other in (b, c):
        for _ in range(5):
            assert served_by(other.root) == "fast"
    # B and C never sent the failing backend a single request: the cooldown was shared, not relearned.
    assert sims.stats("cheap")["total_requests"] == before


class RoundRobin:
    """The client's view of a Service: rotate through the replicas, skip one that refuses the connection.

    A connection refused means the request never reached a replica, so it is safe to send elsewhere; an
    error after the request was sent is not retried (the replica may have acted on it) and is reported.
    """

    def __init__(self, roots: list[str]) -> None:
        self._roots = roots
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.refused = 0

    def post(self, http: httpx.Client) -> tuple[str, httpx.Response | Exception]:
        body = {"model": "chat", "messages": MSG, "max_tokens": 1}
        with self._lock:
            start = next(self._next)
        for i in range(len(self._roots)):
            root = self._roots[(start + i) % len(self._roots)]
            try:
                return root, http.post(root + "/v1/chat/completions", json=body, headers=AUTH, timeout=10)
            except httpx.ConnectError:
                with self._lock:
                    self.refused += 1
            except httpx.TransportError as exc:
                return root, exc
        raise AssertionError("every replica refused the connection")


def test_a_replica_killed_under_load_loses_no_request_that_had_not_reached_it(
    sims: SimThread, fleet: list[Replica]
) -> None:
    sims.control("cheap", ttft_ms=20)  # requests stay in flight long enough for the kill to catch some
    victim = fleet[2]
    front = RoundRobin([r.root for r in fleet])
    results: list[tuple[str, httpx.Response | Exception]] = []
    lock = threading.Lock()
    per_worker, workers = 40, 6
    started = threading.Barrier(workers + 1)

    def worker() -> None:
        with httpx.Client() as http:
            started.wait()
            for _ in range(per_worker):
                outcome = front.post(http)
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    started.wait()
    wait_for(lambda: len(results) >= per_worker * workers // 3, 30, "the load never got going")
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert len(results) == per_worker * workers
    failed = [(root, outcome) for root, outcome in results if not isinstance(outcome, httpx.Response)]
    statuses = {o.status_code for _, o in results if isinstance(o, httpx.Response)}
    print(
        f"{len(results)} requests, {len(failed)} lost in the killed one, {front.refused} refused and resent"
    )
    # Only requests the dead replica had already accepted may be lost: at most one per client in flight.
    assert all(root == victim.root for root, _ in failed), failed
    assert len(failed) <= workers
    assert statuses == {200}
    # The rest of the load went on: the kill was seen (refused connections) and the others served it.
    assert front.refused > 0
    for survivor in fleet[:2]:
        assert survivor.ready()


def test_sigterm_lets_a_stream_finish_while_new_requests_go_elsewhere(
    sims: SimThread, fleet: list[Replica]
) -> None:
    """What a rolling update does to a pod: SIGTERM mid-stream; the stream ends whole, the rest fails over."""
    sims.control("cheap", tokens_per_s=20)  # 30 tokens: a stream of about 1.5 s
    draining = fleet[0]
    body = {"model": "chat", "messages": MSG, "max_tokens": 30, "stream": True}
    lines: list[str] = []
    with httpx.stream(
        "POST", draining.root + "/v1/chat/completions", json=body, headers=AUTH, timeout=10
    ) as response:
        assert response.status_code == 200
        events = response.iter_lines()
        lines.append(next(line for line in events if line.startswith("data: ")))
        draining.proc.send_signal(signal.SIGTERM)
        # New connections are refused at once, so a client (or the Service) moves on to another replica.
        wait_for(lambda: not _answers(draining.root + "/healthz"), 5, "the draining replica kept accepting")
        front = RoundRobin([r.root for r in fleet])
        with httpx.Client() as http:
            root, answer = front.post(http)
        assert isinstance(answer, httpx.Response) and answer.status_code == 200 and root != draining.root
        lines.extend(line for line in events if line.startswith("data: "))
    assert lines[-1] == "data: [DONE]" and len(lines) > 3
    # uvicorn re-raises the captured SIGTERM once it has shut down, so the exit is "killed by SIGTERM".
    assert draining.proc.wait(timeout=10) in (0, -signal.SIGTERM)
