"""The benchmark sequence: start each server in turn, measure it, stop it; every result goes in one dict."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import machine, measure, payloads, procs, profiling, streams, targets, venvs, wrk
from bench.options import RESULTS_DIR, Options

Results = dict[str, Any]

SWEPT = ("upstream", "routeway", "fastapi-aiohttp", "litellm")  # latency vs offered load (the plot)
STREAMED = ("routeway", "fastapi-aiohttp")  # 1,000 held streams


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
            "profile": None,
            "versions": {},
        }
        self.bench_venv = venvs.Venv(venvs.BENCH_VENV)
        self.litellm_venv = venvs.Venv(venvs.LITELLM_VENV)

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
            self.results["ceiling"][name] = measure.throughput(url, self.opts, self.dir)
            self.results["fixed"][name] = measure.fixed_rate(
                upstream.port, self.body("chat", payloads.CHAT_BODY), self.opts, "chat"
            )
            self.results["ttfb"][name] = measure.fixed_rate(
                upstream.port, self.body("stream", payloads.STREAM_BODY), self.opts, "stream"
            )
            self.results["sweep"][name] = measure.sweep(
                upstream.port, self.body("chat", payloads.CHAT_BODY), self.opts
            )
        finally:
            procs.pin(upstream.pid, procs.LOAD_CORE)

    def sim_alone(self) -> None:
        spec = targets.sim_upstream(procs.free_port())
        self.results["labels"]["sim"] = spec.label
        with procs.running(spec.start(self.logs)):
            self.results["ceiling"]["sim"] = measure.throughput(spec.url, self.opts, self.dir)

    def target(self, spec: targets.Spec, extra: Callable[[procs.Server], None] | None = None) -> None:
        """Start, measure (throughput, latency at a fixed rate, TTFB, maybe the sweep), stop."""
        self.results["labels"][spec.name] = spec.label
        print(f"   {spec.label}: {' '.join(spec.cmd)}", flush=True)
        with procs.running(spec.start(self.logs)) as server:
            self.results["throughput"][spec.name] = measure.throughput(spec.url, self.opts, self.dir)
            chat, stream = self.body("chat", payloads.CHAT_BODY), self.body("stream", payloads.STREAM_BODY)
            self.results["fixed"][spec.name] = measure.fixed_rate(spec.port, chat, self.opts, "chat")
            self.results["ttfb"][spec.name] = measure.fixed_rate(spec.port, stream, self.opts, "stream")
            if spec.name in SWEPT:
                self.results["sweep"][spec.name] = measure.sweep(spec.port, chat, self.opts)
            if extra is not None:
                extra(server)
            if not server.alive():
                raise RuntimeError(f"{spec.name} died during the run:\n{server.log_tail()}")

    def profile(self, server: procs.Server) -> None:
        """py-spy on Routeway while wrk keeps it busy (the throughput numbers above were taken without it)."""
        if "py-spy" not in self.bench_venv.available:
            self.note("py-spy unavailable: no profile")
            return
        out = self.dir / "routeway-profile.speedscope.json"
        out.unlink(missing_ok=True)
        spy = profiling.record(self.bench_venv.bin("py-spy"), server.pid, self.opts.profile_s, out)
        time.sleep(0.5)
        url = f"http://127.0.0.1:{server.port}{payloads.CHAT_PATH}"
        wrk.run(url, payloads.CHAT_BODY, self.opts.concurrency[0], self.opts.profile_s + 1, self.dir)
        result = profiling.finish(spy, out, timeout_s=30)
        if result.error:
            self.note(f"profile: {result.error}")
        self.results["profile"] = asdict(result)
        print(f"    profile: {result.sampled_s} s of busy samples in {out}", flush=True)

    def held_streams(self, spec: targets.Spec) -> None:
        with procs.running(spec.start(self.logs)) as server:
            result = streams.run(server.port, server.pid, self.opts.streams, self.opts.stream_hold_s)
            self.results["streams"][spec.name] = asdict(result)
            print(
                f"    {spec.name}: {result.completed}/{result.streams} streams completed, max open at once "
                f"{result.max_open}, errors {result.errors} {result.error_kinds}, RSS {result.rss_before_mb}"
                f" -> peak {result.rss_peak_mb} MB",
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
            with procs.running(spec.start(self.logs)):
                self.results["workers"][str(n)] = measure.throughput(spec.url, self.opts, self.dir)

    # -- the whole run -----------------------------------------------------------------------------------

    def execute(self) -> Results:
        started = time.monotonic()
        if not self.setup():
            return self.results
        slow = max(1, round(self.opts.stream_hold_s))
        up = targets.upstream(procs.free_port(), slow_events=slow, slow_interval=1.0)
        root = f"http://127.0.0.1:{up.port}"
        policy = targets.write_policy(self.dir / "policy.yaml", up.port)
        with procs.running(up.start(self.logs)) as upstream:
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
                    with self.phase(spec.label):
                        self.target(spec, self.profile if spec.name == "routeway" else None)
            for name in STREAMED:
                if self.wanted(name):
                    with self.phase(f"{self.opts.streams} concurrent slow streams through {name}"):
                        fresh = next(s for s in specs if s.name == name)
                        self.held_streams(fresh)
            if self.wanted("workers"):
                with self.phase("routeway --workers 2 vs 1 (unpinned)"):
                    self.workers(policy)
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        return self.results
