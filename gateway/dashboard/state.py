"""The JSON behind the dashboard (GET /admin/state), built on demand from what the gateway already keeps."""

from __future__ import annotations

import time
from typing import Any

from gateway.api.admin import candidate_json, dropped_json
from gateway.events import RequestRecord
from gateway.observability.recent import (
    BUCKET_S,
    COST,
    ERRORS,
    FAILOVERS,
    HEDGES,
    JOULES,
    REQUESTS,
    TOKENS_IN,
    TOKENS_OUT,
    WIDTH,
    Recent,
    Rows,
)
from gateway.providers.base import Target
from gateway.routing.hardware import joules_per_token
from gateway.runtime import Runtime
from gateway.telemetry import Stats

WINDOWS_S = {"5m": 300, "15m": 900, "60m": 3600}


def build_state(rt: Runtime) -> dict[str, Any]:
    now, mono = time.time(), time.monotonic()
    recent = rt.recent
    return {
        "now": round(now, 3),
        "started": rt.started,
        "policy": rt.catalog.fingerprint,
        "routes": [
            {"name": r.name, "match": r.match.model, "objective": r.objective, "backends": r.backends}
            for r in rt.catalog.routes
        ],
        "fleet": fleet(rt, now, mono),
        "traffic": traffic(recent, now) if recent is not None else None,
        "money": money(recent, now) if recent is not None else None,
        "decisions": [decision(req) for req in reversed(recent.decisions)] if recent is not None else [],
    }


