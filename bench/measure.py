"""Measurements against one started server: wrk throughput, fixed-rate latency and TTFB, the load sweep."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from bench import payloads, procs, wrk
from bench.options import Options

T = TypeVar("T")


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """`items` in round `round_index`'s order: each round starts with the next one, so no server always
    goes first and background load hits each alike."""
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


def body_file(directory: Path, name: str, body: bytes) -> Path:
    path = directory / f"{name}.json"
    path.write_bytes(body)
    return path


def measured_wrk(url: str, pid: int, connections: int, duration_s: float, directory: Path) -> dict[str, Any]:
    """One wrk run plus the server's CPU time per request over it (all its threads and workers)."""
    cpu_before = procs.cpu_s(pid)
    result = asdict(wrk.run(url, payloads.CHAT_BODY, connections, duration_s, directory))
    cpu = procs.cpu_s(pid) - cpu_before
    result["cpu_s"] = round(cpu, 2)
    result["cpu_us_per_req"] = round(cpu / result["requests"] * 1e6, 1) if result["requests"] else None
    return result


def throughput(url: str, pid: int, opts: Options, directory: Path) -> dict[str, dict[str, Any]]:
    """wrk at each concurrency after a short warm-up; keys are the concurrency as text (JSON keys)."""
    wrk.run(url, payloads.CHAT_BODY, opts.concurrency[0], opts.warmup_s, directory)
    out: dict[str, dict[str, Any]] = {}
    for c in opts.concurrency:
        r = out[str(c)] = measured_wrk(url, pid, c, opts.duration_s, directory)
        print(
            f"    wrk c={c:<4} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:8.2f} ms"
            f"  errors {r['errors']}  server CPU {r['cpu_us_per_req']} us/req",
            flush=True,
        )
    return out


def open_loop(
    port: int,
    body: Path,
    rate: float,
    duration_s: float,
    *,
    warmup_s: float = 1.0,
    drain_s: float = 10.0,
) -> dict[str, Any]:
    """Runs bench.openloop in its own process on the load core and returns its JSON result."""
    return _openloop(
        [port], body, rate, duration_s, ["--warmup", f"{warmup_s:g}", "--drain", f"{drain_s:g}"]
    )[0]


def open_loop_turns(
    ports: Sequence[int], body: Path, rate: float, duration_s: float, slice_s: float
) -> list[dict[str, Any]]:
    """bench.openloop taking turns of `slice_s` seconds between `ports` (`duration_s` of requests each):
    one result per port, in order, measured over the same stretch of the machine's time."""
    return _openloop(ports, body, rate, duration_s, ["--slice", f"{slice_s:g}"])


def _openloop(
    ports: Sequence[int], body: Path, rate: float, duration_s: float, extra: list[str]
) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "bench.openloop", "--body-file", str(body), "--rate", f"{rate:g}"]
    cmd += [arg for port in ports for arg in ("--port", str(port))]
    cmd += ["--duration", f"{duration_s:g}", *extra]
    timeout = (1.0 + duration_s) * len(ports) + 80
    done = procs.run_pinned(cmd, procs.LOAD_CORE, timeout_s=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed ({done.returncode}): {done.stderr[-600:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return data if isinstance(data, list) else [data]


def fixed_rate(port: int, body: Path, rate: float, opts: Options, label: str) -> dict[str, Any]:
    result = open_loop(port, body, rate, opts.fixed_duration_s)
    print(
        f"    {label} at {rate:g} req/s: p50 {result['p50_ms']:.3f} ms  p99 "
        f"{result['p99_ms']:.3f} ms  TTFB p50 {result['ttfb_p50_ms']:.3f} ms  errors {result['errors']}"
        f"  (generator lag p99 {result['send_lag_p99_ms']:.2f} ms)",
        flush=True,
    )
    return result


def saturated(point: dict[str, Any]) -> bool:
    """The server no longer keeps up: stop raising the offered load."""
    sent = max(1, point["sent"])
    return bool(
        point["achieved_rps"] < 0.9 * point["offered_rps"]
        or point["timeouts"]
        or point["shed"]
        or point["errors"] > 0.01 * sent
        or point["p99_ms"] > 1000.0
    )


def sweep(port: int, body: Path, opts: Options) -> list[dict[str, Any]]:
    """Raises the open-loop rate step by step until the server saturates (that step is kept)."""
    points: list[dict[str, Any]] = []
    for rate in opts.sweep_rates:
        point = open_loop(port, body, rate, opts.sweep_step_s, warmup_s=0.5, drain_s=5.0)
        points.append(point)
        print(
            f"    sweep {rate:>6g} req/s: achieved {point['achieved_rps']:>8,.0f}"
            f"  p50 {point['p50_ms']:8.2f} ms  p99 {point['p99_ms']:8.2f} ms",
            flush=True,
        )
        if saturated(point):
            break
    return points
