"""Liveness and readiness probes."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import JSON, runtime
from gateway.errors import ServiceUnavailable
from gateway.telemetry import RedisStore

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready once the policy is loaded (before the socket opens) and, with Redis, the fleet's telemetry read.

    A fresh replica that routed before its first read would see every backend as unknown and herd its
    first requests onto them. Later Redis outages do not unready it, nor does one at start past a grace
    (`RedisStore.synced`): it routes on local telemetry then, like every other replica.
    """
    rt = runtime(request)
    if isinstance(rt.store, RedisStore) and not rt.store.synced:
        raise ServiceUnavailable("not ready: the shared telemetry has not been read from Redis yet")
    body = {"status": "ready", "policy": rt.loaded.fingerprint, "backends": len(rt.loaded.policy.backends)}
    return Response(orjson.dumps(body), media_type=JSON)
