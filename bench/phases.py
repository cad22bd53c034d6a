"""Issue 14's recovery scenarios over several recovery phases: the expectation, not one sample.

`bench.scenarios` runs each scenario once, with its fault and recovery at fixed moments (30% and 60% of the
run). Where the recovery then falls between two breaker trials (0.5-0.7 s apart) moves a `cheapest` run's
cost by several percent, the same every run: one phase is one sample. This runs the chosen scenarios
(default c and d) with the run's length stepped so the recovery lands at evenly spaced phases across
`BENCH_PHASE_SPAN_S` (0.6 s: about one trial interval), Routeway and the oracle each time, and prints each
run's cost ÷ the oracle's, the requests sent after the recovery that missed the recovered backend, and the
mean, min and max over the phases.

Run: `.venv/bin/python -m bench.phases` (about 45 s a phase; BENCH_ONLY=c,d, BENCH_PHASES=5,
BENCH_PHASE_SPAN_S, BENCH_RATE, BENCH_DURATION_S as in bench.scenarios). Loopback only; stdout only.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.scenarios import SCENARIOS, Result, Scenario, drive, routeway, start_sims, summary


def missed(sc: Scenario, rs: list[Result], duration: float) -> int:
    """Requests sent after the recovery that did not go to the recovered backend."""
    at, name = sc.recovers
    return sum(1 for r in rs if r.at >= at * duration and r.backend != name)


def one(sc: Scenario, rate: float, duration: float, tmp: Path) -> tuple[float, int, int, float]:
    """(cost ÷ the oracle's, Routeway's missed, the oracle's missed, probe share) for one run length."""
    proc, sims = start_sims(sc)
    try:
        ours = routeway(sc, rate, duration, sims, tmp)
        oracle = asyncio.run(drive(sc, "oracle", rate, duration, sims, None))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rw, orc = summary(sc, ours, duration), summary(sc, oracle, duration)
    return rw["cost"] / orc["cost"], missed(sc, ours, duration), missed(sc, oracle, duration), rw["probes"]


def main() -> None:
    rate = float(os.environ.get("BENCH_RATE", "100"))
    base = float(os.environ.get("BENCH_DURATION_S", "15"))
    phases = int(os.environ.get("BENCH_PHASES", "5"))
    span = float(os.environ.get("BENCH_PHASE_SPAN_S", "0.6"))
    only = os.environ.get("BENCH_ONLY", "c,d").split(",")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"`.venv/bin/python -m bench.phases`: {rate:g} req/s, {phases} phases across {span:g} s, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start {load}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for sc in (s for s in SCENARIOS if s.key in only):
            at = sc.recovers[0]
            rows, ratios = [], []
            for i in range(phases):
                duration = base + i * span / phases / at  # the recovery moves span / phases each time
                ratio, ours, oracle, probes = one(sc, rate, duration, Path(tmp))
                ratios.append(ratio)
                rows.append(f"| {at * duration:.2f} s | {ratio:.3f}× | {ours} | {oracle} | {probes:.2%} |")
                print(f"({sc.key}) recovery at {at * duration:.2f} s: {ratio:.3f}×", flush=True)
            print(f"\n#### ({sc.key}) {sc.title} — `{sc.objective}`\n")
            print("| recovery at | cost ÷ oracle | missed after recovery | oracle's missed | probes |")
            print("|---|---|---|---|---|")
            print("\n".join(rows))
            print(
                f"\nMean {statistics.fmean(ratios):.3f}×, min {min(ratios):.3f}×, "
                f"max {max(ratios):.3f}× over {phases} phases.\n"
            )


if __name__ == "__main__":
    main()
