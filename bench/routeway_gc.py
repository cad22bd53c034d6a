"""Runs `routeway serve` with GC instrumentation: the collector's pauses (the gateway freezes itself)."""

from __future__ import annotations

import atexit
import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any


class PauseLog:
    """gc.callbacks hook: when (wall clock) and for how long each collection stopped the world."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, float]] = []  # (time.time() at the end, generation, pause ms)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause_ms = (time.perf_counter() - self._started) * 1000
            self.events.append((time.time(), info["generation"], round(pause_ms, 3)))

    def dump(self) -> str:
        # At exit: the objects the gateway's own gc.freeze() at start-up moved out of the collector's view.
        return json.dumps({"frozen": gc.get_freeze_count(), "events": self.events})


def summarise(log: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """Pauses per generation between two wall-clock times (the load window, not start-up)."""
    out: dict[str, Any] = {"frozen": log.get("frozen")}
    for gen in (0, 1, 2):
        ms = sorted(p for t, g, p in log.get("events", []) if g == gen and start <= t <= end)
        out[f"gen{gen}"] = {
            "count": len(ms),
            "total_ms": round(sum(ms), 1),
            "max_ms": round(ms[-1], 2) if ms else 0.0,
        }
    return out


def _take(args: list[str], flag: str) -> tuple[str | None, list[str]]:
    """The value of `flag VALUE` in `args`, and `args` without both."""
    if flag not in args:
        return None, args
    i = args.index(flag)
    return args[i + 1], args[:i] + args[i + 2 :]


def main() -> None:
    """`python -m bench.routeway_gc [--gc-log FILE] serve ...`

    `--gc-log` writes every collection's end time, generation and pause as JSON at exit, with the number of
    objects the gateway froze (`gc.freeze()` once started).
    """
    args = sys.argv[1:]
    gc_log, args = _take(args, "--gc-log")
    log = PauseLog()
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs atexit hooks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if gc_log:
        gc.callbacks.append(log)
        atexit.register(lambda: Path(gc_log).write_text(log.dump()))
    from gateway.cli import main as routeway_main

    sys.argv = ["routeway", *args]
    routeway_main()


if __name__ == "__main__":
    main()
