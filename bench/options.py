"""Run options: durations, concurrency levels and rates, from command-line flags and BENCH_* env vars."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
PLOT_PATH = BENCH_DIR / "plots" / "latency-vs-load.png"
DOC_PATH = ROOT / "docs" / "benchmarks.md"


@dataclass(slots=True)
class Options:
    quick: bool = False
    duration_s: float = 10.0  # each closed-loop (wrk) run
    warmup_s: float = 2.0
    concurrency: tuple[int, ...] = (32, 128)
    fixed_rate: float = 200.0  # open-loop rate for added latency and streaming TTFB
    fixed_duration_s: float = 20.0  # p99 needs samples: 4,000 requests at 200 req/s
    sweep_rates: tuple[float, ...] = (100, 200, 400, 800, 1200, 1600, 2000, 2500, 3000, 4000)
    sweep_step_s: float = 4.0
    streams: int = 1000
    stream_hold_s: float = 15.0  # how long the slow upstream keeps each stream open
    profile_s: float = 10.0
    litellm: bool = True
    install: bool = True  # create the bench / LiteLLM venvs when missing
    only: tuple[str, ...] = field(default_factory=tuple)  # run only these targets (debugging)
    report_only: bool = False  # re-render docs and plot from the last results.json

    def describe(self) -> str:
        mode = "quick" if self.quick else "full"
        return (
            f"{mode} mode: wrk {self.duration_s:g} s per run at concurrency "
            f"{', '.join(map(str, self.concurrency))}; open loop {self.fixed_rate:g} req/s for "
            f"{self.fixed_duration_s:g} s; sweep steps {self.sweep_step_s:g} s; {self.streams} streams held "
            f"{self.stream_hold_s:g} s; py-spy {self.profile_s:g} s"
        )


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Routeway against a bare upstream, minimal pass-throughs and LiteLLM.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (also: BENCH_QUICK=1 or QUICK=1)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (BENCH_DURATION)")
    parser.add_argument("--fixed-duration", type=float, help="seconds of the 200 req/s runs")
    parser.add_argument("--streams", type=int, help="concurrent streams to hold (BENCH_STREAMS)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (BENCH_NO_LITELLM=1)")
    parser.add_argument("--no-install", action="store_true", help="never run pip; skip what is missing")
    parser.add_argument("--only", default="", help="comma-separated target names to run (debugging)")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render from bench/results/results.json"
    )
    args = parser.parse_args(argv)

    quick = args.quick or os.environ.get("BENCH_QUICK", os.environ.get("QUICK", "")) not in ("", "0")
    opts = Options(quick=quick)
    if quick:
        opts.duration_s, opts.warmup_s = 3.0, 1.0
        opts.fixed_duration_s = 4.0
        opts.sweep_rates = (200, 800, 1600, 2500, 4000)
        opts.sweep_step_s = 2.0
        opts.stream_hold_s = 8.0
        opts.profile_s = 5.0
    opts.duration_s = args.duration or _env_float("BENCH_DURATION", opts.duration_s)
    opts.fixed_duration_s = args.fixed_duration or _env_float("BENCH_FIXED_DURATION", opts.fixed_duration_s)
    opts.streams = args.streams or int(_env_float("BENCH_STREAMS", opts.streams))
    opts.litellm = not (args.no_litellm or os.environ.get("BENCH_NO_LITELLM", "") not in ("", "0"))
    opts.install = not args.no_install
    opts.only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    opts.report_only = args.report_only
    return opts
