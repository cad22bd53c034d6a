"""The cost of tracing, one worker, interleaved: tracing off, every request sampled, 10% sampled.

`python -m bench.tracing_cost [--seconds S] [--rounds N] [--baseline REV] [--rate R]`: the bench upstream
and the local OTLP sink on the load core, four `routeway serve` (access log on, as in production: tracing
off, every request sampled, 10% sampled, tracing on with nothing sampled) on the server core, wrk rounds
(or open-loop ones at R req/s) alternating between them, each round starting with the next server, so
background load hits each alike. `--baseline REV` adds two more servers running git revision REV's
`gateway/` (every request and 10% sampled): before and after in the same run. Prints the median req/s
per variant, the ratio to tracing off, CPU per request (and the ratio paired round by round), and the
spans the sink received per gateway request."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure, otlp_sink, payloads, procs, targets, wrk
from bench.options import RESULTS_DIR

OFF, ALL, TENTH = "routeway", "routeway-tracing", "routeway-tracing-10pct"
NONE = "routeway-tracing-unsampled"  # tracing on, nothing sampled: the cost every request pays
BASE = "-baseline"  # suffix of the baseline revision's servers
TENTH_SETTINGS = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
NONE_SETTINGS = {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}


def specs(policy: Path, endpoint: str, baseline: Path | None = None) -> list[targets.Spec]:
    out = [
        targets.routeway(procs.free_port(), policy, name=OFF),
        targets.routeway(procs.free_port(), policy, name=ALL, otlp_endpoint=endpoint),
        targets.routeway(
            procs.free_port(), policy, name=TENTH, otlp_endpoint=endpoint, settings=TENTH_SETTINGS
        ),
        targets.routeway(
            procs.free_port(), policy, name=NONE, otlp_endpoint=endpoint, settings=NONE_SETTINGS
        ),
    ]
    if baseline is not None:  # the same entry point, importing `gateway` from the exported revision
        path = {"PYTHONPATH": str(baseline)}
        for name, extra in ((ALL, path), (TENTH, {**TENTH_SETTINGS, **path})):
            spec = targets.routeway(
                procs.free_port(), policy, name=name + BASE, otlp_endpoint=endpoint, settings=extra
            )
            out.append(spec)
    return out


def export_revision(rev: str, into: Path) -> Path:
    """`gateway/` as of git revision `rev`, extracted under `into` (which then goes on PYTHONPATH), with
    `policies/` beside it: gateway/policy/catalog.yaml is a link into it."""
    tar = subprocess.run(
        ["git", "archive", "--format=tar", rev, "gateway", "policies"],
        cwd=targets.ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


Servers = list[tuple[targets.Spec, procs.Server]]


def at_rate(port: int, pid: int, rate: int, seconds: float, out: Path) -> dict[str, Any]:
    """Open loop at a fixed rate: every server does the same requests per second, so CPU per request
    compares alike (under a closed loop a slower server also batches less per loop turn)."""
    body = measure.body_file(out, "chat", payloads.CHAT_BODY)
    cpu_before = procs.cpu_s(pid)
    r = measure.open_loop(port, body, rate, seconds, warmup_s=0.0, drain_s=3.0)
    cpu = procs.cpu_s(pid) - cpu_before
    n = r["sent"]
    r.update(rps=r["achieved_rps"], requests=n, cpu_s=round(cpu, 2))
    r["cpu_us_per_req"] = round(cpu / n * 1e6, 1) if n else None
    return r


def rounds(
    servers: Servers, sink: int, loads: list[int], seconds: float, n: int, out: Path, rate: bool = False
) -> dict[str, Any]:
    """`loads` are wrk's connections, or (`rate`) open-loop requests per second."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: {c: [] for c in loads} for s, _ in servers}
    before = otlp_sink.stats(sink)
    for i in range(n):
        for c in loads:
            for spec, server in measure.rotated(servers, i):
                if rate:
                    r = at_rate(spec.port, server.pid, c, seconds, out)
                else:
                    r = measure.measured_wrk(spec.url, server.pid, c, seconds, out)
                runs[spec.name][c].append(r)
                print(
                    f"round {i + 1} {'r' if rate else 'c'}={c:<4} {spec.name:<32} {r['rps']:>8,.0f} req/s  "
                    f"CPU {r['cpu_us_per_req']} us/req  errors {r['errors']}",
                    flush=True,
                )
    time.sleep(6.0)  # the last batches: the schedule delay is 5 s
    spans = otlp_sink.delta(otlp_sink.stats(sink), before).get("spans") or 0
    traced = {
        name: sum(r["requests"] for rs in runs[name].values() for r in rs) for name in runs if name != OFF
    }
    return {"runs": runs, "spans": spans, "traced_requests": traced}


