"""A route that would have met a stated goal on the measured figures, as YAML ready to paste."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from gateway.workbench.stats import Figures

Minimise = Literal["cost", "latency", "energy"]
_OBJECTIVE: dict[str, str] = {"cost": "cheapest", "latency": "fastest", "energy": "greenest"}
# goal name → (Figures attribute, direction): "<" bounds a time, ">" a speed.
_METRICS: dict[str, tuple[str, str]] = {
    "p50_ttft": ("ttft_p50_ms", "<"),
    "p95_ttft": ("ttft_p95_ms", "<"),
    "p99_ttft": ("ttft_p99_ms", "<"),
    "p50_e2e": ("e2e_p50_ms", "<"),
    "p95_e2e": ("e2e_p95_ms", "<"),
    "tokens_per_s": ("tokens_per_s_p50", ">"),
    "error_rate": ("", "<"),
}
_TERM = re.compile(r"\s*([a-z0-9_]+)\s*([<>])\s*(\d+(?:\.\d+)?)\s*(ms|s|%)?\s*")


class GoalError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Bound:
    metric: str
    op: str
    value: float  # milliseconds for times, tokens/s for speeds, a fraction for error_rate

    def met(self, row: Figures) -> bool:
        if self.metric == "error_rate":
            return row.requests > 0 and (row.requests - row.ok) / row.requests < self.value
        measured = getattr(row, _METRICS[self.metric][0])
        if measured is None:
            return False
        return bool(measured < self.value if self.op == "<" else measured > self.value)


def parse_goal(text: str) -> list[Bound]:
    """`p95_ttft<800ms,tokens_per_s>100,error_rate<1%`: every bound must hold (times in ms unless `s`)."""
    bounds = []
    for raw in text.split(","):
        match = _TERM.fullmatch(raw)
        if match is None:
            raise GoalError(f"{raw.strip()!r} is not metric<value or metric>value")
        name, op, number, unit = match.groups()
        if name not in _METRICS:
            raise GoalError(f"unknown metric {name!r}; known: {', '.join(_METRICS)}")
        if op != _METRICS[name][1]:
            raise GoalError(f"{name} takes {_METRICS[name][1]!r}")
        value = float(number) * (1000 if unit == "s" else 1) / (100 if unit == "%" else 1)
        bounds.append(Bound(name, op, value))
    return bounds


@dataclass(frozen=True, slots=True)
class Suggestion:
    route: dict[str, Any]
    chosen: Figures | None
    rejected: dict[str, str]  # backend → which bound it missed

    def yaml(self) -> str:
        return yaml.safe_dump({"routes": [self.route]}, sort_keys=False)


def _key(minimise: Minimise, row: Figures) -> float:
    if minimise == "cost":
        return row.cost_usd / row.ok if row.ok else float("inf")
    if minimise == "energy":
        return row.joules_per_output_token
    return row.ttft_p95_ms if row.ttft_p95_ms is not None else float("inf")


def suggest(rows: list[Figures], bounds: list[Bound], minimise: Minimise, model: str) -> Suggestion:
    """The backends that met every bound, best first by `minimise`, as a route with the goal's
    constraints; None chosen when no backend met it (the route then lists none and says so)."""
    rejected: dict[str, str] = {}
    kept: list[Figures] = []
    for row in rows:
        missed = next((b for b in bounds if not b.met(row)), None)
        if row.ok == 0:
            rejected[row.backend] = "no successful request"
        elif missed is not None:
            rejected[row.backend] = f"missed {missed.metric}{missed.op}{missed.value:g}"
        else:
            kept.append(row)
    kept.sort(key=lambda r: _key(minimise, r))
    route: dict[str, Any] = {
        "name": f"bench-{re.sub(r'[^A-Za-z0-9._-]+', '-', model)}",
        "match": {"model": model},
        "objective": _OBJECTIVE[minimise],
        "backends": [r.backend for r in kept],
    }
    for b in bounds:
        if b.metric.endswith("_ttft"):
            route["max_ttft_ms"] = min(route.get("max_ttft_ms", b.value), b.value)
        elif b.metric == "tokens_per_s":
            route["min_tokens_per_s"] = b.value
    return Suggestion(route, kept[0] if kept else None, rejected)
