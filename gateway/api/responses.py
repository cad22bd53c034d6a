"""GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items: stored responses, owner only.

POST /v1/responses is an endpoint spec (gateway/endpoints/responses.py) served by the raw-ASGI front.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import JSON, authenticate, runtime
from gateway.errors import BadRequest
from gateway.frontdoors.wire import unsupported

router = APIRouter()


@router.get("/v1/responses/{response_id}")
async def get_response(request: Request, response_id: str) -> Response:
    rt = runtime(request)
    owner = (await authenticate(rt, request.headers)).label
    if request.query_params.get("stream") == "true":
        raise unsupported("Replaying a stored response as a stream", "stream")
    found = await rt.conversations.load(owner, response_id)
    return Response(orjson.dumps(found.response), media_type=JSON)


@router.delete("/v1/responses/{response_id}")
async def delete_response(request: Request, response_id: str) -> Response:
    rt = runtime(request)
    owner = (await authenticate(rt, request.headers)).label
    return Response(orjson.dumps(await rt.conversations.delete(owner, response_id)), media_type=JSON)


@router.get("/v1/responses/{response_id}/input_items")
async def input_items(request: Request, response_id: str) -> Response:
    rt = runtime(request)
    owner = (await authenticate(rt, request.headers)).label
    query = request.query_params
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise BadRequest("'limit' must be an integer", param="limit") from None
    page = await rt.conversations.input_items(
        owner, response_id, limit=limit, order=query.get("order", "desc"), after=query.get("after")
    )
    return Response(orjson.dumps(page), media_type=JSON)
