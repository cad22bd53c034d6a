"""Virtual keys across two `routeway serve` processes on one Redis (a server, and a Cluster): limits and
budgets hold for the fleet as a whole, and a revocation reaches every replica within 5 s.

Concurrency comes from threads with their own HTTP clients, spread evenly over the two replicas.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from redis.cluster import RedisCluster

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import CLIENT_KEY, default_policy, wait_serving
from tests.redis_cluster import SharedRedis

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "rw-admin-9c2f-replicas"
MSG = [{"role": "user", "content": "Say hello"}]
OUTPUT_PRICE = 1000.0  # USD per 1M output tokens; input is free, so a request costs its output only


@dataclass
class Fleet:
    roots: list[str]
    env: dict[str, str]
    shared: SharedRedis
    limits_prefix: str

    def admin(self, method: str, path: str, i: int = 0, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, self.roots[i] + path, headers=headers, timeout=10, **kw)

    def make_key(self, **spec: Any) -> dict[str, Any]:
        r = self.admin("POST", "/admin/keys", json={"name": "t", **spec})
        assert r.status_code == 201, r.text
        doc: dict[str, Any] = r.json()
        return doc

    def redis(self) -> redis.Redis | RedisCluster:
        if self.shared.cluster:
            return RedisCluster.from_url(self.shared.url())
        return redis.Redis.from_url(self.shared.url())

    def spend_nano(self, key_id: str) -> int:
        day = time.strftime("%Y%m%d", time.gmtime())
        with self.redis() as r:
            return int(r.get(f"{{{self.limits_prefix}:{key_id}}}:usd:d:{day}") or 0)


def policy(sims: SimThread) -> dict[str, Any]:
    """`chat` on one backend whose input is free, so a request's cost is its output tokens' alone."""
    doc = default_policy(sims)
    doc["backends"] = {"fast": doc["backends"]["fast"]}
    doc["backends"]["fast"]["models"] = {
        "chat": {"id": "up-fast", "input_price": 0, "output_price": OUTPUT_PRICE}
    }
    return doc


def serve(config: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=["single", "cluster"])
def fleet(
    request: pytest.FixtureRequest, sims: SimThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    if request.param == "cluster":
        shared = request.getfixturevalue("redis_cluster").shared()
    else:
        shared = SharedRedis((request.getfixturevalue("redis_url"),), cluster=False)
    work = tmp_path_factory.mktemp("tenancy")
    config = work / "policy.yaml"
    config.write_text(yaml.safe_dump(policy(sims), sort_keys=False))
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **shared.env(),
        "ROUTEWAY_API_KEYS": CLIENT_KEY,
        "ROUTEWAY_ADMIN_KEY": ADMIN_KEY,
        "ROUTEWAY_TELEMETRY_REDIS_PREFIX": f"test:tenancy:{tag}:telemetry",
        "ROUTEWAY_KEYS_REDIS_PREFIX": f"test:tenancy:{tag}:keys",
        "ROUTEWAY_LIMITS_REDIS_PREFIX": f"test:tenancy:{tag}:limits",
        "ROUTEWAY_REDIS_TIMEOUT_MS": "2000",  # a loaded test machine must not look like a Redis outage
        "ROUTEWAY_RELOAD_POLICIES": "false",
        "ROUTEWAY_ACCESS_LOG": "false",
    }
    ports = [free_port(), free_port()]
    procs = [serve(config, {**env, **shared.env(i)}, port) for i, port in enumerate(ports)]
    try:
        for proc, port in zip(procs, ports, strict=True):
            wait_serving(proc, port, timeout_s=60)
        yield Fleet([f"http://127.0.0.1:{p}" for p in ports], env, shared, f"test:tenancy:{tag}:limits")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def chat(root: str, key: str, max_tokens: int = 5, **extra: Any) -> httpx.Response:
    body = {"model": "chat", "messages": MSG, "max_tokens": max_tokens, **extra}
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(root + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def burst(fleet: Fleet, key: str, n: int, max_tokens: int = 5) -> list[httpx.Response]:
    """`n` requests at once (n threads released together), alternating between the two replicas."""
    gate = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        gate.wait(timeout=30)
        return chat(fleet.roots[i % 2], key, max_tokens)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def away_from_minute_end(margin_s: float = 15) -> None:
    """RPM/TPM windows are UTC minutes: a burst that straddles one would see two windows."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.1)


