"""Plots p50/p99 latency against offered load from a results JSON (run in bench/.venv, for matplotlib)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STYLE = {
    "upstream": ("direct upstream", "tab:gray"),
    "routeway": ("Routeway (1 worker, access log on)", "tab:blue"),
    "fastapi-aiohttp": ("FastAPI + aiohttp pass-through", "tab:green"),
    "litellm": ("LiteLLM proxy (1 worker)", "tab:red"),
}


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    for name, points in results["sweep"].items():
        label, color = STYLE.get(name, (name, None))
        ok = [p for p in points if p["completed"]]
        if not ok:
            continue
        rates = [p["offered_rps"] for p in ok]
        ax.plot(rates, [p["p50_ms"] for p in ok], "o-", color=color, label=f"{label} p50")
        ax.plot(rates, [p["p99_ms"] for p in ok], "s--", color=color, alpha=0.6, label=f"{label} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(sorted({p["offered_rps"] for pts in results["sweep"].values() for p in pts}))
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("latency (ms)")
    machine = results["machine"]
    ax.set_title(f"Latency vs offered load, small chat completions, 0 ms upstream\n{machine['cpu']}, 1 core")
    ax.grid(True, which="both", alpha=0.3)
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


if __name__ == "__main__":  # python -m bench.plot RESULTS.json OUT.png
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
