"""`routeway serve --workers 2` over real sockets: every /metrics scrape counts every worker's requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import BACKEND_KEY, default_policy

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def _requests_total(text: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "routeway_requests"
        for s in f.samples
        if s.name == "routeway_requests_total"
    )


def _sample(text: str, sample: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == sample)


def _worker_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(c) for c in children}


def _spread(base: str, n: int) -> None:
    """Sends n chat requests, each on a new connection so that both workers get some."""
    for _ in range(n):
        with httpx.Client(timeout=10) as c:
            r = c.post(f"{base}/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text


def _own_counts(metrics_dir: Path) -> dict[int, float]:
    """Requests each live worker counted itself, from its file."""
    counts = {}
    for path in metrics_dir.glob("worker-*.json"):
        rows = orjson.loads(path.read_bytes())["routeway_requests"]
        counts[int(path.stem[7:])] = sum(v for _, v in rows)
    return counts


def test_every_scrape_counts_every_worker(sims: SimThread, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(default_policy(sims)))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "worker-999999.json").write_text('{"routeway_requests": [[["x"], 5.0]]}')  # a stale run
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "ROUTEWAY_TEST_BACKEND_KEY": BACKEND_KEY,
        "ROUTEWAY_METRICS_DIR": str(metrics_dir),
        "ROUTEWAY_METRICS_SHARE_INTERVAL_S": "0.2",
        "ROUTEWAY_ACCESS_LOG": "false",
        "ROUTEWAY_RELOAD_POLICIES": "false",
    }
    cmd = [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--config", str(policy)], cwd=REPO, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        assert not (metrics_dir / "worker-999999.json").exists()  # the parent emptied the folder

        n = 60
        _spread(base, n)
        time.sleep(1.0)  # > the share interval: every worker has written its file
        own = _own_counts(metrics_dir)
        # Both workers served some: whichever answers a scrape, its own count alone is short of n.
        assert len(own) == 2 and sum(own.values()) == n and all(0 < v < n for v in own.values()), own
        for _ in range(12):  # new connections: scrapes land on either worker
            with httpx.Client(timeout=10) as c:
                text = c.get(f"{base}/metrics").text
            assert _requests_total(text) == n
            assert _sample(text, "routeway_request_duration_seconds_count") == n
            assert _sample(text, "routeway_upstream_attempts_total") == n
            assert _sample(text, "routeway_requests_in_flight") == 0

        # A worker killed: uvicorn starts another, the total keeps the dead one's requests.
        victim = min(_worker_pids(proc.pid) & set(own))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not (metrics_dir / "dead-workers.json").exists():
            with httpx.Client(timeout=10) as c:
                text = c.get(f"{base}/metrics").text
            assert _requests_total(text) >= n
            assert time.monotonic() < deadline, "the dead worker's file was never folded"
            time.sleep(0.2)
        _spread(base, 10)
        time.sleep(1.0)
        for _ in range(6):
            with httpx.Client(timeout=10) as c:
                assert _requests_total(c.get(f"{base}/metrics").text) == n + 10
        assert not (metrics_dir / f"worker-{victim}.json").exists()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
