"""Issue 14's scenarios: fleets that change under a steady load, Routeway next to an oracle and round-robin.

(a) the cheap backend's TTFT steps across `max_ttft_ms` and back (`cheapest`; again as (a+hedge) with the
route's hedging enabled, which adds the SLO hedge of streams); (b) a backend slows down 10x
and recovers while the best one runs out of rate limit (`fastest`); (c) the cheap backend fails fast (503 in
milliseconds) and recovers (`cheapest`); (d) the cheap backend hangs (accepts, never answers) and recovers,
half the requests non-streaming (`cheapest`, timeouts connect 1 s, first token 2 s, total 8 s).

Each scenario replays the same schedule at a fixed request rate for Routeway (a fresh `python -m gateway
serve`), an oracle (straight to the best backend for the true current state, one failover) and round-robin
(straight to the sims in turn, one failover), and LiteLLM's latency-based Router where litellm imports in
bench/.venv or bench/.venv-litellm (bench/litellm_router.py). TTFT is measured by the client. Run:
`.venv/bin/python -m bench.scenarios` (about 7 minutes; BENCH_QUICK=1 for a smoke run; BENCH_RATE,
BENCH_DURATION_S, BENCH_ONLY=a,a+hedge,c to choose, BENCH_LITELLM_RATE; BENCH_DOCS=0: stdout only;
BENCH_TRACE=DIR: each run's requests as JSON).
Tables go to docs/benchmarks.md between the routing-scenarios markers.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.procs import free_port, wait_port
from bench.routing import SIM_MAIN, pct, read_stream
from bench.venvs import BENCH_VENV, LITELLM_VENV
from gateway.policy.model import BreakerConfig
from gateway.routing.probes import (
    PROBE_CREDIT_CAP,
    PROBE_PACE,
    STUCK_FACTOR,
    STUCK_MIN_S,
    TRIAL_FACTOR,
    TRIAL_MIN_S,
)
from gateway.routing.router import SLO_HEDGE_MARGIN, SLO_HEDGE_MIN_MARGIN_MS
from gateway.telemetry import estimators

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- routing-scenarios:start -->", "<!-- routing-scenarios:end -->"
MSG = [{"role": "user", "content": "Summarise the routing benchmark in one short sentence, please."}]
MAX_TOKENS = 16
PROMPT_TOKENS = 20  # what the sims count for MSG, near enough for the oracle's price order


@dataclass(frozen=True)
class Spec:
    name: str
    input_price: float
    output_price: float
    ttft_ms: float
    tokens_per_s: float


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    objective: str
    fleet: tuple[Spec, ...]
    events: tuple[tuple[float, str, str, dict[str, Any]], ...]  # (fraction of the run, backend, what, knobs)
    recovers: tuple[float, str]  # (fraction, backend) whose traffic share after recovery is measured
    max_ttft_ms: float | None = None
    non_stream_share: float = 0.0
    hedge: bool = False  # the route's `hedge.enabled` (with max_ttft_ms: the SLO hedge of streams)
    timeouts: dict[str, float] = field(
        default_factory=lambda: {"connect_s": 1, "first_token_s": 2, "idle_s": 5, "total_s": 8}
    )


CHEAP, MID, DEAR = (
    Spec("cheap", 0.15, 0.25, 250, 200),
    Spec("mid", 0.40, 0.60, 150, 250),
    Spec("dear", 0.60, 0.80, 80, 400),
)
SCENARIOS = (
    Scenario(
        "a", "cheap backend's TTFT steps across max_ttft_ms and back", "cheapest", (CHEAP, MID, DEAR),
        ((0.3, "cheap", "cheap TTFT 250 → 900 ms", {"ttft_ms": 900}),
         (0.6, "cheap", "cheap TTFT back to 250 ms", {"ttft_ms": 250})),
        (0.6, "cheap"), max_ttft_ms=500,
    ),
    Scenario(
        "a+hedge", "the same as (a), with the route's hedging enabled (the SLO hedge)", "cheapest",
        (CHEAP, MID, DEAR),
        ((0.3, "cheap", "cheap TTFT 250 → 900 ms", {"ttft_ms": 900}),
         (0.6, "cheap", "cheap TTFT back to 250 ms", {"ttft_ms": 250})),
        (0.6, "cheap"), max_ttft_ms=500, hedge=True,
    ),
    Scenario(
        "b", "a backend slows 10x and recovers while the best one runs out of rate limit", "fastest",
        (Spec("lpu", 0.6, 0.8, 40, 500), Spec("h100", 0.4, 0.6, 90, 250), Spec("tpu", 0.25, 0.4, 300, 150)),
        ((0.2, "h100", "h100 TTFT x10", {"ttft_ms": 900}),
         (0.45, "h100", "h100 back to 90 ms", {"ttft_ms": 90}),
         (0.55, "lpu", "lpu out of rate limit", {"rate_limit_rate": 1.0, "retry_after_s": 30})),
        (0.45, "h100"),
    ),
    Scenario(
        "c", "cheap backend fails fast (503) and recovers", "cheapest", (CHEAP, MID, DEAR),
        ((0.3, "cheap", "cheap answers 503 at once", {"error_rate": 1.0, "error_status": 503}),
         (0.6, "cheap", "cheap well again", {"error_rate": 0.0})),
        (0.6, "cheap"),
    ),
    Scenario(
        "d", "cheap backend hangs (accepts, never answers) and recovers; half non-streaming", "cheapest",
        (CHEAP, MID, DEAR),
        ((0.3, "cheap", "cheap hangs", {"hang": True}),
         (0.6, "cheap", "cheap answers again", {"hang": False})),
        (0.6, "cheap"), non_stream_share=0.5,
    ),
)  # fmt: skip


class Truth:
    """What the oracle knows: each backend's current TTFT and whether it can answer at all."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.ttft = {s.name: s.ttft_ms for s in sc.fleet}
        self.down: set[str] = set()

    def apply(self, name: str, knobs: dict[str, Any]) -> None:
        self.ttft[name] = knobs.get("ttft_ms", self.ttft[name])
        bad = knobs.get("hang") or knobs.get("error_rate") or knobs.get("rate_limit_rate")
        if any(k in knobs for k in ("hang", "error_rate", "rate_limit_rate")):
            (self.down.add if bad else self.down.discard)(name)

    def order(self) -> list[str]:
        up = [s for s in self.sc.fleet if s.name not in self.down]
        if self.sc.objective == "fastest":
            return [
                s.name
                for s in sorted(up, key=lambda s: self.ttft[s.name] + MAX_TOKENS / s.tokens_per_s * 1e3)
            ]
        limit = self.sc.max_ttft_ms or float("inf")
        return [s.name for s in sorted(up, key=lambda s: (self.ttft[s.name] > limit, price(s, MAX_TOKENS)))]


