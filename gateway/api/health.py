"""Liveness and readiness probes."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import JSON, runtime

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    rt = runtime(request)
    body = {"status": "ready", "policy": rt.loaded.fingerprint, "backends": len(rt.loaded.policy.backends)}
    return Response(orjson.dumps(body), media_type=JSON)
