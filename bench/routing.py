"""Routing-quality benchmark: Routeway's routing next to an oracle and round-robin while backends change.

Four simulated backends serve one logical model at different prices and speeds; a scripted schedule changes
them during each run (the cheapest gets slow, the next cheapest hits its rate limit, the fastest goes down and
comes back, the slow one recovers, the fastest gets slow). The same schedule replays for Routeway (`cheapest`
with `max_ttft_ms`, and `fastest`), an oracle that knows the true current state and round-robin. Requests
stream with `include_usage`, so TTFT, latency and cost (usage x the serving backend's prices) are measured
by the client. Results go to stdout and to docs/benchmarks.md between the routing-quality markers.

Run: `.venv/bin/python -m bench.routing` (~2.5 min) or `BENCH_QUICK=1 .venv/bin/python -m bench.routing`
(~30 s smoke run). Knobs: BENCH_RATE (req/s), BENCH_DURATION_S (per run), BENCH_HALF_LIFE_S (the gateway's
ROUTEWAY_TELEMETRY_HALF_LIFE_S; default duration/15, since the phases are compressed the same way),
BENCH_PROBE_S (route probe_interval_s, default twice the half-life), BENCH_HEDGE_MS (route hedging, off
by default), BENCH_DOCS=0 (stdout only). Loopback only.

Issue 14's scenarios (a TTFT step across max_ttft_ms, a 10x slow-down under a rate-limit storm, a fast
failure, a hang; LiteLLM's latency router beside the oracle and round-robin) extend this benchmark in
bench/scenarios.py, which drives the same simulators through this module's stream reader and percentiles:
`.venv/bin/python -m bench.scenarios`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import yaml

from bench.procs import free_port, wait_port

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, NOTES, END = (f"<!-- routing-quality:{m} -->" for m in ("start", "notes", "end"))
MSG = [{"role": "user", "content": "Summarise the routing benchmark in one short sentence, please."}]
MAX_TOKENS = 16
MAX_TTFT_MS = 400.0


@dataclass(frozen=True)
class Spec:
    name: str
    hardware: str
    input_price: float  # USD per 1M tokens
    output_price: float
    ttft_ms: float
    tokens_per_s: float


FLEET = [  # fastest and dearest first
    Spec("lpu", "groq-lpu", 0.60, 0.80, 40, 500),
    Spec("h100", "nvidia-h100", 0.40, 0.60, 90, 250),
    Spec("tpu", "google-tpu-v5e", 0.25, 0.40, 150, 150),
    Spec("inf2", "aws-inferentia2", 0.15, 0.25, 220, 100),
]
SPECS = {s.name: s for s in FLEET}


@dataclass(frozen=True)
class Config:
    quick: bool
    rate: float
    duration_s: float
    half_life_s: float
    probe_s: float
    hedge_ms: float

    @property
    def window_s(self) -> float:  # the rate-limit window, scaled with the run like the phases are
        return max(0.5, self.duration_s / 15)


def schedule(cfg: Config) -> list[tuple[float, str, str, dict[str, Any]]]:
    """(fraction of the run, backend, what happens, sim knobs): the same for every strategy."""
    rpm = max(2, int(0.15 * cfg.rate * cfg.window_s))  # about 15% of the offered load
    limited = {"rpm_limit": rpm, "rate_window_s": cfg.window_s}
    return [
        (0.15, "inf2", "inf2 slow (TTFT x10)", {"ttft_ms": 2200}),
        (0.30, "tpu", f"tpu rate-limited ({rpm} per {cfg.window_s:g}s)", limited),
        (0.45, "lpu", "lpu down (connection reset)", {"reset": True}),
        (0.60, "lpu", "lpu back", {"reset": False}),
        (0.75, "inf2", "inf2 fast again", {"ttft_ms": 220}),
        (0.75, "tpu", "tpu limit lifted", {"rpm_limit": 0}),
        (0.85, "lpu", "lpu slow (TTFT x10)", {"ttft_ms": 400}),
    ]  # fmt: skip


class Truth:
    """What the oracle knows: every backend's current knobs, and its own sends within each rate window."""

    def __init__(self) -> None:
        self.ttft = {s.name: s.ttft_ms for s in FLEET}
        self.down: set[str] = set()
        self.limit: dict[str, tuple[int, float]] = {}
        self.sent: dict[str, deque[float]] = {s.name: deque() for s in FLEET}

    def apply(self, name: str, knobs: dict[str, Any]) -> None:
        self.ttft[name] = knobs.get("ttft_ms", self.ttft[name])
        if "reset" in knobs:
            (self.down.add if knobs["reset"] else self.down.discard)(name)
        if knobs.get("rpm_limit"):
            self.limit[name] = (knobs["rpm_limit"], knobs["rate_window_s"])
        elif "rpm_limit" in knobs:
            self.limit.pop(name, None)

    def available(self, name: str, now: float) -> bool:
        if name in self.down:
            return False
        if name not in self.limit:
            return True
        limit, window = self.limit[name]
        sent = self.sent[name]
        while sent and now - sent[0] > window + 0.1:  # a margin for the sim's slightly later clock
            sent.popleft()
        return len(sent) < limit

    def latency_ms(self, name: str) -> float:
        return self.ttft[name] + MAX_TOKENS / SPECS[name].tokens_per_s * 1000

    def too_slow(self, name: str) -> bool:
        return self.ttft[name] > MAX_TTFT_MS

    def order(self, objective: str, now: float) -> list[str]:
        up = [s.name for s in FLEET if self.available(s.name, now)]
        if objective == "fastest":
            return sorted(up, key=self.latency_ms)
        return sorted(up, key=lambda n: (self.too_slow(n), price(n, 1, MAX_TOKENS)))


