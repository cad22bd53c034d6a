"""Runs `routeway serve` with GC instrumentation: pause statistics, optionally the suggested gc.freeze()."""

from __future__ import annotations

import atexit
import gc
import json
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any


class PauseLog:
    """gc.callbacks hook: when (wall clock) and for how long each collection stopped the world."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, float]] = []  # (time.time() at the end, generation, pause ms)
        self._started = 0.0
        self.tracked_at_freeze: int | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause_ms = (time.perf_counter() - self._started) * 1000
            self.events.append((time.time(), info["generation"], round(pause_ms, 3)))

    def dump(self) -> str:
        return json.dumps({"tracked_at_freeze": self.tracked_at_freeze, "events": self.events})


def summarise(log: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """Pauses per generation between two wall-clock times (the load window, not start-up)."""
    out: dict[str, Any] = {"tracked_at_freeze": log.get("tracked_at_freeze")}
    for gen in (0, 1, 2):
        ms = sorted(p for t, g, p in log.get("events", []) if g == gen and start <= t <= end)
        out[f"gen{gen}"] = {
            "count": len(ms),
            "total_ms": round(sum(ms), 1),
            "max_ms": round(ms[-1], 2) if ms else 0.0,
        }
    return out


def _freeze_once_listening(port: int, log: PauseLog, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    gc.collect()
    log.tracked_at_freeze = len(gc.get_objects())
    gc.freeze()


def _take(args: list[str], flag: str, value: bool) -> tuple[str | None, list[str]]:
    if flag not in args:
        return None, args
    i = args.index(flag)
    if value:
        return args[i + 1], args[:i] + args[i + 2 :]
    return flag, args[:i] + args[i + 1 :]


def main() -> None:
    """`python -m bench.routeway_gc [--freeze] [--gc-log FILE] serve ...`

    `--freeze` runs `gc.collect()` then `gc.freeze()` once the server listens, so the ~100k objects built at
    start-up (FastAPI, pydantic, OpenTelemetry, ...) leave the collector's view; `--gc-log` writes every
    collection's end time, generation and pause as JSON at exit.
    """
    args = sys.argv[1:]
    freeze, args = _take(args, "--freeze", value=False)
    gc_log, args = _take(args, "--gc-log", value=True)
    log = PauseLog()
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs atexit hooks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if gc_log:
        gc.callbacks.append(log)
        atexit.register(lambda: Path(gc_log).write_text(log.dump()))
    if freeze:
        port = int(args[args.index("--port") + 1])
        threading.Thread(target=_freeze_once_listening, args=(port, log), daemon=True).start()
    from gateway.cli import main as routeway_main

    sys.argv = ["routeway", *args]
    routeway_main()


if __name__ == "__main__":
    main()
