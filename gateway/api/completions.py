"""POST /v1/completions, the legacy text completion API: its checks (served by gateway.api.front)."""

from __future__ import annotations

from typing import Any

from gateway.api.relay import common_sampling
from gateway.errors import BadRequest


def validate_completion(body: dict[str, Any]) -> None:
    common_sampling(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
        raise BadRequest("'prompt' is required: a string, an array of strings or of tokens", param="prompt")
