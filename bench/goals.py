"""The issue's performance targets, checked against one run's results (met, missed or not measured)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REF = "fastapi-aiohttp"
GATEWAY = "routeway"  # one worker, access log on (production), tracing off
TRACED = "routeway-tracing"  # the same with tracing on, exporting to a local OTLP receiver
TRACED_10 = "routeway-tracing-10pct"  # the same, 10% of requests sampled (parentbased_traceidratio 0.1)


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


def paired_rps(results: dict[str, Any], a: str, b: str, concurrency: str) -> tuple[float, float, str] | None:
    """Throughputs of two servers, preferring the interleaved rounds (medians) when both took part."""
    inter = results.get("interleaved") or {}
    if concurrency in inter.get(a, {}) and concurrency in inter.get(b, {}):
        return inter[a][concurrency]["rps"], inter[b][concurrency]["rps"], "interleaved medians"
    x, y = rps(results, a, concurrency), rps(results, b, concurrency)
    return (x, y, "one after the other") if x and y else None


def _throughput_goals(results: dict[str, Any]) -> list[Goal]:
    goals: list[Goal] = []
    measured = {
        **results["throughput"].get(GATEWAY, {}),
        **(results.get("interleaved") or {}).get(GATEWAY, {}),
    }
    for c in sorted(measured, key=int):
        for other, factor, what in (
            (REF, 1.0, "FastAPI + aiohttp pass-through"),
            ("litellm", 30.0, "LiteLLM"),
        ):
            text = f"throughput ≥ {'1.0' if factor == 1 else f'{factor:g}'}× {what} (c={c})"
            pair = paired_rps(results, GATEWAY, other, c)
            if pair is None:
                goals.append(Goal(text, "not measured", None))
                continue
            ours, theirs, how = pair
            shown = f"{ours:,.0f} vs {theirs:,.0f} req/s = {ours / theirs:.2f}× ({how})"
            goals.append(Goal(text, shown, ours >= factor * theirs))
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


def _streams_goal(results: dict[str, Any], name: str, setting: str) -> Goal:
    s = results["streams"].get(name)
    n = s["streams"] if s else 1000
    text = f"{n:,} concurrent streams: RSS ≤ 250 MB, no error ({setting})"
    if not s:
        return Goal(text, "-", None)
    # Concurrent means open at the same time: streams queued behind a connection pool do not count.
    ok = s["errors"] == 0 and s["completed"] == n and s["max_open"] >= n and s["rss_peak_mb"] <= 250.0
    measured = (
        f"peak RSS {s['rss_peak_mb']:.0f} MB, {s['errors']} errors, {s['completed']:,} completed, "
        f"at most {s['max_open']:,} open at once (first event up to {s['first_event_max_s']:.1f} s)"
    )
    return Goal(text, measured, ok)


def _workers_goal(results: dict[str, Any]) -> list[Goal]:
    w = results["workers"]
    goals = []
    for c in sorted(w.get("2", {}), key=int):
        one, two = w.get("1", {}).get(c), w["2"][c]
        pinned = rps(results, GATEWAY, c)
        if one and one["rps"]:
            ratio = two["rps"] / one["rps"]
            versus_pinned = f"; {two['rps'] / pinned:.2f}× the pinned single worker" if pinned else ""
            goals.append(
                Goal(
                    f"--workers 2 ≥ 1.6× one worker (c={c}, both unpinned)",
                    f"{two['rps']:,.0f} vs {one['rps']:,.0f} req/s = {ratio:.2f}×{versus_pinned}",
                    ratio >= 1.6,
                )
            )
    return goals or [Goal("--workers 2 ≥ 1.6× one worker", "-", None)]


def evaluate(results: dict[str, Any]) -> list[Goal]:
    return [
        *_throughput_goals(results),
        *_latency_goals(results),
        _streams_goal(results, GATEWAY, "defaults"),
        *_workers_goal(results),
    ]
