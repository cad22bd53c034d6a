"""Samples a running server with py-spy (speedscope output) and summarises where its CPU time goes."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_SITE = re.compile(r"site-packages/([^/]+)/")
_STDLIB = re.compile(r"/lib/python3\.\d+/([^/]+?)(?:\.py|/)")


@dataclass(slots=True)
class Profile:
    path: str
    sampled_s: float  # CPU-busy time seen (py-spy skips idle threads), all threads together
    threads: list[tuple[str, float]] = field(default_factory=list)  # share of the busy time per thread
    by_package: list[tuple[str, float]] = field(default_factory=list)  # self time, %
    top_self: list[tuple[str, float]] = field(default_factory=list)
    top_routeway: list[tuple[str, float]] = field(default_factory=list)  # gateway/ frames, inclusive %
    error: str | None = None


def package(file: str) -> str:
    """Which code a frame belongs to: Routeway's own, a library, or the standard library."""
    if "/gateway/" in file and "site-packages" not in file:
        return "routeway (gateway/)"
    if m := _SITE.search(file):
        return m.group(1)
    if m := _STDLIB.search(file):
        return f"stdlib {m.group(1)}"
    return file or "?"


def _function(frame: dict[str, object]) -> str:
    """A frame without its line: py-spy makes one frame per line, the summary wants one per function."""
    file = str(frame.get("file", ""))
    where = file.split("site-packages/")[-1] if "site-packages/" in file else file.split("/work/main/")[-1]
    return f"{frame.get('name', '?')} ({re.sub(r'.*/lib/python3[.][0-9]+/', '', where)})"


def summarise(path: Path, top: int = 15) -> Profile:
    doc = json.loads(path.read_text())
    frames: list[dict[str, object]] = doc["shared"]["frames"]
    names = [_function(f) for f in frames]
    files = [str(f.get("file", "")) for f in frames]
    self_time: Counter[str] = Counter()  # py-spy's weights are seconds
    inclusive: Counter[str] = Counter()
    by_pkg: Counter[str] = Counter()
    per_thread: Counter[str] = Counter()
    total = 0.0
    for prof in doc["profiles"]:
        thread = re.sub(r"^Thread \d+ ", "", str(prof.get("name", "?"))).strip('"')
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            if not stack:
                continue
            total += weight
            per_thread[thread] += weight
            self_time[names[stack[-1]]] += weight
            by_pkg[package(files[stack[-1]])] += weight
            for name in {
                names[i] for i in stack if "/gateway/" in files[i] and "gateway/cli.py" not in files[i]
            }:
                inclusive[name] += weight
    if not total:
        return Profile(str(path), 0.0, error="no samples")

    def pct(n: float) -> float:
        return round(100.0 * n / total, 1)

    return Profile(
        path=str(path),
        sampled_s=round(total, 2),
        threads=[(name, pct(n)) for name, n in per_thread.most_common()],
        by_package=[(name, pct(n)) for name, n in by_pkg.most_common(top)],
        top_self=[(name, pct(n)) for name, n in self_time.most_common(top)],
        top_routeway=[(name, pct(n)) for name, n in inclusive.most_common(top)],
    )


def record(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Starts py-spy in the background (it needs ptrace rights: root or CAP_SYS_PTRACE)."""
    cmd = [py_spy, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "200"]
    cmd += ["--nonblocking", "--format", "speedscope", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], out: Path, timeout_s: float) -> Profile:
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    if proc.returncode != 0 or not out.exists():
        text = output.decode(errors="replace").strip()[-400:]
        return Profile(str(out), 0.0, error=f"py-spy failed ({proc.returncode}): {text}")
    return summarise(out)
