"""POST /v1/embeddings: the checks of the fields we use (served by gateway.api.front)."""

from __future__ import annotations

from typing import Any

from gateway.api.relay import require_model
from gateway.errors import BadRequest


def validate_embeddings(body: dict[str, Any]) -> None:
    require_model(body)
    value = body.get("input")
    if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
        raise BadRequest("'input' is required: a non-empty string or array", param="input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