def fleet(rt: Runtime, now: float, mono: float) -> list[dict[str, Any]]:
    """One row per (backend, provider model); logical models that share it are listed together."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    snap = rt.store.snapshot() if rt.store is not None else None
    for logical, targets in rt.catalog.targets.items():
        for t in targets:
            key = t.key
            row = rows.get(key)
            if row is None:
                stats = snap.get(key) if snap is not None else None
                row = rows[key] = _fleet_row(rt, t, stats, now, mono)
            row["models"].append(logical)
    return sorted(rows.values(), key=lambda r: (r["backend"], r["model_id"]))


def _fleet_row(rt: Runtime, t: Target, st: Stats | None, now: float, mono: float) -> dict[str, Any]:
    health = rt.router.health
    state, wait = health.breakers.peek(t.health_key) if health is not None else ("closed", 0.0)
    tried = rt.router.watch.last_tried(t)
    row: dict[str, Any] = {
        "backend": t.backend,
        "model_id": t.model_id,
        "models": [],
        "provider": t.provider,
        "hardware": t.hardware,
        "input_price": t.input_price,
        "output_price": t.output_price,
        "joules_per_token": joules_per_token(t.hardware, t.joules_per_token),
        "breaker": state,
        "breaker_retry_s": round(wait, 2) if state == "open" else None,
        "last_tried_s": round(mono - tried, 2) if tried is not None else None,
    }
    row.update(_telemetry(st, now))
    return row


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 1) if seconds is not None else None


def _telemetry(st: Stats | None, now: float) -> dict[str, Any]:
    if st is None:
        return {"samples": 0.0, "in_flight": 0, "failure_rate": 0.0}
    out: dict[str, Any] = {
        "samples": round(st.samples, 2),
        "ttft_p50_ms": _ms(st.ttft_p50_s),
        "ttft_p95_ms": _ms(st.ttft_p95_s),
        "latency_ms": _ms(st.latency_s),
        "tokens_per_s": round(st.tokens_per_s, 1) if st.tokens_per_s is not None else None,
        "in_flight": st.in_flight,
        "failure_rate": round(st.failure_rate, 4),
        "rate_limited_s": None,
    }
    if st.retry_at is not None and st.retry_at > now:
        out["rate_limited_s"] = round(st.retry_at - now, 2)
    head, seen = st.headroom, st.headroom_at
    if head is not None and seen is not None:
        elapsed = now - seen
        out["requests_remaining"] = head.requests_after(elapsed)
        out["requests_limit"] = head.requests_limit
        out["tokens_remaining"] = head.tokens_after(elapsed)
        out["tokens_limit"] = head.tokens_limit
        resets = [r - elapsed for r in (head.requests_reset_s, head.tokens_reset_s) if r is not None]
        out["reset_s"] = round(max(0.0, min(resets)), 2) if resets else None
    return out


def traffic(recent: Recent, now: float) -> dict[str, Any]:
    """Per window: totals and the split across backends per route; plus the last hour as a time series."""
    windows: dict[str, Any] = {}
    for name, seconds in WINDOWS_S.items():
        rows = recent.totals(seconds, now)
        total = _sum(rows)
        split: dict[str, dict[str, int]] = {}
        for (route, backend), row in rows.items():
            split.setdefault(route, {})[backend] = int(row[REQUESTS])
        windows[name] = {
            "requests": int(total[REQUESTS]),
            "errors": int(total[ERRORS]),
            "error_rate": round(total[ERRORS] / total[REQUESTS], 4) if total[REQUESTS] else 0.0,
            "failovers": int(total[FAILOVERS]),
            "hedges": int(total[HEDGES]),
            "by_route": split,
        }
    last_minute = _sum(recent.totals(60, now))
    times, counts = recent.series(WINDOWS_S["60m"], now)
    return {
        "bucket_s": BUCKET_S,
        "requests_per_s": round(last_minute[REQUESTS] / 60, 3),
        "windows": windows,
        "series": {
            "times": times,
            "lines": [
                {"route": route, "backend": backend, "requests": line}
                for (route, backend), line in sorted(counts.items())
            ],
        },
    }


def money(recent: Recent, now: float) -> dict[str, Any]:
    """Cost over the last minute and the last hour, by route and by backend; tokens per joule by backend."""
    minute, hour = recent.totals(60, now), recent.totals(3600, now)
    energy: dict[str, list[float]] = {}
    for (_, backend), row in hour.items():
        acc = energy.setdefault(backend, [0.0, 0.0])
        acc[0] += row[TOKENS_IN] + row[TOKENS_OUT]
        acc[1] += row[JOULES]
    total_tokens = sum(a[0] for a in energy.values())
    total_joules = sum(a[1] for a in energy.values())
    return {
        "per_minute": _costs(minute),
        "per_hour": _costs(hour),
        "tokens_per_joule": {b: round(t / j, 3) for b, (t, j) in sorted(energy.items()) if j > 0},
        "tokens_per_joule_total": round(total_tokens / total_joules, 3) if total_joules > 0 else None,
        "joules_per_hour": round(total_joules, 2),
    }


def _costs(rows: Rows) -> dict[str, Any]:
    by_route: dict[str, float] = {}
    by_backend: dict[str, float] = {}
    for (route, backend), row in rows.items():
        if row[COST]:
            by_route[route] = by_route.get(route, 0.0) + row[COST]
            by_backend[backend] = by_backend.get(backend, 0.0) + row[COST]
    return {
        "total": round(sum(by_route.values()), 8),
        "by_route": {k: round(v, 8) for k, v in sorted(by_route.items())},
        "by_backend": {k: round(v, 8) for k, v in sorted(by_backend.items())},
    }


def _sum(rows: Rows) -> list[float]:
    total = [0.0] * WIDTH
    for row in rows.values():
        for i, value in enumerate(row):
            total[i] += value
    return total


def find_decision(recent: Recent | None, request_id: str) -> dict[str, Any] | None:
    """The newest kept request with this id (clients may reuse ids) and the ranking behind it."""
    for req in reversed(recent.decisions if recent is not None else ()):
        if req.request_id == request_id:
            return {
                **decision(req),
                "candidates": [candidate_json(s) for s in req.candidates],
                "dropped": [dropped_json(d) for d in req.dropped],
            }
    return None


def decision(req: RequestRecord) -> dict[str, Any]:
    """A finished request, without its ranking (that is rendered only when asked for, by `find_decision`).
    Incoming headers are never rendered: keys live there."""
    return {
        "id": req.request_id,
        "at": round(req.started_wall, 3),
        "op": req.op,
        "model": req.model,
        "route": req.route,
        "objective": req.objective,
        "stream": req.stream,
        "status": req.status,
        "error": req.error,
        "backend": req.backend,
        "latency_ms": _ms(req.duration_s),
        "cost_usd": req.cost_usd,
        "input_tokens": req.input_tokens,
        "output_tokens": req.output_tokens,
        "attempts": [
            {
                "backend": a.target.backend,
                "model_id": a.target.model_id,
                "outcome": a.outcome,
                "status": a.status,
                "ttft_ms": _ms(a.ttft_s),
                "duration_ms": _ms(a.duration_s),
                "error": a.error[:300] if a.error else None,
            }
            for a in req.attempts
        ],
        "ranked": len(req.candidates),
    }
