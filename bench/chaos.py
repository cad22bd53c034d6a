"""Resilience benchmark: 10,000 requests at a steady rate through Routeway while its backends misbehave.

Three simulated backends; during the run one throws random 5xx, one has a 429 storm, one is killed and
restarted, and one cuts streams mid-way. Prints the success rate, attempts per request, traffic sent to the
dead backend, and the p99 latency added over a fault-free warm-up. Run: `.venv/bin/python -m bench.chaos`
(CHAOS_REQUESTS=2000 for a quick run). Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.procs import free_port, wait_port
from gateway.sim import Profile, SimThread

REPO = Path(__file__).resolve().parents[1]
MSG = [{"role": "user", "content": "hello there"}]


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)


def profiles() -> list[Profile]:
    common: dict[str, Any] = {"ttft_ms": 5, "tokens_per_s": 5000}
    return [
        Profile(name="a", hardware="nvidia-h100", models=["m-a"], **common),
        Profile(name="b", hardware="groq-lpu", models=["m-b"], **common),
        Profile(name="c", hardware="aws-inferentia2", models=["m-c"], **common),
    ]


def policy(ports: dict[str, int]) -> dict[str, Any]:
    prices = {"a": 0.5, "b": 0.6, "c": 0.4}
    backends = {
        name: {
            "provider": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "models": {
                "chat": {"id": f"m-{name}", "input_price": prices[name], "output_price": prices[name]}
            },
        }
        for name, port in ports.items()
    }
    route = {
        "name": "default",
        "objective": "cheapest",
        "timeouts": {"connect_s": 0.5, "first_token_s": 2, "idle_s": 2, "total_s": 10},
    }
    return {"backends": backends, "routes": [route]}


async def one(session: aiohttp.ClientSession, url: str, stream: bool, tally: Tally) -> None:
    body = {"model": "chat", "messages": MSG, "max_tokens": 8, "stream": stream}
    started = time.perf_counter()
    try:
        async with session.post(url, json=body) as r:
            data = await r.read()
            good = r.status == 200 and (not stream or data.rstrip().endswith(b"data: [DONE]"))
            tally.attempts += int(r.headers.get("x-routeway-attempts", "0"))
            key = str(r.status) if not stream or good else "stream-error"
    except aiohttp.ClientError as exc:
        good, key = False, type(exc).__name__
    tally.latencies.append(time.perf_counter() - started)
    tally.statuses[key] = tally.statuses.get(key, 0) + 1
    if good:
        tally.ok += 1
    else:
        tally.failed += 1


async def drive(url: str, n: int, rate: float, tally: Tally, on_progress: Any = None) -> None:
    """Open loop at a fixed rate; every 20th request streams."""
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if on_progress is not None:
                on_progress(i / n)
            tasks.append(asyncio.create_task(one(session, url, i % 20 == 0, tally)))
        await asyncio.gather(*tasks)


def dead_attempts(metrics_url: str) -> float:
    """Attempts the gateway sent to backend c that failed to connect, from its Prometheus counters."""
    text = httpx.get(metrics_url, timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "routeway_upstream_attempts_total" and labels.get("backend") == "c":
                if labels.get("outcome") in ("connect", "timeout"):
                    total += sample.value
    return total


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values, default=0.0)


class Chaos:
    """Applies the fault schedule as the run progresses (fractions of the run)."""

    def __init__(self, sims: dict[str, SimThread], ports: dict[str, int], metrics_url: str) -> None:
        self.sims, self.ports, self.done = sims, ports, set[str]()
        self.metrics_url = metrics_url
        self.attempts_at_kill = 0.0
        self.attempts_during_outage = 0.0

    def __call__(self, progress: float) -> None:
        steps = [
            (0.0, "5xx", lambda: self.sims["a"].control("a", error_rate=0.05)),
            (0.2, "429 storm", lambda: self.sims["c"].control("c", rate_limit_rate=0.8, retry_after_s=1)),
            (0.4, "429 storm over", lambda: self.sims["c"].control("c", rate_limit_rate=0.0)),
            (0.45, "kill c", self.kill),
            (0.6, "cuts on b", lambda: self.sims["b"].control("b", cut_after_tokens=3)),
            (0.65, "cuts over", lambda: self.sims["b"].control("b", cut_after_tokens=None)),
            (0.7, "restart c", self.restart),
        ]
        for at, name, action in steps:
            if progress >= at and name not in self.done:
                self.done.add(name)
                action()

    def kill(self) -> None:
        self.sims["c"].stop()
        self.attempts_at_kill = dead_attempts(self.metrics_url)

    def restart(self) -> None:
        self.attempts_during_outage = dead_attempts(self.metrics_url) - self.attempts_at_kill
        self.sims["c"] = SimThread(profiles()[2], ports=[self.ports["c"]]).start()


def main() -> None:
    n = int(os.environ.get("CHAOS_REQUESTS", "10000"))
    rate = float(os.environ.get("CHAOS_RATE", "400"))
    sims = {p.name: SimThread(p).start() for p in profiles()}
    ports = {name: s.ports[name] for name, s in sims.items()}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chaos.yaml"
        path.write_text(yaml.safe_dump(policy(ports)))
        env = {**os.environ, "ROUTEWAY_ACCESS_LOG": "false", "ROUTEWAY_RELOAD_POLICIES": "false"}
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)]
        gw = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            base = Tally()
            asyncio.run(drive(url, max(500, n // 10), rate, base))
            for name, sim in sims.items():
                sim.reset(name)
            chaos = Chaos(sims, ports, f"http://127.0.0.1:{port}/metrics")
            run = Tally()
            asyncio.run(drive(url, n, rate, run, chaos))
            report(n, rate, base, run, sims, chaos)
        finally:
            gw.terminate()
            gw.wait(timeout=10)
            for sim in sims.values():
                sim.stop()


def report(n: int, rate: float, base: Tally, run: Tally, sims: dict[str, SimThread], chaos: Chaos) -> None:
    c_arrivals = sims["c"].stats("c")["arrivals"]  # the restarted c: only post-restart arrivals
    print(
        f"chaos bench: {n} requests at {rate:.0f}/s, 3 backends (5xx, 429 storm, kill+restart, stream cuts)"
    )
    print(f"  success rate            {run.ok / n:.4%}   (target >= 99.9%)")
    print(f"  attempts per request    {run.attempts / n:.3f}   (target <= 1.2)")
    print(f"  statuses                {dict(sorted(run.statuses.items()))}")
    warm = p99(base.latencies) * 1000
    print(f"  p99 latency             {p99(run.latencies) * 1000:.1f} ms (fault-free warm-up {warm:.1f} ms)")
    print(f"  added p99               {(p99(run.latencies) - p99(base.latencies)) * 1000:.1f} ms")
    outage = chaos.attempts_during_outage
    print(f"  attempts sent to c while it was down: {outage:.0f} (5 open its breaker; the rest are half-open")
    print("  trials, one per cool-down; every other request skipped c)")
    print(f"  requests to c after its restart: {len(c_arrivals)}")


if __name__ == "__main__":
    main()
