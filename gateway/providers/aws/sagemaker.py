"""Adapter for SageMaker real-time endpoints (Inferentia/Trainium instances) whose container speaks
OpenAI's chat body: LMI, vLLM and TGI containers. The stream's `PayloadPart` messages carry the
container's SSE bytes, cut anywhere; they are joined and read as SSE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from gateway.providers.aws import errors
from gateway.providers.aws.converse import unsupported
from gateway.providers.aws.eventstream import EventStreamDecoder, ExceptionEvent
from gateway.providers.base import Operation, Parsed, ProviderError, StreamEvent, Target, UpstreamRequest
from gateway.providers.openai_compat import ChunkTranslator, OpenAICompatAdapter, with_usage
from gateway.providers.sse import SSEDecoder
from gateway.telemetry.headroom import Headroom

_OPENAI = OpenAICompatAdapter()


def endpoint(region: str) -> str:
    """SageMaker Runtime's public endpoint in `region` (a policy's `base_url` replaces it)."""
    return f"https://runtime.sagemaker.{region}.amazonaws.com"


class PayloadPartDecoder:
    """Event-stream messages -> the container's SSE events: each `PayloadPart`'s bytes go to an SSE
    decoder; exception messages (ModelStreamError, InternalStreamFailure) pass through as they are."""

    __slots__ = ("_frames", "_sse")

    def __init__(self, max_event: int) -> None:
        self._frames = EventStreamDecoder(max_event)
        self._sse = SSEDecoder(max_event)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for message in self._frames.feed(chunk):
            if isinstance(message, ExceptionEvent):
                out.append(message)
            elif message.name == "PayloadPart":
                out += self._sse.feed(message.data)
        return out


class SageMakerTranslator(ChunkTranslator):
    """OpenAI chunks from the container; an exception message is the stream's failure."""

    __slots__ = ()

    def translate(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, ExceptionEvent):
            raise errors.stream_exception(event.name, event.data, self._secret)
        return super().translate(event)


class SageMakerAdapter:
    """InvokeEndpoint / InvokeEndpointWithResponseStream; the endpoint name is the model `id`, the body
    OpenAI's chat body without `model` (the endpoint serves one). SigV4 (service `sagemaker`) comes last."""

    def build_request(self, op: Operation, body: dict[str, Any], target: Target) -> UpstreamRequest:
        if op != "chat":
            err = unsupported(f"SageMaker backends serve chat only, not {op}")
            err.backend = target.backend
            raise err
        doc = {k: v for k, v in body.items() if k != "model"}  # the endpoint serves one model
        stream = body.get("stream") is True
        if stream:
            doc["stream_options"] = with_usage(body.get("stream_options"))  # every stream is billed
        action = "/invocations-response-stream" if stream else "/invocations"
        url = target.base_url + "/endpoints/" + quote(target.model_id, safe="") + action
        # InvokeEndpoint's Accept is the container's answer type; the stream call's (X-Amzn-SageMaker-Accept)
        # is left to the container, which streams SSE.
        accept = {} if stream else {"accept": "application/json"}
        headers = {"content-type": "application/json", **accept, **target.headers}
        return UpstreamRequest("POST", url, headers, orjson.dumps(doc))

    def parse_response(self, op: Operation, body: bytes, target: Target) -> Parsed:
        return _OPENAI.parse_response(op, body, target)

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ProviderError:
        return errors.http_error(status, headers, body, target)

    def stream_decoder(self, op: Operation, target: Target, *, max_event_bytes: int) -> PayloadPartDecoder:
        return PayloadPartDecoder(max_event_bytes)

    def headroom(self, headers: Mapping[str, str] | None) -> Headroom | None:
        return None  # SageMaker sends no rate-limit headers

    def stream_translator(
        self, op: Operation, target: Target, *, show_usage: bool = True
    ) -> SageMakerTranslator:
        return SageMakerTranslator(op, target.model_id, target.api_key, show_usage=show_usage)
