"""Instructions per request, counted by valgrind, for the servers of `bench.before_after`.

`python -m bench.instructions --baseline REV [--requests N] [--warm W]`: the wrk and open-loop figures of
`bench.before_after` swing ±15% between runs on a shared VM (steal time reaches the CPU-time figures
too), more than the 5% a refactor is allowed. An instruction count does not depend on what else the
machine is doing. Each server (the FastAPI + aiohttp reference, `routeway serve` of this tree, and
`routeway serve` importing REV's `gateway/`) is started twice under `valgrind --tool=cachegrind
--cache-sim=no` and sent W, then W + N, small non-streaming completions one after another on one
keep-alive connection; the difference of the two runs' instruction totals over N is the cost of one
request, start-up and warm-up cancelled out (PYTHONHASHSEED fixed so both runs hash alike). The count
covers the whole server process (Python, uvloop; not the kernel's side). The upstream runs natively.

Routeway runs with its access log off here: the log hands its lines to a thread in batches every 50 ms,
and under valgrind (threads serialised, GIL waits with timeouts) what that thread and the hand-overs
cost depends on wall time, so with the log on the count swung 0.5-1.2 M instructions a request between
runs. With it off, repeated runs agree within ~1.5% (the reference within 0.1%). A run takes a few
minutes and, unlike wrk's figures, does not care what else the machine is doing."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import tempfile
from pathlib import Path

from bench import payloads, procs, targets
from bench.before_after import servers
from bench.options import RESULTS_DIR
from bench.tracing_cost import export_revision

VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes"]


def send(port: int, n: int) -> None:
    """`n` completions on one keep-alive connection, each checked for a 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            conn.request("POST", payloads.CHAT_PATH, body=payloads.CHAT_BODY, headers=payloads.HEADERS)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:300]!r}")
    finally:
        conn.close()


def instructions(spec: targets.Spec, n: int, logs: Path, tag: str) -> int:
    """Total instructions of one valgrind'd run of `spec` that served the readiness probe and `n` requests."""
    out_dir = logs / f"cg-{spec.name}-{tag}"
    out_dir.mkdir()
    cmd = [*VALGRIND, f"--cachegrind-out-file={out_dir}/cg.%p", *spec.cmd]
    env = spec.env | {"PYTHONHASHSEED": "0"}
    wrapped = targets.Spec(f"{spec.name}-{tag}", spec.label, cmd, env, spec.port, ready_s=600.0)
    server = wrapped.start(logs)
    try:
        send(spec.port, n)
    finally:
        procs.stop(server, timeout_s=300.0)
    total = 0
    for f in out_dir.iterdir():
        summary = [line for line in f.read_text().splitlines() if line.startswith("summary:")]
        if not summary:
            raise RuntimeError(f"{f}: no summary line (did valgrind exit cleanly?)")
        total += int(summary[0].split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--requests", type=int, default=1000, help="requests in the difference")
    parser.add_argument("--warm", type=int, default=300, help="requests both runs send first")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    out = RESULTS_DIR / "instructions"
    out.mkdir(parents=True, exist_ok=True)
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        up = targets.upstream(procs.free_port(), slow_events=1, slow_interval=1.0)
        stack.enter_context(procs.running(up.start(logs)))
        policy = targets.write_policy(logs / "policy.yaml", up.port)
        baseline = export_revision(args.baseline, logs / "baseline")
        for spec in servers(policy, f"http://127.0.0.1:{up.port}", baseline, access_log=False):
            short = instructions(spec, args.warm, logs, "short")
            long = instructions(spec, args.warm + args.requests, logs, "long")
            per_request[spec.name] = (long - short) / args.requests
            print(f"{spec.name:<18} {per_request[spec.name]:>12,.0f} instructions/request", flush=True)
    ref, now, before = (per_request[k] for k in ("fastapi-aiohttp", "routeway", "routeway-before"))
    line = (
        f"instructions per request: routeway {now:,.0f} = {now / ref:.3f}x the reference; before "
        f"{before:,.0f} = {before / ref:.3f}x; after / before {now / before:.3f}"
    )
    print(line)
    (out / "results.json").write_text(json.dumps({"per_request": per_request, "summary": line}, indent=1))


if __name__ == "__main__":
    main()