def test_rpm_admits_exactly_n_across_both_replicas(fleet: Fleet) -> None:
    key = fleet.make_key(rpm=10)["key"]
    away_from_minute_end()
    answers = burst(fleet, key, 30)
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-routeway-attempts"] == "0"


def test_budget_holds_under_64_way_concurrency_over_two_replicas(fleet: Fleet) -> None:
    max_tokens = 20
    reservation = max_tokens * OUTPUT_PRICE / 1e6  # the most one request may cost: $0.02
    budget = 10.5 * reservation
    key = fleet.make_key(daily_budget=budget)
    answers = burst(fleet, key["key"], 64, max_tokens)
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert ok and refused and len(ok) + len(refused) == 64, [r.status_code for r in answers]
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    assert all(int(r.headers["retry-after"]) > 0 for r in refused)  # until the next UTC day
    spent = sum(float(r.headers["x-routeway-cost-usd"]) for r in ok)
    assert spent <= budget + reservation
    # The shared counter agrees with the answers once every request is settled.
    deadline = time.monotonic() + 10
    while abs(fleet.spend_nano(key["id"]) / 1e9 - spent) > 1e-9 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fleet.spend_nano(key["id"]) / 1e9 == pytest.approx(spent, abs=1e-9)


def test_tpm_refuses_a_request_whose_tokens_do_not_fit(fleet: Fleet) -> None:
    # Each request reserves its prompt estimate (a few tokens) plus max_tokens=100.
    key = fleet.make_key(tpm=150)["key"]
    away_from_minute_end()
    assert chat(fleet.roots[0], key, max_tokens=100).status_code == 200
    refused = chat(fleet.roots[1], key, max_tokens=100)
    assert refused.status_code == 429 and "TPM" in refused.json()["error"]["message"]
    assert chat(fleet.roots[1], key, max_tokens=1).status_code == 200  # small enough for what is left


