"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import common_sampling, relay
from gateway.errors import BadRequest

router = APIRouter()


def validate_completion(body: dict[str, Any]) -> None:
    common_sampling(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
        raise BadRequest("'prompt' is required: a string, an array of strings or of tokens", param="prompt")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await relay(request, "completions", validate_completion)
