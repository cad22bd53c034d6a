"""OpenAI's own routes: chat completions, legacy completions and embeddings (canonical = client format)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.endpoints.spec import Body, EndpointSpec
from gateway.errors import BadRequest, GatewayError
from gateway.policy.model import Route
from gateway.routing.scoring import Estimate

DONE_EVENT = b"data: [DONE]\n\n"
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def encode(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def error_event(message: str, *, type_: str = "upstream_error", code: str = "stream_interrupted") -> bytes:
    """The OpenAI-shaped error event ending a stream that cannot finish cleanly (never followed by DONE)."""
    return encode(orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}))


class OpenAIStreamEncoder:
    """OpenAI's SSE: each canonical chunk is already the client's JSON, so it is only framed."""

    __slots__ = ()

    def encode(self, chunk: bytes) -> bytes:
        return b"data: " + chunk + b"\n\n"

    def finish(self) -> bytes:
        return DONE_EVENT

    def error(self, err: GatewayError) -> bytes:
        return encode(orjson.dumps(err.payload()))


_SSE = OpenAIStreamEncoder()  # stateless: one for every stream


def sse_encoder(body: Body) -> OpenAIStreamEncoder:
    return _SSE


# --- validation: light checks of the fields we use; everything else passes through untouched -----------


def require_model(body: Body) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")


def optional_int(body: Body, key: str, minimum: int = 1) -> None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise BadRequest(f"'{key}' must be an integer >= {minimum}", param=key)


def optional_bool(body: Body, key: str) -> None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be a boolean", param=key)


def optional_number(body: Body, key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be a number between {low:g} and {high:g}", param=key)


_INTS = ("max_tokens", "max_completion_tokens", "n")  # each an integer >= 1 when present
_NUMBERS = (("temperature", 0, 2), ("top_p", 0, 1))  # (field, low, high)


def common_sampling(body: Body) -> None:
    """The sampling fields' types; a field's checker runs only when the field is there (one call per field
    a request sets, none for those it leaves out: this runs for every request)."""
    require_model(body)
    if "stream" in body:
        optional_bool(body, "stream")
    for key in _INTS:
        if key in body:
            optional_int(body, key)
    for key, low, high in _NUMBERS:
        if key in body:
            optional_number(body, key, low, high)
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")


def validate_chat(body: Body) -> None:
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


def validate_completion(body: Body) -> None:
    common_sampling(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
        raise BadRequest("'prompt' is required: a string, an array of strings or of tokens", param="prompt")


def validate_embeddings(body: Body) -> None:
    require_model(body)
    value = body.get("input")
    if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
        raise BadRequest("'input' is required: a non-empty string or array", param="input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")


# --- estimates: token counts from characters (~4 per token), cheap and close enough to rank and guard ----


def estimate_chat(body: Body, route: Route) -> Estimate:
    chars = 0  # a plain loop: no generator to resume per message
    for m in body.get("messages", ()):
        if isinstance(m, dict):
            chars += chars_of(m.get("content")) + 16
    return _generation(chars, body, route)


def estimate_completion(body: Body, route: Route) -> Estimate:
    return _generation(chars_of(body.get("prompt")), body, route)


def estimate_embeddings(body: Body, route: Route) -> Estimate:
    return Estimate(max(1, chars_of(body.get("input")) // 4), 0, bounded=True)


def _generation(chars: int, body: Body, route: Route) -> Estimate:
    out = body.get("max_completion_tokens") or body.get("max_tokens")
    n = body.get("n")
    n = n if isinstance(n, int) else 1
    bounded = isinstance(out, int)
    if not isinstance(out, int):
        out = route.expected_output_tokens
    return Estimate(max(1, chars // 4), out * max(1, n), bounded)


def chars_of(value: Any) -> int:
    """Characters of a string, of content parts' texts or of a list of prompts; one level, no recursion
    (arbitrary client JSON must not reach the recursion limit)."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list):  # a batch of prompts given as lists of strings
            total += sum(len(v) for v in item if isinstance(v, str))
    return total


CHAT = EndpointSpec(
    path="/v1/chat/completions",
    operation="chat",
    genai_operation="chat",
    model_type="chat",
    validate=validate_chat,
    estimate=estimate_chat,
    stream_encoder=sse_encoder,
)
COMPLETIONS = EndpointSpec(
    path="/v1/completions",
    operation="completions",
    genai_operation="text_completion",
    model_type="chat",
    validate=validate_completion,
    estimate=estimate_completion,
    stream_encoder=sse_encoder,
)
EMBEDDINGS = EndpointSpec(
    path="/v1/embeddings",
    operation="embeddings",
    genai_operation="embeddings",
    model_type="embedding",
    validate=validate_embeddings,
    estimate=estimate_embeddings,
)
