"""GET /v1/models: the logical models of the policy, never the providers' own ids."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import JSON, authenticate, runtime
from gateway.errors import ModelNotFound
from gateway.routing.candidates import LogicalModel

router = APIRouter()


def _model(m: LogicalModel, created: int) -> dict[str, Any]:
    return {"id": m.name, "object": "model", "created": created, "owned_by": m.owned_by}


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    rt = runtime(request)
    await authenticate(rt, request.headers)
    data = [_model(m, rt.started) for m in rt.catalog.models]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)


@router.get("/v1/models/{model:path}")
async def get_model(request: Request, model: str) -> Response:
    rt = runtime(request)
    await authenticate(rt, request.headers)
    for m in rt.catalog.models:
        if m.name == model:
            return Response(orjson.dumps(_model(m, rt.started)), media_type=JSON)
    raise ModelNotFound(f"The model '{model[:200]}' does not exist", param="model")
