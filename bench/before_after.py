"""Routeway now against an earlier revision, both against the FastAPI + aiohttp reference, in one run.

`python -m bench.before_after --baseline REV [--seconds S] [--rounds N] [--rate R] [--fixed-seconds F]`:
the bench upstream on the load core; the reference pass-through, `routeway serve` of this tree and
`routeway serve` importing REV's `gateway/` (access log on, tracing off, as `make bench` runs them) on
the server core. wrk at c=32 in interleaved rounds (each round starts with the next server, so
background load hits each alike), then the open loop at R req/s (200 by default) for F s per server,
in rotated rounds too; the median p50/p99 minus the direct upstream's median at the same rate is the
added latency. Prints each server's median req/s and its ratio to the reference, the added latency,
and after / before for both. This is the check that a refactor kept the hot path's speed (issue #10:
within 5%)."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import measure, payloads, procs, targets, wrk
from bench.options import RESULTS_DIR
from bench.tracing_cost import export_revision
from bench.venvs import bench_venv

REF, NOW, BEFORE = "fastapi-aiohttp", "routeway", "routeway-before"


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


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


def latency(port: int, body: Path, rate: float, seconds: float, label: str) -> dict[str, Any]:
    r = measure.open_loop(port, body, rate, seconds)
    print(
        f"{label:<28} at {rate:g} req/s: p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
        f"errors {r['errors']}",
        flush=True,
    )
    return r


def latency_rounds(
    ports: list[tuple[str, int]], body: Path, rate: float, seconds: float, n: int
) -> dict[str, dict[str, Any]]:
    """Open-loop runs in rotated rounds, like the wrk rounds; each server's median p50 and p99."""
    seen: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in ports}
    for i in range(n):
        for name, port in measure.rotated(ports, i):
            seen[name].append(latency(port, body, rate, seconds, f"round {i + 1} {name}"))
    return {
        name: {key: _median([r[key] for r in rs]) for key in ("p50_ms", "p99_ms")} | {"runs": rs}
        for name, rs in seen.items()
    }


def summary(runs: dict[str, list[dict[str, Any]]], lat: dict[str, dict[str, Any]]) -> list[str]:
    rps = {name: _median([r["rps"] for r in rs]) for name, rs in runs.items()}
    cpu = {name: _median([r["cpu_us_per_req"] or 0.0 for r in rs]) for name, rs in runs.items()}
    up = lat["upstream"]
    lines = []
    for name in (REF, NOW, BEFORE):
        added = (lat[name]["p50_ms"] - up["p50_ms"], lat[name]["p99_ms"] - up["p99_ms"])
        each = ", ".join(f"{r['rps']:,.0f}" for r in runs[name])
        lines.append(
            f"{name:<18} median {rps[name]:>8,.0f} req/s = {rps[name] / rps[REF]:.3f}x the reference "
            f"(runs {each}); CPU {cpu[name]:.0f} us/req; "
            f"added p50 +{added[0]:.3f} ms, p99 +{added[1]:.3f} ms"
        )
    ratio_now, ratio_before = rps[NOW] / rps[REF], rps[BEFORE] / rps[REF]
    lines.append(
        f"after / before: throughput (as x reference) {ratio_now:.3f} / {ratio_before:.3f} = "
        f"{ratio_now / ratio_before:.3f}; added p50 {lat[NOW]['p50_ms'] - up['p50_ms']:+.3f} vs "
        f"{lat[BEFORE]['p50_ms'] - up['p50_ms']:+.3f} ms, p99 {lat[NOW]['p99_ms'] - up['p99_ms']:+.3f} vs "
        f"{lat[BEFORE]['p99_ms'] - up['p99_ms']:+.3f} ms"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--seconds", type=float, default=8.0, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop rate for added latency")
    parser.add_argument(
        "--fixed-seconds", type=float, default=6.0, help="each open-loop run (one per server per round)"
    )
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
        lat = latency_rounds(ports, body, args.rate, args.fixed_seconds, args.rounds)
    lines = summary(runs, lat)
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"summary": lines, "runs": runs, "latency": lat}, indent=1))


if __name__ == "__main__":
    main()
