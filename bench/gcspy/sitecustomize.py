"""Loaded by `python -m bench.gc_load` into the server under test (this folder goes first on PYTHONPATH).

SIGUSR1 starts counting the collector's runs per generation and their time (`gc.callbacks`); SIGUSR2 writes
them as JSON to $GCSPY_OUT, with the thresholds in force. Never used outside the bench.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from typing import Any

_runs = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]
_began = [0.0]


def _hook(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _began[0] = time.perf_counter()
    else:
        _runs[info["generation"]] += 1
        _seconds[info["generation"]] += time.perf_counter() - _began[0]


def _start(*_: Any) -> None:
    _runs[:] = [0, 0, 0]
    _seconds[:] = [0.0, 0.0, 0.0]
    if _hook not in gc.callbacks:
        gc.callbacks.append(_hook)


def _stop(*_: Any) -> None:
    report = {"runs": _runs, "seconds": _seconds, "threshold": gc.get_threshold()}
    with open(os.environ["GCSPY_OUT"], "w") as out:
        json.dump(report, out)


if os.environ.get("GCSPY_OUT"):
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
