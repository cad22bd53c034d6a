"""The issue's performance targets, checked against one run's results (met, missed or not measured)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REF = "fastapi-aiohttp"
GATEWAY = "routeway"  # one worker, access log on (production), tracing off


@dataclass(frozen=True, slots=True)
class Goal:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def rps(results: dict[str, Any], name: str, concurrency: str) -> float | None:
    row = results["throughput"].get(name) or results["ceiling"].get(name)
    if not row or concurrency not in row:
        return None
    value: float = row[concurrency]["rps"]
    return value


def added(results: dict[str, Any], table: str, name: str, key: str) -> float | None:
    """Target minus direct upstream for a latency field of an open-loop result."""
    base, row = results[table].get("upstream"), results[table].get(name)
    if not base or not row or not row["completed"]:
        return None
    value: float = row[key] - base[key]
    return value


def _throughput_goals(results: dict[str, Any]) -> list[Goal]:
    goals: list[Goal] = []
    for c in sorted(results["throughput"].get(GATEWAY, {}), key=int):
        ours, ref, lite = rps(results, GATEWAY, c), rps(results, REF, c), rps(results, "litellm", c)
        if ours and ref:
            goals.append(
                Goal(
                    f"throughput ≥ 1.0× FastAPI + aiohttp pass-through (c={c})",
                    f"{ours:,.0f} vs {ref:,.0f} req/s = {ours / ref:.2f}×",
                    ours >= ref,
                )
            )
        else:
            goals.append(Goal(f"throughput ≥ 1.0× FastAPI + aiohttp pass-through (c={c})", "-", None))
        if ours and lite:
            goals.append(
                Goal(
                    f"throughput ≥ 30× LiteLLM (c={c})",
                    f"{ours:,.0f} vs {lite:,.0f} req/s = {ours / lite:.1f}×",
                    ours >= 30 * lite,
                )
            )
        else:
            goals.append(Goal(f"throughput ≥ 30× LiteLLM (c={c})", "LiteLLM not measured", None))
    return goals


def _latency_goals(results: dict[str, Any]) -> list[Goal]:
    rate = results.get("fixed_rate", 200)
    p50 = added(results, "fixed", GATEWAY, "p50_ms")
    p99 = added(results, "fixed", GATEWAY, "p99_ms")
    ttfb = added(results, "ttfb", GATEWAY, "ttfb_p50_ms")
    return [
        Goal(
            f"added latency p50 ≤ 1.2 ms at {rate:g} req/s",
            "-" if p50 is None else f"+{p50:.3f} ms",
            None if p50 is None else p50 <= 1.2,
        ),
        Goal(
            f"added latency p99 ≤ 3 ms at {rate:g} req/s",
            "-" if p99 is None else f"+{p99:.3f} ms",
            None if p99 is None else p99 <= 3.0,
        ),
        Goal(
            "streaming added TTFB p50 ≤ 2 ms",
            "-" if ttfb is None else f"+{ttfb:.3f} ms",
            None if ttfb is None else ttfb <= 2.0,
        ),
    ]


def _streams_goal(results: dict[str, Any]) -> Goal:
    s = results["streams"].get(GATEWAY)
    if not s:
        return Goal("1,000 concurrent streams: RSS ≤ 250 MB, no error", "-", None)
    ok = s["errors"] == 0 and s["completed"] == s["streams"] and s["rss_peak_mb"] <= 250.0
    measured = (
        f"{s['streams']:,} streams: peak RSS {s['rss_peak_mb']:.0f} MB, {s['errors']} errors, "
        f"{s['completed']:,} completed, at most {s['max_open']:,} open at once"
    )
    return Goal(f"{s['streams']:,} concurrent streams: RSS ≤ 250 MB, no error", measured, ok)


def _workers_goal(results: dict[str, Any]) -> list[Goal]:
    w = results["workers"]
    goals = []
    for c in sorted(w.get("2", {}), key=int):
        one, two = w.get("1", {}).get(c), w["2"][c]
        if one:
            ratio = two["rps"] / one["rps"] if one["rps"] else 0.0
            goals.append(
                Goal(
                    f"--workers 2 ≥ 1.6× one worker (c={c}, both unpinned)",
                    f"{two['rps']:,.0f} vs {one['rps']:,.0f} req/s = {ratio:.2f}×",
                    ratio >= 1.6,
                )
            )
    return goals or [Goal("--workers 2 ≥ 1.6× one worker", "-", None)]


def evaluate(results: dict[str, Any]) -> list[Goal]:
    return [
        *_throughput_goals(results),
        *_latency_goals(results),
        _streams_goal(results),
        *_workers_goal(results),
    ]
