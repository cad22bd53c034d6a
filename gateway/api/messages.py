"""POST /v1/messages/count_tokens: the prompt's tokens as the gateway estimates them, in Anthropic's shape.

POST /v1/messages is an endpoint spec (gateway/endpoints/anthropic.py) served by the raw-ASGI front; this
route calls no backend, so it lives with the other FastAPI routes, its errors in Anthropic's shape too.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.bodies import read_json
from gateway.api.relay import JSON, authenticate, runtime
from gateway.endpoints.anthropic import MESSAGES
from gateway.errors import GatewayError
from gateway.frontdoors.anthropic_output import error_body
from gateway.frontdoors.anthropic_request import count_tokens, read_request

router = APIRouter()


@router.post("/v1/messages/count_tokens")
async def messages_count_tokens(request: Request) -> Response:
    try:
        rt = runtime(request)
        await authenticate(rt, request.headers)
        call = read_request(await read_json(request), count_only=True)
        rt.catalog.resolve(call.model, MESSAGES)  # 404 for a model nothing serves, as the API answers
        return Response(orjson.dumps({"input_tokens": count_tokens(call)}), media_type=JSON)
    except GatewayError as err:
        return Response(error_body(err), status_code=err.status, media_type=JSON, headers=err.headers)
