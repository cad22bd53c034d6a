"""POST /v1/embeddings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import relay, require_model
from gateway.errors import BadRequest

router = APIRouter()


def validate_embeddings(body: dict[str, Any]) -> None:
    require_model(body)
    value = body.get("input")
    if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
        raise BadRequest("'input' is required: a non-empty string or array", param="input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await relay(request, "embeddings", validate_embeddings)
