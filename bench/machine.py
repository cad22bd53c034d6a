"""Describes the machine a run happened on: cores, CPU model, kernel, Python and key library versions."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

LIBRARIES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx", "orjson")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def library_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def describe() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count() or 1),
        "usable_cores": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "libraries": ", ".join(f"{k} {v}" for k, v in library_versions().items()),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