def price(s: Spec, output_tokens: int, prompt_tokens: int = PROMPT_TOKENS) -> float:
    return (prompt_tokens * s.input_price + output_tokens * s.output_price) / 1e6


@dataclass
class Result:
    at: float  # seconds since the run began, when sent
    stream: bool
    ok: bool = False
    backend: str = ""
    probe: bool = False
    ttft_s: float | None = None
    total_s: float = 0.0
    cost: float = 0.0


async def once(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str], res: Result,
    specs: dict[str, Spec], started: float,
) -> bool:  # fmt: skip
    """One attempt; False when it failed before the first byte (a failover may follow)."""
    try:
        async with session.post(url, json=body, headers=headers) as r:
            if r.status != 200:
                await r.read()
                return False
            res.backend = r.headers.get("x-routeway-backend", res.backend)
            res.probe = r.headers.get("x-routeway-probe") == "true"
            if not body["stream"]:
                doc = orjson.loads(await r.read())
                res.ttft_s = time.perf_counter() - started
                usage = doc.get("usage")
                done = True
            else:
                usage, done = await read_stream(r.content, res, started)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return res.ttft_s is not None
    res.total_s = time.perf_counter() - started
    if done and usage is not None and res.backend in specs:
        res.ok = True
        res.cost = price(specs[res.backend], usage["completion_tokens"], usage["prompt_tokens"])
    return True