def summary(data: dict[str, Any], conc: list[int], rate: bool = False) -> list[str]:
    """Per load and server: median req/s and its ratio to tracing off, median CPU per request, and the
    CPU ratio round by round (off's CPU per request / this one's, in the same round: the throughput
    ratio on a core of its own, paired so that load drifting between rounds cancels), its median."""

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    lines = []
    for c in conc:
        offs = data["runs"][OFF][c]
        off = median([r["rps"] for r in offs])
        for name in data["runs"]:
            rs = data["runs"][name][c]
            rps = median([r["rps"] for r in rs])
            cpus = [r["cpu_us_per_req"] or 0 for r in rs]
            paired = [o["cpu_us_per_req"] / x for o, x in zip(offs, cpus, strict=True) if x]
            every = ", ".join(f"{r['rps']:,.0f}" for r in rs)
            cpu_runs = ", ".join(f"{x:.0f}" for x in cpus)
            lines.append(
                f"{'r' if rate else 'c'}={c:<4} {name:<32} median {rps:>7,.0f} req/s ({rps / off:.2f}x of "
                f"off; runs {every}) CPU median {median(cpus):.0f} us/req (runs {cpu_runs}); "
                f"by CPU, paired: median {median(paired):.2f}x"
            )
    traced = data["traced_requests"]
    n_all = sum(n for name, n in traced.items() if name in (ALL, ALL + BASE))
    n_tenth = sum(n for name, n in traced.items() if name in (TENTH, TENTH + BASE))  # NONE sends none
    lines.append(
        f"sink: {data['spans']:,} spans for {n_all:,} requests all sampled and {n_tenth:,} 10% sampled "
        f"(3 spans each when sampled: expected ~{3 * n_all + 0.3 * n_tenth:,.0f})"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="32,128")
    parser.add_argument("--baseline", help="also run this git revision's gateway/ (before vs after)")
    parser.add_argument("--rate", help="open loop at these req/s instead of wrk (CPU per request alike)")
    args = parser.parse_args()
    conc = [int(c) for c in (args.rate or args.concurrency).split(",")]
    if wrk.ensure_installed() is None:
        raise SystemExit("wrk is not installed")
    out = RESULTS_DIR / "tracing-cost"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        up = targets.upstream(procs.free_port(), slow_events=1, slow_interval=1.0)
        stack.enter_context(procs.running(up.start(logs)))
        sink = targets.otlp_sink(procs.free_port())
        stack.enter_context(procs.running(sink.start(logs)))
        policy = targets.write_policy(logs / "policy.yaml", up.port)
        baseline = export_revision(args.baseline, logs / "baseline") if args.baseline else None
        servers = []
        for spec in specs(policy, f"http://127.0.0.1:{sink.port}", baseline):
            servers.append((spec, stack.enter_context(procs.running(spec.start(logs)))))
        for spec, _ in servers:  # warm-up
            wrk.run(spec.url, payloads.CHAT_BODY, conc[0], 2.0, out)
        data = rounds(servers, sink.port, conc, args.seconds, args.rounds, out, rate=bool(args.rate))
    lines = summary(data, conc, rate=bool(args.rate))
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"summary": lines, **data}, indent=1, default=str))


if __name__ == "__main__":
    main()
