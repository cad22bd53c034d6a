"""Closed-loop throughput with wrk: a Lua script POSTs the body and prints one JSON line of results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from bench import payloads, procs

_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    duration_s: float
    requests: int
    rps: float
    errors: int  # connect + read + write + timeout + non-2xx/3xx
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def ensure_installed() -> str | None:
    """Returns the path of wrk, installing Debian's package when running as root; None if unavailable."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("  wrk missing: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for refresh_lists_first in (False, True):
        if refresh_lists_first:
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, capture_output=True, check=False, timeout=600
            )
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        subprocess.run(install, env=env, capture_output=True, check=False, timeout=600)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


def script(body: bytes, directory: Path) -> Path:
    path = directory / f"post-{zlib.crc32(body):08x}.lua"
    path.write_text(_LUA.format(body=body.decode(), key=payloads.BENCH_KEY))
    return path


def run(
    url: str, body: bytes, connections: int, duration_s: float, directory: Path, timeout_s: float = 5.0
) -> WrkResult:
    """One wrk thread on the load core (one thread drives >100k req/s here, far above any target)."""
    lua = script(body, directory)
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(lua),
        url,
    ]
    done = procs.run_pinned(cmd, procs.LOAD_CORE, timeout_s=duration_s + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        connections=connections,
        duration_s=round(seconds, 2),
        requests=raw["requests"],
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        errors=errors,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