async def request(
    session: aiohttp.ClientSession, targets: list[tuple[str, str, str]], headers: dict[str, str], res: Result,
    specs: dict[str, Spec],
) -> None:  # fmt: skip
    started = time.perf_counter()
    for backend, url, model in targets:
        res.backend = backend
        body: dict[str, Any] = {
            "model": model,
            "messages": MSG,
            "max_tokens": MAX_TOKENS,
            "stream": res.stream,
        }
        if res.stream:
            body["stream_options"] = {"include_usage": True}
        if await once(session, url, body, headers, res, specs, started):
            break
    res.total_s = res.total_s or time.perf_counter() - started


async def drive(
    sc: Scenario, strategy: str, rate: float, duration: float, sims: dict[str, int], gw: int | None
) -> list[Result]:
    truth, rr, results = Truth(sc), 0, []
    specs = {s.name: s for s in sc.fleet}
    events = sorted(sc.events, key=lambda e: e[0])
    direct = {n: (n, f"http://127.0.0.1:{p}/v1/chat/completions", f"m-{n}") for n, p in sims.items()}
    gateway = [("", f"http://127.0.0.1:{gw}/v1/chat/completions", "chat")]
    timeout = aiohttp.ClientTimeout(total=sc.timeouts["total_s"] + 4, sock_connect=2)
    n = int(rate * duration)
    every = round(1 / sc.non_stream_share) if sc.non_stream_share else 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048), timeout=timeout) as session:
        for port in sims.values():
            await (await session.post(f"http://127.0.0.1:{port}/sim/reset")).read()
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            while events and events[0][0] <= i / n:
                _, name, _, knobs = events.pop(0)
                await (await session.post(f"http://127.0.0.1:{sims[name]}/sim/control", json=knobs)).read()
                truth.apply(name, knobs)
            res = Result(at=i / rate, stream=not (every and i % every == 0))
            results.append(res)
            if gw is not None:  # routeway, or litellm's router behind its small proxy
                targets = gateway
            elif strategy == "oracle":
                targets = [direct[b] for b in truth.order()[:2]]
            else:
                names = [s.name for s in sc.fleet]
                targets = [direct[names[(rr + k) % len(names)]] for k in (0, 1)]
                rr += 1
            tasks.append(asyncio.create_task(request(session, targets, {}, res, specs)))
        _, late = await asyncio.wait(tasks, timeout=sc.timeouts["total_s"] + 6)
        for task in late:
            task.cancel()
    return results


def policy(sc: Scenario, sims: dict[str, int]) -> dict[str, Any]:
    backends = {
        s.name: {
            "provider": "openai",
            "base_url": f"http://127.0.0.1:{sims[s.name]}/v1",
            "models": {"chat": {"id": f"m-{s.name}", "input_price": s.input_price,
                                "output_price": s.output_price, "ttft_ms": s.ttft_ms,
                                "tokens_per_s": s.tokens_per_s}},
        }
        for s in sc.fleet
    }  # fmt: skip
    route: dict[str, Any] = {"name": "bench", "objective": sc.objective, "timeouts": dict(sc.timeouts)}
    route |= {"expected_output_tokens": MAX_TOKENS, "probe_interval_s": 10}
    if sc.max_ttft_ms is not None:
        route["max_ttft_ms"] = sc.max_ttft_ms
    if sc.hedge:
        route["hedge"] = {"enabled": True}
    return {"backends": backends, "routes": [route]}