def test_revocation_reaches_every_replica_within_5_s(fleet: Fleet) -> None:
    doc = fleet.make_key(team="ops")
    for root in fleet.roots:
        assert chat(root, doc["key"]).status_code == 200  # both replicas have it cached now
    env = {**fleet.env, **fleet.shared.env()}
    revoke = [sys.executable, "-m", "gateway", "keys", "revoke", doc["id"]]
    done = subprocess.run(revoke, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    revoked_at = time.monotonic()
    pending = set(fleet.roots)
    while pending:
        assert time.monotonic() - revoked_at < 5, f"still served by {pending}"
        pending = {root for root in pending if chat(root, doc["key"]).status_code != 401}
        time.sleep(0.05)


def test_cli_creates_a_key_every_replica_accepts_and_the_plain_key_is_not_in_redis(fleet: Fleet) -> None:
    env = {**fleet.env, **fleet.shared.env()}
    create = [
        sys.executable,
        "-m",
        "gateway",
        "keys",
        "create",
        "--name",
        "cli",
        "--team",
        "t1",
        "--rpm",
        "100",
    ]
    done = subprocess.run(create, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    assert secret.startswith("rwk-")
    for root in fleet.roots:
        assert chat(root, secret).status_code == 200
    with fleet.redis() as r:
        stored = b"".join(_value(r, k) for k in r.scan_iter(match="*test:tenancy*"))
    assert stored and secret.encode() not in stored and secret[8:].encode() not in stored


def test_a_stream_is_billed_from_its_last_chunk(fleet: Fleet) -> None:
    doc = fleet.make_key(daily_budget=100)
    body = {"model": "chat", "messages": MSG, "max_tokens": 12, "stream": True}
    headers = {"authorization": f"Bearer {doc['key']}"}
    with httpx.stream(
        "POST", fleet.roots[0] + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert "[DONE]" in text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = httpx.get(fleet.roots[1] + "/v1/usage", headers=headers, timeout=5).json()
        if usage["total"]["requests"] == 1:
            break
        time.sleep(0.05)
    assert usage["total"]["requests"] == 1 and usage["total"]["output_tokens"] > 0
    expected = usage["total"]["output_tokens"] * OUTPUT_PRICE / 1e6
    assert usage["total"]["cost_usd"] == pytest.approx(expected)
    assert fleet.spend_nano(doc["id"]) / 1e9 == pytest.approx(expected)


def _value(r: redis.Redis | RedisCluster, key: bytes) -> bytes:
    """A key's name and whole value as bytes, whatever its type (the store uses strings and hashes)."""
    kind = r.type(key)
    if kind == b"hash":
        return key + b"".join(k + v for k, v in r.hgetall(key).items())
    assert kind == b"string", kind
    return key + (r.get(key) or b"")


class OwnRedis:
    """A redis-server of this test's own (it gets killed), with AOF so its counters survive a restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=0.5) as r:
                    if r.ping():
                        return
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_redis_killed_rate_limits_fail_open_budgets_fail_closed_nothing_double_charged(
    sims: SimThread, tmp_path: Path
) -> None:
    store = OwnRedis(tmp_path)
    store.start()
    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump(policy(sims), sort_keys=False))
    env = {
        **os.environ,
        "ROUTEWAY_REDIS_URL": store.url,
        "ROUTEWAY_API_KEYS": CLIENT_KEY,
        "ROUTEWAY_ADMIN_KEY": ADMIN_KEY,
        "ROUTEWAY_REDIS_TIMEOUT_MS": "300",
        "ROUTEWAY_KEY_CACHE_S": "1",
        "ROUTEWAY_RELOAD_POLICIES": "false",
        "ROUTEWAY_ACCESS_LOG": "false",
    }
    ports = [free_port(), free_port()]
    procs = [serve(config, env, port) for port in ports]
    try:
        for proc, port in zip(procs, ports, strict=True):
            wait_serving(proc, port, timeout_s=60)
        fleet = Fleet(
            [f"http://127.0.0.1:{p}" for p in ports],
            env,
            SharedRedis((store.url,), False),
            "routeway:limits:v1",
        )
        rated = fleet.make_key(rpm=1000)
        budgeted = fleet.make_key(daily_budget=100)
        costs = []
        for i in range(6):
            for doc in (rated, budgeted):
                r = chat(fleet.roots[i % 2], doc["key"])
                assert r.status_code == 200, r.text
                if doc is budgeted:
                    costs.append(float(r.headers["x-routeway-cost-usd"]))
        deadline = time.monotonic() + 10
        while (
            fleet.spend_nano(budgeted["id"]) / 1e9 != pytest.approx(sum(costs))
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        before = fleet.spend_nano(budgeted["id"])
        assert before / 1e9 == pytest.approx(sum(costs))

        store.kill()
        time.sleep(1.2)  # past the key cache: lookups now fail and the cached records keep serving
        for i in range(6):
            assert chat(fleet.roots[i % 2], rated["key"]).status_code == 200  # fail open (its share)
            refused = chat(fleet.roots[i % 2], budgeted["key"])
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "budget_unavailable"

        store.start()  # AOF: the counters come back as they were
        deadline = time.monotonic() + 15
        while (back := chat(fleet.roots[0], budgeted["key"])).status_code != 200:
            assert time.monotonic() < deadline, "budgets never came back with Redis"
            time.sleep(0.1)
        cost = float(back.headers["x-routeway-cost-usd"])
        deadline = time.monotonic() + 10
        while fleet.spend_nano(budgeted["id"]) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything charged twice would have landed by now
        # Exactly what was charged before the outage plus the one request since: nothing twice.
        assert fleet.spend_nano(budgeted["id"]) / 1e9 == pytest.approx(sum(costs) + cost, abs=1e-9)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if store.proc is not None and store.proc.poll() is None:
            store.kill()