@dataclass
class Result:
    at: float  # fraction of the run when sent
    ok: bool = False
    backend: str = ""
    started: float = 0.0
    ttft_s: float | None = None
    total_s: float = 0.0
    cost: float = 0.0


@dataclass
class Run:
    strategy: str
    objective: str
    results: list[Result] = field(default_factory=list)


def price(name: str, prompt_tokens: int, output_tokens: int) -> float:
    spec = SPECS[name]
    return (prompt_tokens * spec.input_price + output_tokens * spec.output_price) / 1e6


class Timed(Protocol):
    ttft_s: float | None


async def read_stream(
    content: aiohttp.StreamReader, res: Timed, started: float
) -> tuple[dict[str, int] | None, bool]:
    """Reads an OpenAI stream to its end: the last usage seen, and whether `[DONE]` came. `res.ttft_s` is
    set at the first content delta, so a caller that catches a cut stream still knows a byte arrived."""
    usage: dict[str, int] | None = None
    async for line in content:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            return usage, True
        event = orjson.loads(data)
        if res.ttft_s is None and any((c.get("delta") or {}).get("content") for c in event["choices"]):
            res.ttft_s = time.perf_counter() - started
        usage = event.get("usage") or usage
    return usage, False


async def stream_once(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str], res: Result
) -> bool:
    """One streamed attempt; False when it failed before the first byte (a failover may follow)."""
    try:
        async with session.post(url, json=body, headers=headers) as r:
            if r.status != 200:
                await r.read()
                return False
            res.backend = r.headers.get("x-routeway-backend", res.backend)
            usage, done = await read_stream(r.content, res, res.started)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return res.ttft_s is not None  # a failure after the first byte is final
    res.total_s = time.perf_counter() - res.started
    if done and usage is not None and res.backend in SPECS:
        res.ok = True
        res.cost = price(res.backend, usage["prompt_tokens"], usage["completion_tokens"])
    return True


async def request(
    session: aiohttp.ClientSession, targets: list[tuple[str, str, str]], headers: dict[str, str], res: Result
) -> None:
    """Tries `targets` (backend, url, model) in order, moving on only while nothing has been received."""
    res.started = time.perf_counter()
    for backend, url, model in targets:
        res.backend = backend
        body = {"model": model, "messages": MSG, "max_tokens": MAX_TOKENS, "stream": True}
        body["stream_options"] = {"include_usage": True}
        if await stream_once(session, url, body, headers, res):
            break
    res.total_s = res.total_s or time.perf_counter() - res.started


