"""The benchmark sequence: start each server in turn, measure it, stop it; every result goes in one dict."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    goals,
    machine,
    measure,
    otlp_sink,
    payloads,
    procs,
    profiling,
    routeway_gc,
    streams,
    targets,
    venvs,
    wrk,
)
from bench.options import RESULTS_DIR, ROOT, Options

Results = dict[str, Any]

# Latency against offered load (the plot).
SWEPT = ("upstream", "routeway", "fastapi-aiohttp", "litellm")
PROFILED = ("routeway", "fastapi-aiohttp")  # py-spy, side by side
GC_RATE = 800.0  # open-loop rate of the GC phase: enough allocation for several full collections
TRACED = goals.TRACED  # Routeway exporting spans over OTLP/HTTP to bench/otlp_sink.py
# Up at the same time, wrk rounds alternating between them; the targets' ratios come from these.
INTERLEAVED = (
    "routeway",
    TRACED,
    "routeway-nolog",
    "fastapi-aiohttp",
    "asgi-aiohttp",
    "litellm",
)
ROUNDS = 3


def requests_served(port: int) -> int | None:
    """Requests a Routeway server finished so far (routeway_requests_total summed from GET /metrics)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        if resp.status != 200:
            return None
    except OSError:
        return None
    finally:
        conn.close()
    samples = [
        line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("routeway_requests_total")
    ]
    return round(sum(float(v) for v in samples))