def start_sims(sc: Scenario) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports = {s.name: free_port() for s in sc.fleet}
    profiles = [
        {"name": s.name, "hardware": "nvidia-h100", "models": [f"m-{s.name}"], "port": ports[s.name],
         "ttft_ms": s.ttft_ms,
         "tokens_per_s": s.tokens_per_s}
        for s in sc.fleet
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", SIM_MAIN, json.dumps(profiles)], cwd=REPO, stderr=subprocess.DEVNULL
    )
    for port in ports.values():
        wait_port(port)
    return proc, ports


def routeway(sc: Scenario, rate: float, duration: float, sims: dict[str, int], tmp: Path) -> list[Result]:
    path, port = tmp / f"{sc.key}.yaml", free_port()
    path.write_text(yaml.safe_dump(policy(sc, sims)))
    env = {**os.environ, "ROUTEWAY_ACCESS_LOG": "false", "ROUTEWAY_RELOAD_POLICIES": "false"}
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)]
    gw = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return asyncio.run(drive(sc, "routeway", rate, duration, sims, port))
    finally:
        gw.terminate()
        gw.wait(timeout=10)


def litellm_python() -> tuple[str | None, str]:
    """The bench venv's python where litellm imports (bench/.venv, else bench/.venv-litellm), or why not."""
    probe = "import litellm, importlib.metadata as m; print(m.version('litellm'))"
    for venv in (BENCH_VENV, LITELLM_VENV):
        python = venv / "bin" / "python"
        if not python.exists():
            continue
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return str(python), done.stdout.strip()
    return None, f"litellm does not import in {BENCH_VENV} or {LITELLM_VENV}"


def litellm(
    sc: Scenario, rate: float, duration: float, sims: dict[str, int], python: str
) -> list[Result]:  # fmt: skip
    """LiteLLM's latency-based Router (bench/litellm_router.py) over the same sims and schedule."""
    port = free_port()
    conf = {
        "port": port,
        "deployments": [
            {"name": s.name, "model": f"m-{s.name}", "api_base": f"http://127.0.0.1:{sims[s.name]}/v1"}
            for s in sc.fleet
        ],
        "timeout_s": sc.timeouts["total_s"],
        "stream_timeout_s": sc.timeouts["first_token_s"],
    }
    cmd = [python, str(REPO / "bench" / "litellm_router.py"), json.dumps(conf)]
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proxy = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout_s=120)
        return asyncio.run(drive(sc, "litellm", rate, duration, sims, port))
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:  # requests still hung on a sim: nothing left to wait for
            proxy.kill()
            proxy.wait(timeout=10)


def summary(sc: Scenario, rs: list[Result], duration: float) -> dict[str, Any]:
    good = [r for r in rs if r.ok]
    ttfts = [r.ttft_s * 1000 for r in good if r.ttft_s is not None and r.stream]
    lat = [r.total_s * 1000 for r in good]
    limit = sc.max_ttft_ms
    inside = sum(1 for r in rs if r.ok and (limit is None or (r.ttft_s or 1e9) * 1000 <= limit)) / max(
        1, len(rs)
    )
    at, name = sc.recovers
    t0 = at * duration + 2.0  # from 2 s after the recovery to the end
    after = [r for r in rs if r.at >= t0]
    fault = [r for r in rs if sc.events[0][0] * duration <= r.at < at * duration]
    return {
        "n": len(rs),
        "success": len(good) / max(1, len(rs)),
        "success_fault": sum(r.ok for r in fault) / max(1, len(fault)),
        "cost": sum(r.cost for r in good) / max(1, len(good)) * 1000,
        "ttft": (pct(ttfts, 50), pct(ttfts, 95)),
        "lat": (pct(lat, 50), pct(lat, 95)),
        "inside": inside,
        "regained": sum(r.backend == name and r.ok for r in after) / max(1, len(after)),
        "probes": sum(r.probe for r in rs) / max(1, len(rs)),
        "split": Counter(r.backend for r in good),
    }


