"""Routeway now against an earlier revision, both against the FastAPI + aiohttp reference, in one run.

`python -m bench.before_after --baseline REV [--seconds S] [--rounds N] [--rate R] [--fixed-seconds F]
[--slice T]`: the bench upstream on the load core; the reference pass-through, `routeway serve` of this
tree and `routeway serve` importing REV's `gateway/` (access log on, tracing off, as `make bench` runs
them) on the server core. wrk at c=32 in N short rounds (each round starts with the next server, so
background load hits each alike); then one open loop at R req/s (200 by default) that takes turns of T s
(0.5) between the direct upstream and the three servers until each has had F s (30) of requests: the VM's
bursts of background load last seconds, so turns this short spread them over all four alike, and each
percentile comes from F x R requests (6,000: p99 is the 60th slowest) instead of the median of a few
short runs. The added latency is a server's percentile minus the direct upstream's. Prints each server's
median req/s and its ratio to the reference, the added p50/p99/p99.9, and after / before for both,
throughput also paired round by round. This is the check that a refactor kept the hot path's speed
(issue #10: within 5%)."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import measure, payloads, procs, targets, wrk
from bench.options import RESULTS_DIR
from bench.tracing_cost import export_revision
from bench.venvs import bench_venv

REF, NOW, BEFORE = "fastapi-aiohttp", "routeway", "routeway-before"
Latency = dict[str, dict[str, Any]]


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def servers(policy: Path, upstream_root: str, baseline: Path) -> list[targets.Spec]:
    refs, _ = targets.references(
        {REF: procs.free_port(), "asgi-aiohttp": 0, "fastapi-httpx": 0, "fastapi-httpx-aiohttp": 0},
        upstream_root,
        bench_venv(install=True),
    )
    ref = next(s for s in refs if s.name == REF)
    now = targets.routeway(procs.free_port(), policy, name=NOW)
    before = targets.routeway(procs.free_port(), policy, name=BEFORE, settings={"PYTHONPATH": str(baseline)})
    return [ref, now, before]


def throughput_rounds(
    running: list[tuple[targets.Spec, procs.Server]], conc: int, seconds: float, n: int, out: Path
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s, _ in running}
    for i in range(n):
        for spec, server in measure.rotated(running, i):
            r = measure.measured_wrk(spec.url, server.pid, conc, seconds, out)
            runs[spec.name].append(r)
            print(
                f"round {i + 1} c={conc} {spec.name:<18} {r['rps']:>8,.0f} req/s  "
                f"CPU {r['cpu_us_per_req']} us/req  errors {r['errors']}",
                flush=True,
            )
    return runs


def latency(ports: list[tuple[str, int]], body: Path, rate: float, seconds: float, slice_s: float) -> Latency:
    """One open loop taking turns between the servers: each gets `seconds` of requests at `rate`."""
    results = measure.open_loop_turns([port for _, port in ports], body, rate, seconds, slice_s)
    lat = {name: r for (name, _), r in zip(ports, results, strict=True)}
    for name, r in lat.items():
        print(
            f"{name:<18} at {rate:g} req/s: p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
            f"p99.9 {r['p999_ms']:.3f} ms  ({r['completed']} requests, errors {r['errors']})",
            flush=True,
        )
    return lat


def added(lat: Latency, name: str, key: str) -> float:
    return float(lat[name][key] - lat["upstream"][key])


def paired(runs: dict[str, list[dict[str, Any]]], key: str) -> float:
    """The median over rounds of this tree's figure ÷ the baseline's in the same round."""
    return _median([n[key] / b[key] for n, b in zip(runs[NOW], runs[BEFORE], strict=True) if b[key]])


def summary(runs: dict[str, list[dict[str, Any]]], lat: Latency) -> list[str]:
    rps = {name: _median([r["rps"] for r in rs]) for name, rs in runs.items()}
    cpu = {name: _median([r["cpu_us_per_req"] or 0.0 for r in rs]) for name, rs in runs.items()}
    lines = []
    for name in (REF, NOW, BEFORE):
        each = ", ".join(f"{r['rps']:,.0f}" for r in runs[name])
        lines.append(
            f"{name:<18} median {rps[name]:>8,.0f} req/s = {rps[name] / rps[REF]:.3f}x the reference "
            f"(runs {each}); CPU {cpu[name]:.0f} us/req; added p50 +{added(lat, name, 'p50_ms'):.3f} ms, "
            f"p99 +{added(lat, name, 'p99_ms'):.3f} ms, p99.9 +{added(lat, name, 'p999_ms'):.3f} ms"
        )
    ratio_now, ratio_before = rps[NOW] / rps[REF], rps[BEFORE] / rps[REF]
    lines.append(
        f"after / before: throughput (as x reference) {ratio_now:.3f} / {ratio_before:.3f} = "
        f"{ratio_now / ratio_before:.3f}; paired by round: req/s {paired(runs, 'rps'):.3f}, "
        f"CPU per request {paired(runs, 'cpu_us_per_req'):.3f}"
    )
    lines.append(
        "after / before, added latency: "
        + ", ".join(
            f"{label} {added(lat, NOW, key):+.3f} vs {added(lat, BEFORE, key):+.3f} ms "
            f"= {added(lat, NOW, key) / added(lat, BEFORE, key):.3f}"
            for label, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))
        )
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--seconds", type=float, default=4.0, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop rate for added latency")
    parser.add_argument(
        "--fixed-seconds",
        type=float,
        default=30.0,
        help="open-loop seconds of requests per server",
    )
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per server's turn in the open loop")
    args = parser.parse_args()
    if wrk.ensure_installed() is None:
        raise SystemExit("wrk is not installed")
    out = RESULTS_DIR / "before-after"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        up = targets.upstream(procs.free_port(), slow_events=1, slow_interval=1.0)
        stack.enter_context(procs.running(up.start(logs)))
        policy = targets.write_policy(logs / "policy.yaml", up.port)
        baseline = export_revision(args.baseline, logs / "baseline")
        specs = servers(policy, f"http://127.0.0.1:{up.port}", baseline)
        running = [(s, stack.enter_context(procs.running(s.start(logs)))) for s in specs]
        for spec, _ in running:  # warm-up
            wrk.run(spec.url, payloads.CHAT_BODY, args.concurrency, 2.0, out)
        runs = throughput_rounds(running, args.concurrency, args.seconds, args.rounds, out)
        body = measure.body_file(out, "chat", payloads.CHAT_BODY)
        ports = [("upstream", up.port)] + [(spec.name, spec.port) for spec, _ in running]
        lat = latency(ports, body, args.rate, args.fixed_seconds, args.slice)
    lines = summary(runs, lat)
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"summary": lines, "runs": runs, "latency": lat}, indent=1))


if __name__ == "__main__":
    main()
