"""`python -m bench` (what `make bench` runs): every phase, then the table, results JSON, plot and docs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench import options, report, venvs
from bench.run import Run

TEMPLATE = "# Benchmarks\n\nRun `make bench` (or `make bench QUICK=1`); the section below is generated.\n"


def command(opts: options.Options) -> str:
    if "MAKELEVEL" in os.environ:
        return "make bench" + (" QUICK=1" if opts.quick else "")
    return " ".join([".venv/bin/python -m bench", *sys.argv[1:]])


def plot(results_path: str, bench_venv: venvs.Venv) -> str | None:
    """Runs bench.plot in bench/.venv (matplotlib lives there); returns the PNG path for the docs."""
    if "matplotlib" not in bench_venv.available:
        print("  note: matplotlib unavailable in bench/.venv: no plot", flush=True)
        return None
    cmd = [bench_venv.python, "-m", "bench.plot", results_path, str(options.PLOT_PATH)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=options.ROOT, check=False, timeout=120)
    if done.returncode != 0:
        print(f"  note: plot failed: {done.stderr[-500:]}", flush=True)
        return None
    return os.path.relpath(options.PLOT_PATH, options.DOC_PATH.parent)


def main() -> None:
    opts = options.parse()
    results_path = options.RESULTS_DIR / "results.json"
    if opts.report_only:
        results = json.loads(results_path.read_text())
        bench_venv = venvs.bench_venv(install=False)
    else:
        print(f"Routeway benchmark, {opts.describe()}", flush=True)
        run = Run(opts, command(opts))
        results = run.execute()
        results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results_path.write_text(json.dumps(results, indent=1))
        bench_venv = run.bench_venv
    png = plot(str(results_path), bench_venv) if results["sweep"] else None
    section = report.markdown(results, png)
    print("\n" + section, flush=True)
    report.write_doc(options.DOC_PATH, section, TEMPLATE)
    print(f"\nwrote {options.DOC_PATH}, {results_path}" + (f", {options.PLOT_PATH}" if png else ""))


if __name__ == "__main__":
    main()
