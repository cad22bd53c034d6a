"""Test-only shapes for the endpoint and stream seams: an upstream that frames its stream with SSE event
names and ends on `event: stop` (no [DONE]), as Anthropic's does, and a client endpoint (`/v1/shout`) with
its own body, response, stream events and error body. Neither needs a change to the router or the relay."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.endpoints import CHAT
from gateway.endpoints.spec import Body, EndpointSpec
from gateway.errors import BadRequest, GatewayError
from gateway.providers.base import Operation, ProviderError, StreamEvent, Target, Usage
from gateway.providers.openai_compat import OpenAICompatAdapter
from gateway.providers.sse import SSEDecoder

NAMED_STEPS_DOC = {"in": 5, "out": 3}  # the usage the `stop` event carries


def named(name: str, doc: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + b"data: " + orjson.dumps(doc) + b"\n\n"


def chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return orjson.dumps(
        {"id": "n1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}
    )


class NamedTranslator:
    """`start` says nothing; `delta` carries texts separated by `|` (one chunk each: several per event);
    `ping` says nothing; `stop` carries the usage and ends the stream; flush sends the finish chunk."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.ended = False
        self.flushed = 0
        self.output_chars = 0  # generated text seen: what the relay bills when no usage arrives

    def translate(self, event: StreamEvent) -> list[bytes]:
        doc = orjson.loads(event.data)
        if event.name == "delta":
            texts = doc["text"].split("|")
            self.output_chars += sum(len(t) for t in texts)
            return [chunk(t) for t in texts]
        if event.name == "stop":
            self.usage = Usage(doc["in"], doc["out"])
            self.ended = True
            return []
        if event.name == "error":
            raise ProviderError("server", "overloaded")
        return []

    def flush(self) -> list[bytes]:
        self.flushed += 1
        return [chunk(None, "stop")] if self.ended else []


class NamedAdapter(OpenAICompatAdapter):
    """The OpenAI adapter for requests and whole answers; its own stream framing and translation."""

    def __init__(self) -> None:
        self.translators: list[NamedTranslator] = []

    def stream_decoder(self, op: Operation, target: Target, *, max_event_bytes: int) -> SSEDecoder:
        return SSEDecoder(max_event_bytes)

    def stream_translator(  # type: ignore[override]
        self, op: Operation, target: Target, *, show_usage: bool = True
    ) -> NamedTranslator:
        self.translators.append(NamedTranslator())
        return self.translators[-1]


# --- a client endpoint that is not OpenAI's ---------------------------------------------------------------


def validate_shout(body: Body) -> None:
    if not isinstance(body.get("model"), str) or not isinstance(body.get("text"), str):
        raise BadRequest("'model' and 'text' are required strings", param="text")


def shout_to_chat(body: Body) -> Body:
    return {
        "model": body["model"],
        "messages": [{"role": "user", "content": body["text"]}],
        "stream": body.get("stream") is True,
    }


def chat_to_shout(response: bytes, request: Body) -> bytes:
    doc = orjson.loads(response)
    return orjson.dumps({"shout": doc["choices"][0]["message"]["content"].upper(), "asked": request["text"]})


class ShoutEncoder:
    """Named events: `piece` per text, `done` at the clean end, `failure` for an error mid-stream."""

    def __init__(self, body: Body) -> None:
        self.pieces = 0

    def encode(self, chunk: bytes) -> bytes:
        doc = orjson.loads(chunk)
        text = "".join((c.get("delta") or {}).get("content") or "" for c in doc.get("choices", ()))
        if not text:
            return b""
        self.pieces += 1
        return b"event: piece\ndata: " + orjson.dumps({"text": text.upper()}) + b"\n\n"

    def finish(self) -> bytes:
        return b"event: done\ndata: " + orjson.dumps({"pieces": self.pieces}) + b"\n\n"

    def error(self, err: GatewayError) -> bytes:
        return b"event: failure\ndata: " + shout_error(err) + b"\n\n"


def shout_error(err: GatewayError) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": err.type, "message": err.message}})


SHOUT = EndpointSpec(
    path="/v1/shout",
    operation="chat",
    genai_operation="shout",
    model_type="chat",
    validate=validate_shout,
    estimate=CHAT.estimate,
    to_backend=shout_to_chat,
    from_backend=chat_to_shout,
    stream_encoder=ShoutEncoder,
    error_body=shout_error,
)
