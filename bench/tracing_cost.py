"""The cost of tracing, one worker, interleaved: tracing off, every request sampled, 10% sampled.

`python -m bench.tracing_cost [--seconds S] [--rounds N]`: the bench upstream and the local OTLP sink on
the load core, three `routeway serve` (access log on, as in production) on the server core, wrk rounds
alternating between them so background load hits each alike. Prints the median req/s per variant, the
ratio to tracing off, CPU per request, and the spans the sink received per gateway request."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure, otlp_sink, payloads, procs, targets, wrk
from bench.options import RESULTS_DIR

OFF, ALL, TENTH = "routeway", "routeway-tracing", "routeway-tracing-10pct"
TENTH_SETTINGS = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


def specs(policy: Path, endpoint: str) -> list[targets.Spec]:
    return [
        targets.routeway(procs.free_port(), policy, name=OFF),
        targets.routeway(procs.free_port(), policy, name=ALL, otlp_endpoint=endpoint),
        targets.routeway(
            procs.free_port(), policy, name=TENTH, otlp_endpoint=endpoint, settings=TENTH_SETTINGS
        ),
    ]


Servers = list[tuple[targets.Spec, procs.Server]]


def rounds(servers: Servers, sink: int, conc: list[int], seconds: float, n: int, out: Path) -> dict[str, Any]:
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {s.name: {c: [] for c in conc} for s, _ in servers}
    before = otlp_sink.stats(sink)
    for i in range(n):
        for c in conc:
            for spec, server in servers:
                r = measure.measured_wrk(spec.url, server.pid, c, seconds, out)
                runs[spec.name][c].append(r)
                print(
                    f"round {i + 1} c={c:<4} {spec.name:<24} {r['rps']:>8,.0f} req/s  "
                    f"CPU {r['cpu_us_per_req']} us/req  errors {r['errors']}",
                    flush=True,
                )
    time.sleep(6.0)  # the last batches: the schedule delay is 5 s
    spans = otlp_sink.delta(otlp_sink.stats(sink), before).get("spans") or 0
    traced = {name: sum(r["requests"] for rs in runs[name].values() for r in rs) for name in (ALL, TENTH)}
    return {"runs": runs, "spans": spans, "traced_requests": traced}


def summary(data: dict[str, Any], conc: list[int]) -> list[str]:
    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    lines = []
    for c in conc:
        off = median([r["rps"] for r in data["runs"][OFF][c]])
        for name in (OFF, ALL, TENTH):
            rs = data["runs"][name][c]
            rps = median([r["rps"] for r in rs])
            cpu = median([r["cpu_us_per_req"] or 0 for r in rs])
            every = ", ".join(f"{r['rps']:,.0f}" for r in rs)
            lines.append(
                f"c={c:<4} {name:<24} median {rps:>7,.0f} req/s ({rps / off:.2f}x of off; runs {every}) "
                f"CPU {cpu:.0f} us/req"
            )
    n_all, n_tenth = data["traced_requests"][ALL], data["traced_requests"][TENTH]
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
    args = parser.parse_args()
    conc = [int(c) for c in args.concurrency.split(",")]
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
        servers = []
        for spec in specs(policy, f"http://127.0.0.1:{sink.port}"):
            servers.append((spec, stack.enter_context(procs.running(spec.start(logs)))))
        for spec, _ in servers:  # warm-up
            wrk.run(spec.url, payloads.CHAT_BODY, conc[0], 2.0, out)
        data = rounds(servers, sink.port, conc, args.seconds, args.rounds, out)
    lines = summary(data, conc)
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"summary": lines, **data}, indent=1, default=str))


if __name__ == "__main__":
    main()