def table(sc: Scenario, runs: dict[str, list[Result]], duration: float) -> list[str]:
    s = {k: summary(sc, v, duration) for k, v in runs.items()}
    rw, orc = s["routeway"], s["oracle"]
    at, name = sc.recovers
    limit = f", route max_ttft_ms {sc.max_ttft_ms:g}" if sc.max_ttft_ms else ""
    lines = [
        f"#### ({sc.key}) {sc.title} — `{sc.objective}`{limit}", "",
        "Schedule: " + "; ".join(f"{e[0]:.0%} {e[2]}" for e in sc.events) + ".", "",
        "| strategy | requests | success | success during the fault | USD / 1k | TTFT p50 / p95 ms "
        f"| latency p50 / p95 ms | within max_ttft | `{name}`'s share from 2 s after recovery | probes "
        "| traffic |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for k, x in s.items():
        split = " ".join(
            f"{b} {c / max(1, sum(x['split'].values())):.0%}" for b, c in x["split"].most_common()
        )
        lines.append(
            f"| {k} | {x['n']} | {x['success']:.2%} | {x['success_fault']:.2%} | {x['cost']:.5f} "
            f"| {x['ttft'][0]:.0f} / {x['ttft'][1]:.0f} | {x['lat'][0]:.0f} / {x['lat'][1]:.0f} "
            f"| {x['inside']:.2%} | {x['regained']:.0%} | {x['probes']:.2%} | {split} |"
        )
    regained = rw["regained"] / orc["regained"] if orc["regained"] else float("nan")
    lines += [
        "",
        f"Routeway ÷ oracle: cost {rw['cost'] / orc['cost']:.3f}×, "
        f"latency p95 {rw['lat'][1] / orc['lat'][1]:.3f}×, "
        f"`{name}` regained {regained:.0%} of the oracle's share; probes {rw['probes']:.2%} of requests.",
        "",
    ]  # fmt: skip
    for k in [k for k in s if k.startswith("litellm")]:
        lt, base = s[k], s[k.replace("litellm", "oracle")]
        lines += [
            f"LiteLLM ({k}) ÷ oracle at the same rate: cost {lt['cost'] / base['cost']:.3f}×, "
            f"latency p95 {lt['lat'][1] / base['lat'][1]:.3f}×, success {lt['success']:.2%}.",
            "",
        ]
    return lines


def settings() -> str:
    e, b = estimators, BreakerConfig()
    return (
        f"Estimator settings: Peak-EWMA tau {e.TAU_S:g} s (good samples bring a peak down), last-good tau "
        f"{e.GOOD_TAU_S:g} s, failure tau {e.FAIL_TAU_S:g} s, route `forgive_half_life_s` 1 s (default), "
        f"`probe_share` 0.01 (up to {PROBE_CREDIT_CAP:g} saved, spent at ≤ {PROBE_PACE:g}× the share), "
        f"`probe_interval_s` 10; stuck = {STUCK_FACTOR:g}× the expected duration and ≥ {STUCK_MIN_S:g} s; "
        f"breaker `fast_failure_s` {b.fast_failure_s:g}, `fast_cooldown_s` {b.fast_cooldown_s:g}, "
        f"`fast_ramp_s` {b.fast_ramp_s:g}, `hang_trial_s` {b.hang_trial_s:g}, `hang_trial_share` "
        f"{b.hang_trial_share:g}, a hung backend's trial waits {TRIAL_FACTOR:g}× its last-good first byte "
        f"(≥ {TRIAL_MIN_S:g} s); `per_try_factor` 4; "
        f"(a+hedge) `hedge: {{enabled: true}}`, SLO hedge margin {SLO_HEDGE_MARGIN:.0%} of max_ttft_ms "
        f"(≥ {SLO_HEDGE_MIN_MARGIN_MS:g} ms)."
    )


def litellm_settings(version: str) -> str:
    return (
        f'LiteLLM {version}: `Router(routing_strategy="latency-based-routing")` in-process behind '
        "`bench/litellm_router.py` (aiohttp, in bench/.venv), one deployment per sim, its defaults (retries, "
        "`allowed_fails`, `cooldown_time`, `routing_strategy_args`) except `timeout` = the scenario's "
        "`total_s` and `stream_timeout` = its `first_token_s` (its own default is 600 s). It ranks on "
        "latency only: it knows no prices, so `cheapest` scenarios show what a latency router costs."
    )


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START not in doc or END not in doc:
        doc = doc.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = doc.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{START}\n<!-- written by `python -m bench.scenarios` -->\n\n{text}\n{END}{tail}")


def trace(sc: Scenario, runs: dict[str, list[Result]]) -> None:
    """BENCH_TRACE=DIR: each run's requests (sent at, backend, probe, ok, TTFT) as DIR/KEY-STRATEGY.json."""
    folder = os.environ.get("BENCH_TRACE")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for strategy, results in runs.items():
        rows = [[r.at, r.backend, r.probe, r.ok, r.ttft_s, r.stream] for r in results]
        name = f"{sc.key}-{strategy}".replace(" ", "").replace("/", "")
        Path(folder, f"{name}.json").write_bytes(orjson.dumps(rows))


def main() -> None:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    rate = float(os.environ.get("BENCH_RATE", "50" if quick else "100"))
    duration = float(os.environ.get("BENCH_DURATION_S", "8" if quick else "15"))
    only = set(os.environ.get("BENCH_ONLY", ",".join(s.key for s in SCENARIOS)).split(","))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = [
        "## Routing that reacts and recovers (issue 14)", "",
        f"- Command: `{'BENCH_QUICK=1 ' if quick else ''}.venv/bin/python -m bench.scenarios`; "
        f"{rate:g} req/s for {duration:g} s per run; max_tokens {MAX_TOKENS}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc {os.cpu_count()}; load average at "
        f"start {load} (a shared, loaded machine: timings are indicative).",
        f"- {settings()}", "",
    ]  # fmt: skip
    lite, lite_note = litellm_python()
    lite_rate = float(os.environ.get("BENCH_LITELLM_RATE", "25"))
    if lite is None:
        print(f"LiteLLM skipped: {lite_note}", flush=True)
        out += [f"- LiteLLM's router skipped: {lite_note}.", ""]
    else:
        out += [
            f"- {litellm_settings(lite_note)} Run at the same rate, and again at {lite_rate:g} req/s "
            "(`BENCH_LITELLM_RATE`) beside an oracle at that rate: one LiteLLM process saturates well below "
            "100 req/s on this machine (its p50 latency passes 1 s from about 50 req/s), so the same-rate "
            "row measures its overhead, the slower one its routing.",
            "",
        ]
    with tempfile.TemporaryDirectory() as tmp:
        for sc in SCENARIOS:
            if sc.key not in only:
                continue
            proc, sims = start_sims(sc)
            try:
                print(f"({sc.key}) routeway...", flush=True)
                runs = {"routeway": routeway(sc, rate, duration, sims, Path(tmp))}
                for strategy in ("oracle", "round-robin"):
                    print(f"({sc.key}) {strategy}...", flush=True)
                    runs[strategy] = asyncio.run(drive(sc, strategy, rate, duration, sims, None))
                if lite is not None:
                    print(f"({sc.key}) litellm...", flush=True)
                    runs["litellm"] = litellm(sc, rate, duration, sims, lite)
                    if lite_rate < rate:  # again at a rate its one process keeps up with, beside an oracle
                        print(f"({sc.key}) oracle and litellm at {lite_rate:g} req/s...", flush=True)
                        slow = asyncio.run(drive(sc, "oracle", lite_rate, duration, sims, None))
                        runs[f"oracle @ {lite_rate:g}/s"] = slow
                        runs[f"litellm @ {lite_rate:g}/s"] = litellm(sc, lite_rate, duration, sims, lite)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            out += table(sc, runs, duration)
            trace(sc, runs)
    text = "\n".join(out)
    print(text)
    if os.environ.get("BENCH_DOCS", "1") != "0":
        write_doc(text)


if __name__ == "__main__":
    main()
