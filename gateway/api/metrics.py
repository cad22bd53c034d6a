"""GET /metrics: the Prometheus text exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import runtime
from gateway.observability.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    observer = runtime(request).metrics
    if observer is None:
        raise HTTPException(404, "metrics are disabled (ROUTEWAY_METRICS=false)")
    return Response(observer.render(), headers={"content-type": CONTENT_TYPE})