async def drive(cfg: Config, strategy: str, objective: str, sims: dict[str, int], gw_port: int | None) -> Run:
    """Replays the schedule while sending requests at a fixed rate; returns every request's result."""
    run, truth, rr = Run(strategy, objective), Truth(), 0
    events = sorted(schedule(cfg), key=lambda e: e[0])
    direct = {n: (n, f"http://127.0.0.1:{p}/v1/chat/completions", f"m-{n}") for n, p in sims.items()}
    gateway = [("", f"http://127.0.0.1:{gw_port}/v1/chat/completions", "chat")]
    headers = {"x-routeway-objective": objective} if gw_port else {}
    timeout = aiohttp.ClientTimeout(total=15, sock_connect=2)
    n = int(cfg.rate * cfg.duration_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), timeout=timeout) as session:
        for port in sims.values():
            await (await session.post(f"http://127.0.0.1:{port}/sim/reset")).read()
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / cfg.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            while events and events[0][0] <= i / n:
                _, name, _, knobs = events.pop(0)
                await (await session.post(f"http://127.0.0.1:{sims[name]}/sim/control", json=knobs)).read()
                truth.apply(name, knobs)
            res = Result(at=i / n)
            run.results.append(res)
            if strategy == "routeway":
                targets = gateway
            elif strategy == "oracle":
                now = time.monotonic()
                targets = [direct[b] for b in truth.order(objective, now)[:2]]
                if targets:
                    truth.sent[targets[0][0]].append(now)
            else:
                targets = [direct[FLEET[(rr + k) % len(FLEET)].name] for k in (0, 1)]
                rr += 1
            tasks.append(asyncio.create_task(request(session, targets, headers, res)))
        _, late = await asyncio.wait(tasks, timeout=30)  # a request still open by then counts as failed
        for task in late:
            task.cancel()
    return run


def policy(cfg: Config, sims: dict[str, int], objective: str) -> dict[str, Any]:
    """One logical model `chat` on the four sims; the declared speeds are the sims' starting values."""
    backends: dict[str, Any] = {}
    for s in FLEET:
        model = {"id": f"m-{s.name}", "input_price": s.input_price, "output_price": s.output_price}
        model |= {"ttft_ms": s.ttft_ms, "tokens_per_s": s.tokens_per_s}
        url = f"http://127.0.0.1:{sims[s.name]}/v1"
        backends[s.name] = {"provider": "openai", "base_url": url, "hardware": s.hardware}
        backends[s.name]["models"] = {"chat": model}
    route: dict[str, Any] = {"name": "bench", "objective": objective, "probe_interval_s": cfg.probe_s}
    route["expected_output_tokens"] = MAX_TOKENS
    route["timeouts"] = {"connect_s": 1, "first_token_s": 5, "idle_s": 5, "total_s": 10}
    if objective == "cheapest":
        route["max_ttft_ms"] = MAX_TTFT_MS
    if cfg.hedge_ms:
        route["hedge"] = {"enabled": True, "after_ms": cfg.hedge_ms}
    return {"backends": backends, "routes": [route]}


def routeway_run(cfg: Config, sims: dict[str, int], objective: str, tmp: Path) -> Run:
    path, port = tmp / f"{objective}.yaml", free_port()
    path.write_text(yaml.safe_dump(policy(cfg, sims, objective)))
    env = {**os.environ, "ROUTEWAY_ACCESS_LOG": "false", "ROUTEWAY_RELOAD_POLICIES": "false"}
    env["ROUTEWAY_TELEMETRY_HALF_LIFE_S"] = str(cfg.half_life_s)
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)]
    gw = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return asyncio.run(drive(cfg, "routeway", objective, sims, port))
    finally:
        gw.terminate()
        gw.wait(timeout=10)


SIM_MAIN = """
import asyncio, json, sys
from gateway.sim import Profile, serve_fleet_forever
asyncio.run(serve_fleet_forever([Profile(**p) for p in json.loads(sys.argv[1])]))
"""


def start_sims() -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The fleet in its own process, so the load generator and the simulators do not share a GIL."""
    ports = {s.name: free_port() for s in FLEET}
    profiles = [
        {"name": s.name, "hardware": s.hardware, "models": [f"m-{s.name}"], "port": ports[s.name]}
        | {"ttft_ms": s.ttft_ms, "tokens_per_s": s.tokens_per_s}
        for s in FLEET
    ]
    cmd = [sys.executable, "-c", SIM_MAIN, json.dumps(profiles)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    for port in ports.values():
        wait_port(port)
    return proc, ports


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def over(r: Result) -> bool:
    """Failed, or its first token came later than the route's max_ttft_ms."""
    return not r.ok or r.ttft_s is None or r.ttft_s * 1000 > MAX_TTFT_MS


def summary(run: Run) -> dict[str, Any]:
    good = [r for r in run.results if r.ok]
    ttfts = [r.ttft_s * 1000 for r in good if r.ttft_s is not None]
    totals = [r.total_s * 1000 for r in good]
    split = Counter(r.backend for r in good)
    return {
        "name": run.strategy,
        "n": len(run.results),
        "success": len(good) / max(1, len(run.results)),
        "cost": sum(r.cost for r in good) / max(1, len(good)) * 1000,
        "ttft": (pct(ttfts, 50), pct(ttfts, 95)),
        "lat": (pct(totals, 50), pct(totals, 95)),
        "inside": 1 - sum(map(over, run.results)) / max(1, len(run.results)),
        "split": " ".join(f"{s.name} {split[s.name] / max(1, len(good)):.0%}" for s in FLEET),
    }


