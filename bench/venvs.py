"""Creates bench/.venv and bench/.venv-litellm on demand; what pip cannot install is skipped with a note."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.options import BENCH_DIR, RESULTS_DIR

BENCH_VENV = BENCH_DIR / ".venv"
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
# Pinned: the comparison is measured against a known release, and an unpinned install would take whatever
# PyPI serves that day (litellm 1.107.x was pulled from PyPI as compromised). Raise it on purpose, with a run.
LITELLM_REQ = "litellm[proxy]==1.106.2"
# Pinned to the project venv's versions so every pass-through runs the same web stack as Routeway.
PINNED = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx", "httpcore", "orjson")
EXTRAS = ("httpx-aiohttp", "matplotlib", "py-spy")
PIP_TIMEOUT_S = 900


@dataclass
class Venv:
    path: Path
    ok: bool = False
    available: set[str] = field(default_factory=set)  # extras that installed
    notes: list[str] = field(default_factory=list)

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)


def _pip(venv: Path, args: list[str], log: Path) -> bool:
    with log.open("a") as out:
        out.write(f"\n$ pip {' '.join(args)}\n")
        out.flush()
        try:
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def _create(path: Path) -> bool:
    if (path / "bin" / "python").exists():
        return True
    done = subprocess.run([sys.executable, "-m", "venv", str(path)], capture_output=True, check=False)
    return done.returncode == 0


def _pins() -> list[str]:
    pins: list[str] = []
    for name in PINNED:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _installed(venv: Path, requirement: str) -> bool:
    """Whether `requirement` ("name" or "name[extra]==version") is met in `venv`."""
    name, _, pinned = requirement.partition("==")
    dist = name.split("[")[0]
    check = f"assert m.version({dist!r}) == {pinned!r}" if pinned else f"m.version({dist!r})"
    probe = f"import importlib.metadata as m; {check}"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, check=False)
    return done.returncode == 0


def bench_venv(install: bool) -> Venv:
    """Creates bench/.venv when missing; each extra is optional, the pinned stack is not."""
    venv = Venv(BENCH_VENV)
    log = RESULTS_DIR / "pip-bench-venv.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pins = _pins()
    constraints = RESULTS_DIR / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    have_stack = BENCH_VENV.exists() and all(_installed(BENCH_VENV, p.split("==")[0]) for p in pins)
    if not have_stack:
        if not install:
            venv.notes.append("bench venv missing and --no-install given")
            return venv
        print(f"  creating {BENCH_VENV} (pip log: {log})", flush=True)
        if not _create(BENCH_VENV) or not _pip(BENCH_VENV, ["install", "-q", *pins], log):
            venv.notes.append(f"could not install the pinned web stack into {BENCH_VENV}; see {log}")
            return venv
    venv.ok = True
    for extra in EXTRAS:
        if _installed(BENCH_VENV, extra) or (
            install and _pip(BENCH_VENV, ["install", "-q", "-c", str(constraints), extra], log)
        ):
            venv.available.add(extra)
        else:
            venv.notes.append(f"{extra} did not install (pip log: {log}); its part of the run is skipped")
    return venv


def litellm_venv(install: bool) -> Venv:
    venv = Venv(LITELLM_VENV)
    log = RESULTS_DIR / "pip-litellm-venv.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if (LITELLM_VENV / "bin" / "litellm").exists() and _installed(LITELLM_VENV, LITELLM_REQ):
        venv.ok = True
        return venv
    if not install:
        venv.notes.append("LiteLLM venv missing and --no-install given")
        return venv
    print(f"  installing {LITELLM_REQ} into {LITELLM_VENV} (pip log: {log}; takes a few minutes)", flush=True)
    if _create(LITELLM_VENV) and _pip(LITELLM_VENV, ["install", "-q", LITELLM_REQ], log):
        venv.ok = (LITELLM_VENV / "bin" / "litellm").exists()
    if not venv.ok:
        venv.notes.append(f"pip install '{LITELLM_REQ}' failed (see {log}); LiteLLM skipped")
    return venv


def version(venv: Venv, dist: str) -> str:
    probe = f"import importlib.metadata as m; print(m.version({dist!r}))"
    done = subprocess.run([venv.python, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"
