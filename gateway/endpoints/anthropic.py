"""POST /v1/messages: Anthropic's Messages API, served by any chat backend through gateway/frontdoors/.

Errors leave in Anthropic's shape; the key may come in `x-api-key` (access/principal.py) and any
`anthropic-version` is accepted: the translation follows the current Messages API.
"""

from __future__ import annotations

import orjson

from gateway.endpoints.openai import estimate_chat
from gateway.endpoints.spec import Body, EndpointSpec
from gateway.frontdoors.anthropic_output import MessagesStreamEncoder, error_body, from_chat
from gateway.frontdoors.anthropic_request import MessagesCall, read_request


def _validate(body: Body) -> None:
    read_request(body)


def _to_backend(body: Body) -> Body:
    return read_request(body).chat


def _answered(body: Body) -> MessagesCall:
    """What the answer repeats of a request already validated: its model and stop sequences."""
    stops = body.get("stop_sequences")
    return MessagesCall(str(body["model"]), {}, stop_sequences=list(stops) if isinstance(stops, list) else [])


def _from_backend(body: bytes, request: Body) -> bytes:
    return orjson.dumps(from_chat(_answered(request), orjson.loads(body)))


def _encoder(request: Body) -> MessagesStreamEncoder:
    return MessagesStreamEncoder(_answered(request))


MESSAGES = EndpointSpec(
    path="/v1/messages",
    operation="chat",
    genai_operation="chat",
    model_type="chat",
    validate=_validate,
    estimate=estimate_chat,
    to_backend=_to_backend,
    from_backend=_from_backend,
    stream_encoder=_encoder,
    error_body=error_body,
)
