"""The collector's work per request under wrk at c=32, for this tree and earlier revisions.

`python -m bench.gc_load [--seconds S] [REV ...]`: `routeway serve` runs with bench/gcspy on PYTHONPATH
(`gc.callbacks`); wrk warms it for 3 s, then the hook counts while wrk loads it at 32 connections for S
seconds; the collections of each generation and the collector's time per request are printed. Under a
closed loop the young generation counts the objects of the requests in flight, which a sequential count
(`bench.calls`) or a light open loop do not show. The times follow the machine's load; the counts less so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path

from bench import payloads, procs, targets, wrk
from bench.calls import serving, spy_report

SPY = Path(__file__).parent / "gcspy"


def measured(spec: targets.Spec, out: Path, seconds: float, logs: Path) -> str:
    server = spec.start(logs)
    try:
        wrk.run(spec.url, payloads.CHAT_BODY, 32, 3.0, logs)
        os.kill(server.pid, signal.SIGUSR1)
        result = wrk.run(spec.url, payloads.CHAT_BODY, 32, seconds, logs)
        spy_report(server.pid, out)
    finally:
        procs.stop(server)
    report = json.loads(out.read_text())
    n = max(1, result.requests)
    runs = report["runs"]
    return (
        f"{result.rps:8.1f} req/s, gc threshold {report['threshold'][0]}: collections gen0/1/2 "
        f"{runs[0]} / {runs[1]} / {runs[2]} ({sum(runs) / n:.3f} per request), "
        f"{sum(report['seconds']) * 1e6 / n:5.1f} µs of collector time per request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("revisions", nargs="*", help="git revisions to compare with this tree")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        policy, trees = serving(stack, logs, args.revisions)
        for i, (label, src) in enumerate(trees):
            out = logs / f"gc-{i}.json"
            env = {"PYTHONPATH": f"{SPY}:{src}", "GCSPY_OUT": str(out)}
            spec = targets.routeway(procs.free_port(), policy, name=f"gc-{i}", settings=env)
            print(f"{label:<12} {measured(spec, out, args.seconds, logs)}", flush=True)


if __name__ == "__main__":
    main()