class Run:
    """One `python -m bench` run; phases append to `results` and never stop the run on a failure."""

    def __init__(self, opts: Options, command: str) -> None:
        self.opts = opts
        self.dir = RESULTS_DIR
        self.logs = RESULTS_DIR / "logs"
        self.results: Results = {
            "command": command,
            "options": opts.describe(),
            "quick": opts.quick,
            "fixed_rate": opts.fixed_rate,
            "profile_concurrency": opts.concurrency[0],
            "machine": machine.describe(),
            "cores": {"server": sorted(procs.SERVER_CORE), "load": sorted(procs.LOAD_CORE)},
            "labels": {},
            "notes": [],
            "ceiling": {},
            "throughput": {},
            "fixed": {},
            "ttfb": {},
            "sweep": {},
            "streams": {},
            "workers": {},
            "gc": {},
            "interleaved": {},
            "tracing": {"endpoint": None, "sink": {}},
            "profiles": {},
            "versions": {},
        }
        self.bench_venv = venvs.Venv(venvs.BENCH_VENV)
        self.litellm_venv = venvs.Venv(venvs.LITELLM_VENV)
        self.served: dict[str, int | None] = {}  # requests the tracing server finished, read before it stops

    # -- helpers ---------------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.results["notes"].append(text)

    def wanted(self, name: str) -> bool:
        return not self.opts.only or name in self.opts.only

    @contextlib.contextmanager
    def phase(self, title: str) -> Iterator[None]:
        print(f"\n== {title}", flush=True)
        started = time.monotonic()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - one failed phase must not lose the others' numbers
            self.note(f"{title}: failed: {type(exc).__name__}: {exc}".strip()[:1500])
            traceback.print_exc()
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)

    def body(self, name: str, data: bytes) -> Path:
        return measure.body_file(self.dir, name, data)

    # -- phases ----------------------------------------------------------------------------------------

    def setup(self) -> bool:
        os.chdir(ROOT)  # child processes run `-m bench.*`
        self.dir.mkdir(parents=True, exist_ok=True)
        os.sched_setaffinity(0, procs.LOAD_CORE)  # the orchestrator and its children load from this core
        procs.raise_fd_limit()
        if len(procs.CORES) < 2:
            self.note("only one usable core: nothing is pinned apart, every number is shared-core")
        if wrk.ensure_installed() is None:
            self.note("wrk is not installed and could not be (apt-get needs root): cannot run")
            return False
        with self.phase("venvs"):
            self.bench_venv = venvs.bench_venv(self.opts.install)
            for text in self.bench_venv.notes:
                self.note(text)
            if self.opts.litellm and self.wanted("litellm"):
                self.litellm_venv = venvs.litellm_venv(self.opts.install)
                for text in self.litellm_venv.notes:
                    self.note(text)
                if self.litellm_venv.ok:
                    self.results["versions"]["litellm"] = venvs.version(self.litellm_venv, "litellm")
            elif not self.opts.litellm:
                self.note("LiteLLM skipped (--no-litellm)")
            if "httpx-aiohttp" in self.bench_venv.available:
                self.results["versions"]["httpx-aiohttp"] = venvs.version(self.bench_venv, "httpx-aiohttp")
        return True

    def upstream_alone(self, upstream: procs.Server) -> None:
        """The upstream's ceiling, measured on the server core like any target."""
        name = "upstream"
        self.results["labels"][name] = "direct upstream (raw asyncio + httptools, 0 ms)"
        procs.pin(upstream.pid, procs.SERVER_CORE)
        try:
            url = f"http://127.0.0.1:{upstream.port}{payloads.CHAT_PATH}"
            self.results["ceiling"][name] = measure.throughput(url, upstream.pid, self.opts, self.dir)
            rate = self.opts.fixed_rate
            chat, stream = self.body("chat", payloads.CHAT_BODY), self.body("stream", payloads.STREAM_BODY)
            self.results["fixed"][name] = measure.fixed_rate(upstream.port, chat, rate, self.opts, "chat")
            self.results["ttfb"][name] = measure.fixed_rate(upstream.port, stream, rate, self.opts, "stream")
            self.results["sweep"][name] = measure.sweep(upstream.port, chat, self.opts)
        finally:
            procs.pin(upstream.pid, procs.LOAD_CORE)

    def sim_alone(self) -> None:
        spec = targets.sim_upstream(procs.free_port())
        self.results["labels"]["sim"] = spec.label
        with procs.running(spec.start(self.logs)) as sim:
            self.results["ceiling"]["sim"] = measure.throughput(spec.url, sim.pid, self.opts, self.dir)

    def target(self, spec: targets.Spec) -> None:
        """Start, measure (throughput, latency at a fixed rate, TTFB, maybe sweep and profile), stop."""
        self.results["labels"][spec.name] = spec.label
        print(f"   {spec.label}: {' '.join(spec.cmd)}", flush=True)
        with procs.running(spec.start(self.logs)) as server:
            tput = measure.throughput(spec.url, server.pid, self.opts, self.dir)
            self.results["throughput"][spec.name] = tput
            # A server that cannot sustain the fixed rate is measured at half its own ceiling instead.
            ceiling = min(r["rps"] for r in tput.values())
            rate = (
                self.opts.fixed_rate if ceiling >= 2 * self.opts.fixed_rate else max(5.0, round(ceiling / 2))
            )
            chat, stream = self.body("chat", payloads.CHAT_BODY), self.body("stream", payloads.STREAM_BODY)
            self.results["fixed"][spec.name] = measure.fixed_rate(spec.port, chat, rate, self.opts, "chat")
            self.results["ttfb"][spec.name] = measure.fixed_rate(spec.port, stream, rate, self.opts, "stream")
            if spec.name in SWEPT:
                self.results["sweep"][spec.name] = measure.sweep(spec.port, chat, self.opts)
            if spec.name in PROFILED:
                self.profile(spec.name, server)
            if spec.name == TRACED:
                self.served[spec.name] = requests_served(spec.port)
            if not server.alive():
                raise RuntimeError(f"{spec.name} died during the run:\n{server.log_tail()}")

    def profile(self, name: str, server: procs.Server) -> None:
        """py-spy while wrk keeps the server busy (the throughput numbers were taken without py-spy)."""
        if "py-spy" not in self.bench_venv.available:
            self.note("py-spy unavailable: no profile")
            return
        out = self.dir / f"{name}-profile.speedscope.json"
        out.unlink(missing_ok=True)
        spy = profiling.record(self.bench_venv.bin("py-spy"), server.pid, self.opts.profile_s, out)
        time.sleep(0.5)
        url = f"http://127.0.0.1:{server.port}{payloads.CHAT_PATH}"
        load = measure.measured_wrk(
            url, server.pid, self.opts.concurrency[0], self.opts.profile_s + 1, self.dir
        )
        result = profiling.finish(spy, out, timeout_s=30)
        if result.error:
            self.note(f"profile of {name}: {result.error}")
        seconds = max(1, round(self.opts.profile_s))  # what py-spy recorded
        busy_us = result.sampled_s / (load["rps"] * seconds) * 1e6 if load["rps"] else 0.0
        self.results["profiles"][name] = {
            **asdict(result),
            "cpu_us_per_req": load["cpu_us_per_req"],
            "python_us_per_req": round(busy_us, 1),
        }
        print(f"    profile: {result.sampled_s} s of busy samples in {out}", flush=True)

    def held_streams(self, spec: targets.Spec) -> None:
        self.results["labels"].setdefault(spec.name, spec.label)
        print(f"   {spec.label}", flush=True)
        with procs.running(spec.start(self.logs)) as server:
            r = streams.run(server.port, server.pid, self.opts.streams, self.opts.stream_hold_s)
            self.results["streams"][spec.name] = asdict(r)
            print(
                f"    {r.completed}/{r.streams} completed, at most {r.max_open} open at once, first event "
                f"p50 {r.first_event_p50_s} s max {r.first_event_max_s} s, errors {r.errors} "
                f"{r.error_kinds}, RSS {r.rss_before_mb} -> peak {r.rss_peak_mb} MB",
                flush=True,
            )

    def interleaved(self, specs: list[targets.Spec]) -> None:
        """All servers up at once, wrk rounds alternating between them: slow drifts in background load hit
        every server alike, so the ratios are sturdier than those of the one-after-another runs above."""
        seconds = max(2.0, self.opts.duration_s / 2)
        servers = []
        try:
            for spec in specs:
                self.results["labels"].setdefault(spec.name, spec.label)
                servers.append(spec.start(self.logs))
            for spec in specs:
                wrk.run(spec.url, payloads.CHAT_BODY, self.opts.concurrency[0], self.opts.warmup_s, self.dir)
            rounds: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {} for s in specs}
            for i in range(ROUNDS):
                for c in self.opts.concurrency:
                    for spec, server in zip(specs, servers, strict=True):
                        _settle([s.pid for s in servers])
                        r = measure.measured_wrk(spec.url, server.pid, c, seconds, self.dir)
                        rounds[spec.name].setdefault(str(c), []).append(r)
                        print(
                            f"    round {i + 1} c={c:<4} {spec.name:<18} {r['rps']:>8,.0f} req/s  "
                            f"CPU {r['cpu_us_per_req']} us/req",
                            flush=True,
                        )
            for spec in specs:
                if spec.name == TRACED:
                    self.served[spec.name] = requests_served(spec.port)
            for name, by_c in rounds.items():
                self.results["interleaved"][name] = {
                    c: {
                        "rps": sorted(r["rps"] for r in runs)[len(runs) // 2],
                        "cpu_us_per_req": sorted(r["cpu_us_per_req"] or 0 for r in runs)[len(runs) // 2],
                        "all_rps": [r["rps"] for r in runs],
                        "errors": sum(r["errors"] for r in runs),
                    }
                    for c, runs in by_c.items()
                }
        finally:
            for server in servers:
                procs.stop(server)

    def gc_pauses(self, policy: Path) -> None:
        """Collector pauses inside Routeway (it freezes its start-up objects) at a steady open-loop rate."""
        rate = GC_RATE
        chat = self.body("chat", payloads.CHAT_BODY)
        name = "routeway"
        log = self.dir / f"gc-{name}.json"
        log.unlink(missing_ok=True)
        spec = targets.routeway(procs.free_port(), policy, name=name, gc_log=log)
        print(f"   {spec.label}", flush=True)
        with procs.running(spec.start(self.logs)):
            time.sleep(1.0)  # keep start-up's last collections out of the window
            window = time.time()
            load = measure.fixed_rate(spec.port, chat, rate, self.opts, "chat")
            window_end = time.time()
        raw = json.loads(log.read_text()) if log.exists() else {}
        # The generator warms up for 1 s before it records: count pauses from then on.
        pauses = routeway_gc.summarise(raw, window + 1.0, window_end) if raw else {}
        self.results["gc"][name] = {"load": load, "pauses": pauses}
        g2 = pauses.get("gen2", {})
        print(f"    gen2 collections: {g2.get('count')}, max {g2.get('max_ms')} ms", flush=True)

    # -- tracing -----------------------------------------------------------------------------------------

    def start_sink(self, stack: contextlib.ExitStack) -> procs.Server | None:
        """The local OTLP receiver (load core), when a phase with the tracing server is wanted."""
        if not (self.wanted(TRACED) or self.wanted("interleaved")):
            return None
        spec = targets.otlp_sink(procs.free_port())
        try:
            sink = stack.enter_context(procs.running(spec.start(self.logs)))
        except Exception as exc:  # noqa: BLE001 - the other servers can still be measured
            self.note(f"OTLP sink did not start, no tracing run: {type(exc).__name__}: {exc}"[:1500])
            return None
        self.results["tracing"]["endpoint"] = f"http://127.0.0.1:{spec.port}"
        return sink

    @contextlib.contextmanager
    def sink_window(self, sink: procs.Server | None, key: str) -> Iterator[None]:
        """What the sink received over a phase that runs the tracing server, its final flush at stop included
        (the phase stops it before this reads the counts)."""
        if sink is None:
            yield
            return
        before = otlp_sink.stats(sink.port)
        self.served.pop(TRACED, None)
        try:
            yield
        finally:
            entry = otlp_sink.delta(otlp_sink.stats(sink.port), before)
            served = entry["gateway_requests"] = self.served.pop(TRACED, None)
            spans = entry.get("spans")
            entry["spans_per_request"] = round(spans / served, 2) if served and spans is not None else None
            self.results["tracing"]["sink"][key] = entry
            print(
                f"    OTLP sink ({key}): {entry['export_requests']} export requests, "
                f"{entry['bytes']:,} bytes, {spans} spans for {served} gateway requests "
                f"({entry['spans_per_request']} per request), "
                f"sink CPU {entry['cpu_s']} s",
                flush=True,
            )

    def workers(self, policy: Path) -> None:
        """1 vs 2 workers, neither pinned: with 2 cores, wrk and the upstream compete with the workers."""
        for n in (1, 2):
            spec = targets.routeway(
                procs.free_port(), policy, workers=n, cores=procs.ALL_CORES, name=f"routeway-unpinned-w{n}"
            )
            self.results["labels"][spec.name] = spec.label + ", unpinned"
            print(f"   {spec.label}, unpinned", flush=True)
            with procs.running(spec.start(self.logs)) as server:
                self.results["workers"][str(n)] = measure.throughput(
                    spec.url, server.pid, self.opts, self.dir
                )

    # -- the whole run -----------------------------------------------------------------------------------

    def execute(self) -> Results:
        started = time.monotonic()
        if not self.setup():
            return self.results
        slow = max(1, round(self.opts.stream_hold_s))
        up = targets.upstream(procs.free_port(), slow_events=slow, slow_interval=1.0)
        root = f"http://127.0.0.1:{up.port}"
        policy = targets.write_policy(self.dir / "policy.yaml", up.port)
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(procs.running(up.start(self.logs)))
            sink = self.start_sink(stack)
            if self.wanted("upstream"):
                with self.phase("direct upstream alone (its ceiling)"):
                    self.upstream_alone(upstream)
            if self.wanted("sim"):
                with self.phase("gateway/sim at 0 ms alone (why it is not the upstream)"):
                    self.sim_alone()
            specs = [
                targets.routeway(procs.free_port(), policy, access_log=True),
                targets.routeway(procs.free_port(), policy, access_log=False),
            ]
            if sink is not None:
                endpoint = f"http://127.0.0.1:{sink.port}"
                specs.append(targets.routeway(procs.free_port(), policy, name=TRACED, otlp_endpoint=endpoint))
            refs, skipped = targets.references(
                {n: procs.free_port() for n in targets.REFERENCE_NAMES}, root, self.bench_venv
            )
            specs += refs
            for text in skipped:
                self.note(text)
            if self.litellm_venv.ok:
                specs.append(targets.litellm(procs.free_port(), root, self.litellm_venv, self.dir))
            for spec in specs:
                if self.wanted(spec.name):
                    with (
                        self.phase(spec.label),
                        self.sink_window(sink if spec.name == TRACED else None, "target"),
                    ):
                        self.target(spec)
            together = [s for s in specs if s.name in INTERLEAVED]
            if sink is not None:  # 10% sampled: interleaved only, next to tracing off and every request
                tenth = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
                together.insert(
                    2,
                    targets.routeway(
                        procs.free_port(),
                        policy,
                        name=goals.TRACED_10,
                        otlp_endpoint=endpoint,
                        settings=tenth,
                    ),
                )
            if self.wanted("interleaved") and len(together) > 1:
                title = f"interleaved wrk rounds: {', '.join(s.name for s in together)}"
                traced = sink if any(s.name == TRACED for s in together) else None
                with self.phase(title), self.sink_window(traced, "interleaved"):
                    self.interleaved(together)
            held = [
                targets.routeway(procs.free_port(), policy),
                *[s for s in refs if s.name == "fastapi-aiohttp"],
            ]
            for spec in held:
                if self.wanted("streams") or self.wanted(spec.name):
                    with self.phase(f"{self.opts.streams} concurrent slow streams through {spec.name}"):
                        self.held_streams(spec)
            if self.wanted("gc"):
                with self.phase(f"garbage-collector pauses at {GC_RATE:g} req/s (Routeway)"):
                    self.gc_pauses(policy)
            if self.wanted("workers"):
                with self.phase("routeway --workers 2 vs 1 (unpinned)"):
                    self.workers(policy)
            if sink is not None:
                try:
                    self.results["tracing"]["sink_total"] = otlp_sink.stats(sink.port)
                except (OSError, RuntimeError) as exc:
                    self.note(f"OTLP sink: no final counts: {type(exc).__name__}: {exc}")
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        self.results["load_average_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        return self.results


def _settle(pids: list[int], quiet_s: float = 0.3, limit_s: float = 15.0) -> None:
    """Waits until no server burns CPU any more: a slow one (LiteLLM) still works through the requests
    queued during its round long after wrk stopped, which would slow whichever server is measured next."""
    deadline = time.monotonic() + limit_s
    before = sum(procs.cpu_s(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = sum(procs.cpu_s(p) for p in pids)
        if now - before < 0.05 * quiet_s:  # under 5% of a core: idle apart from timers
            return
        before = now
