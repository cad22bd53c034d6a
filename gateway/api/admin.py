"""Our own endpoints: route explanation (no upstream call) and policy reload."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access import principal as access
from gateway.api.bodies import read_json
from gateway.api.relay import JSON, authenticate, runtime
from gateway.endpoints import CHAT, EMBEDDINGS, ENDPOINTS, EndpointSpec
from gateway.errors import BadRequest
from gateway.policy.loader import PolicyError, load_policy
from gateway.routing.preferences import take_preferences
from gateway.routing.router import Plan
from gateway.routing.scoring import Dropped, Scored

router = APIRouter()


def candidate_json(s: Scored) -> dict[str, Any]:
    """One ranked candidate as the explain endpoint and the dashboard's decision drill-down show it."""
    return {
        "backend": s.target.backend,
        "model_id": s.target.model_id,
        "hardware": s.target.hardware,
        "quantization": s.target.quantization,
        "predicted_latency_ms": round(s.latency_ms, 3),
        "predicted_cost_usd": round(s.cost_usd, 10),
        "predicted_energy_j": round(s.energy_j, 4),
        "ttft_ms": round(s.ttft_ms, 2) if s.ttft_ms is not None else None,
        "tokens_per_s": round(s.tokens_per_s, 1) if s.tokens_per_s is not None else None,
        "failure_rate": round(s.failure_rate, 4),
        "requests_remaining": s.requests_remaining,
        "live_telemetry": s.fresh,
        # How old the estimate is (its last measurement), and whether it was forgiven with that age.
        "estimate_age_s": round(s.age_s, 3) if s.age_s is not None else None,
        "forgiven": s.forgiven,
        "demoted": s.demoted,
        "score": s.score,
        "load": load_json(s),
    }


def load_json(s: Scored) -> dict[str, Any] | None:
    """A self-hosted candidate's scraped gauges and how old they were when it was ranked (None: none)."""
    load = s.load
    if load is None:
        return None
    return {
        "requests_waiting": load.waiting,
        "requests_running": load.running,
        "kv_cache_usage": load.kv_cache,
        "max_running": load.max_running,
        "source": load.source,
        "age_s": round(s.load_age_s or 0.0, 3),
    }


def dropped_json(d: Dropped) -> dict[str, str]:
    return {"backend": d.backend, "reason": d.reason}


def explain_plan(plan: Plan) -> dict[str, Any]:
    return {
        "route": plan.route.name,
        "objective": plan.objective,
        "estimate": {
            "input_tokens": plan.estimate.input_tokens,
            "output_tokens": plan.estimate.output_tokens,
        },
        "candidates": [candidate_json(s) for s in plan.ranked],
        "dropped": [dropped_json(d) for d in plan.dropped],
        "shadow": shadow_json(plan),
    }


def shadow_json(plan: Plan) -> dict[str, Any] | None:
    """The route's shadow settings (None: off); a running gateway adds today's spend and what is in flight."""
    shadow = plan.route.shadow
    if shadow is None:
        return None
    return {
        "backends": list(shadow.backends),
        "sample": shadow.sample,
        "max_usd_per_day": shadow.max_usd_per_day,
        "timeout_s": shadow.timeout_s,
    }


def explain_endpoint(body: dict[str, Any]) -> tuple[EndpointSpec, dict[str, Any]]:
    """The spec and canonical body to plan: `endpoint` names the API the body is in (`/v1/responses`,
    `/v1/messages`...); without it `{"model", "input"}` plans as embeddings, anything else as a chat."""
    path = body.pop("endpoint", None)
    if path is None:
        spec = EMBEDDINGS if "input" in body and "messages" not in body else CHAT
    else:
        found = ENDPOINTS.get(path) if isinstance(path, str) else None
        if found is None:
            raise BadRequest(f"'endpoint' must be one of {', '.join(ENDPOINTS)}", param="endpoint")
        spec = found
    spec.validate(body)
    return spec, spec.to_backend(body)


@router.post("/v1/route/explain")
async def explain(request: Request) -> Response:
    rt = runtime(request)
    principal = await authenticate(rt, request.headers)
    body = await read_json(request)
    prefs = take_preferences(body, request.headers)
    endpoint, canonical = explain_endpoint(body)
    plan = rt.router.plan(rt.catalog, endpoint, canonical, prefs, probe=False)
    pressure = await rt.tenancy.guard.pressure(principal, plan) if rt.tenancy is not None else None
    doc = explain_plan(plan)
    if pressure is not None:  # a virtual key on a route with budget_pressure: whether it reorders now
        doc["budget_pressure"] = pressure
    if doc["shadow"] is not None and rt.shadow is not None:
        doc["shadow"]["spent_usd_today"] = await rt.shadow.spent_today(plan.route.name)
        doc["shadow"]["in_flight"] = rt.shadow.in_flight
    return Response(orjson.dumps(doc), media_type=JSON)


@router.post("/admin/reload")
async def reload(request: Request) -> Response:
    rt = runtime(request)
    access.admin(rt.keys, request.headers)
    try:
        loaded = await asyncio.to_thread(load_policy, rt.settings.config)
    except PolicyError as err:
        problems = [{"file": p.file, "path": p.path, "reason": p.reason} for p in err.problems]
        body = {
            "error": {
                "message": f"policy rejected, the last good one keeps serving: {len(problems)} problem(s)",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_policy",
            },
            "problems": problems,
        }
        return Response(orjson.dumps(body), status_code=422, media_type=JSON)
    rt.swap(loaded)
    rt.log.info("policy reloaded", extra={"fingerprint": loaded.fingerprint, "source": "admin"})
    return Response(orjson.dumps({"status": "reloaded", "policy": loaded.fingerprint}), media_type=JSON)
