"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import common_sampling, relay
from gateway.errors import BadRequest

router = APIRouter()

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def validate_chat(body: dict[str, Any]) -> None:
    common_sampling(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty array", param="messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequest(f"'messages[{i}]' must be an object", param=f"messages[{i}]")
        if msg.get("role") not in ROLES:
            raise BadRequest(
                f"'messages[{i}].role' must be one of {', '.join(sorted(ROLES))}", param=f"messages[{i}].role"
            )
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise BadRequest("'tools' must be an array of objects", param="tools")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await relay(request, "chat", validate_chat)