def phases(cfg: Config, runs: list[Run]) -> list[str]:
    """Per phase of the schedule: each run's traffic split and share of requests over max_ttft_ms."""
    cuts = sorted({0.0, *(e[0] for e in schedule(cfg)), 1.0})
    lines = ["| phase from | " + " | ".join(f"{r.strategy} `{r.objective}`" for r in runs) + " |"]
    lines.append("|---" * (len(runs) + 1) + "|")
    for lo, hi in itertools.pairwise(cuts):
        cells = []
        for run in runs:
            part = [r for r in run.results if lo <= r.at < hi]
            split = Counter(r.backend for r in part if r.ok)
            mix = " ".join(f"{b} {c * 100 // max(1, len(part))}" for b, c in split.most_common())
            cells.append(f"{mix}; over {sum(map(over, part)) / max(1, len(part)):.0%}")
        lines.append(f"| {lo:.0%} | " + " | ".join(cells) + " |")
    return lines


Verdict = tuple[str, str, bool]


def tables(runs: dict[tuple[str, str], Run]) -> tuple[list[str], list[Verdict]]:
    rr = summary(runs[("round-robin", "-")])
    lines: list[str] = []
    verdicts: list[Verdict] = []
    for objective in ("cheapest", "fastest"):
        rw, orc = summary(runs[("routeway", objective)]), summary(runs[("oracle", objective)])
        limit = f" (route max_ttft_ms {MAX_TTFT_MS:g})" if objective == "cheapest" else ""
        lines += ["", f"#### `{objective}`{limit}", ""]
        lines += [
            "| strategy | requests | success | USD / 1k requests | TTFT p50 / p95 ms | latency p50 / p95 ms "
            f"| TTFT ≤ {MAX_TTFT_MS:g} ms | traffic |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in (rw, orc, rr):
            lines.append(
                f"| {s['name']} | {s['n']} | {s['success']:.2%} | {s['cost']:.5f} "
                f"| {s['ttft'][0]:.0f} / {s['ttft'][1]:.0f} | {s['lat'][0]:.0f} / {s['lat'][1]:.0f} "
                f"| {s['inside']:.2%} | {s['split']} |"
            )
        cost, p95 = rw["cost"] / orc["cost"], rw["lat"][1] / orc["lat"][1]
        lines += [
            "",
            f"Routeway ÷ oracle: cost {cost:.3f}×, latency p95 {p95:.3f}×, "
            f"TTFT p95 {rw['ttft'][1] / orc['ttft'][1]:.3f}×. Round-robin ÷ oracle: cost "
            f"{rr['cost'] / orc['cost']:.3f}×, latency p95 {rr['lat'][1] / orc['lat'][1]:.3f}×.",
        ]
        if objective == "cheapest":
            verdicts.append(("`cheapest` cost ≤ 1.05× oracle", f"{cost:.3f}×", cost <= 1.05))
            within = f"`cheapest` ≥ 99% of requests with TTFT ≤ max_ttft_ms ({MAX_TTFT_MS:g})"
            verdicts.append((within, f"{rw['inside']:.2%}", rw["inside"] >= 0.99))
        else:
            measured = f"{p95:.3f}× ({rw['lat'][1]:.0f} vs {orc['lat'][1]:.0f} ms)"
            verdicts.append(("`fastest` latency p95 ≤ 1.10× oracle", measured, p95 <= 1.10))
    return lines, verdicts


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def report(cfg: Config, runs: dict[tuple[str, str], Run], elapsed: float, load: str) -> str:
    cmd = ("BENCH_QUICK=1 " if cfg.quick else "") + ".venv/bin/python -m bench.routing"
    body, verdicts = tables(runs)
    fleet = "; ".join(
        f"{s.name} {s.input_price}/{s.output_price}, {s.ttft_ms:g}, {s.tokens_per_s:g}" for s in FLEET
    )
    mode = "QUICK MODE (smoke run, indicative only)" if cfg.quick else "full run"
    out = [
        f"### Results of the last run — {mode}",
        "",
        f"- Command: `{cmd}`; settings {json.dumps(asdict(cfg))}; run time {elapsed:.0f} s",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: nproc {os.cpu_count()}, "
        f"{cpu_model()}, Python {platform.python_version()}; load average at start / end: {load} (other "
        "processes on the machine disturb timings)",
        f"- Each run: {int(cfg.rate * cfg.duration_s)} streamed chat requests (max_tokens {MAX_TOKENS}, "
        f"include_usage) at {cfg.rate:g}/s over {cfg.duration_s:g} s. Backends (USD/1M in/out, TTFT ms, "
        f"tokens/s): {fleet}",
        "- Schedule: " + "; ".join(f"{at:.0%} {what}" for at, _, what, _ in schedule(cfg)),
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    out += [f"| {name} | {value} | {'met' if ok else 'MISSED'} |" for name, value, ok in verdicts]
    out += body
    order = [("routeway", "cheapest"), ("oracle", "cheapest"), ("routeway", "fastest"), ("oracle", "fastest")]
    out += [
        "",
        "Per phase: % of the phase's requests served by each backend; % failed or over max_ttft_ms.",
        "",
    ]
    return "\n".join(out + phases(cfg, [runs[k] for k in order]))


ABOUT = """## Routing quality

Four simulated backends serve one logical model; during each run the cheapest gets slow, the next cheapest
hits its rate limit, the fastest goes down and comes back, the slow one recovers and the fastest gets slow.
The same schedule and request stream replay, with the sims reset in between, for: **Routeway** (a fresh
`python -m gateway serve` per objective, `x-routeway-objective` sent, declared priors = the sims' starting
values), an **oracle** that sends each request straight to the best backend for the true current state (up,
under its rate limit, and for `cheapest` TTFT ≤ max_ttft_ms; one failover to the second best) and
**round-robin** (straight to the sims in rotation, one failover to the next; one run shown under both
objectives). Success = HTTP 200 and a stream ending in `[DONE]` with its usage chunk; cost = usage × the
serving backend's prices, per 1,000 successful requests; latencies over successful requests; the TTFT share
counts failures as outside. Rerun: `.venv/bin/python -m bench.routing` (about 2.5 minutes) or
`BENCH_QUICK=1 .venv/bin/python -m bench.routing` (a smoke run); the module docstring lists the knobs.
"""


def write_doc(text: str) -> None:
    """Rewrites what is between the start marker and the notes (else end) marker; nothing else."""
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START not in doc or END not in doc:
        doc = doc.rstrip("\n") + f"\n\n{START}\n{NOTES}\n{END}\n"
    head, rest = doc.split(START, 1)
    inside = rest.split(END, 1)[0]
    tail = rest[rest.index(NOTES if NOTES in inside else END) :]
    note = "<!-- written by `python -m bench.routing`; edit only below the notes marker -->"
    DOC.write_text(f"{head}{START}\n{note}\n\n{ABOUT}\n{text}\n\n{tail}")


def main() -> None:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    duration = float(os.environ.get("BENCH_DURATION_S", "4" if quick else "30"))
    half_life = float(os.environ.get("BENCH_HALF_LIFE_S", str(max(0.25, duration / 15))))
    cfg = Config(
        quick=quick,
        rate=float(os.environ.get("BENCH_RATE", "25" if quick else "40")),
        duration_s=duration,
        half_life_s=half_life,
        probe_s=float(os.environ.get("BENCH_PROBE_S", str(2 * half_life))),
        hedge_ms=float(os.environ.get("BENCH_HEDGE_MS", "0")),
    )
    began, load = time.monotonic(), " ".join(f"{x:.2f}" for x in os.getloadavg())
    sim_proc, sims = start_sims()
    runs: dict[tuple[str, str], Run] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for objective in ("cheapest", "fastest"):
                print(f"routeway {objective}...", flush=True)
                runs[("routeway", objective)] = routeway_run(cfg, sims, objective, Path(tmp))
                print(f"oracle {objective}...", flush=True)
                runs[("oracle", objective)] = asyncio.run(drive(cfg, "oracle", objective, sims, None))
            print("round-robin...", flush=True)
            runs[("round-robin", "-")] = asyncio.run(drive(cfg, "round-robin", "-", sims, None))
    finally:
        sim_proc.terminate()
        sim_proc.wait(timeout=10)
    load += " / " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(cfg, runs, time.monotonic() - began, load)
    print(text)
    if os.environ.get("BENCH_DOCS", "1") != "0":
        write_doc(text)
        print(f"\nwritten to {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
