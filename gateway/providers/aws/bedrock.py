"""Adapter for Amazon Bedrock's Converse API (Inferentia/Trainium-served and other Bedrock models)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from gateway.providers.aws import errors
from gateway.providers.aws.converse import converse_request, unsupported
from gateway.providers.aws.converse_reply import ConverseStreamTranslator, chat_completion
from gateway.providers.aws.eventstream import EventStreamDecoder
from gateway.providers.base import Operation, Parsed, ProviderError, Target, UpstreamRequest
from gateway.telemetry.headroom import Headroom

EVENT_STREAM = "application/vnd.amazon.eventstream"
# What may stay unencoded in a path segment (RFC 3986 pchar): the transport's URL library leaves these as
# they are, so the signed path is the path sent. `:` of `...-v1:0` ids stays; `/` of ARNs becomes %2F.
PATH_SAFE = ":@!$&'()*+,;=-._~"


def endpoint(region: str) -> str:
    """Bedrock Runtime's public endpoint in `region` (a policy's `base_url` replaces it: VPC, tests)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def model_path(model_id: str) -> str:
    return "/model/" + quote(model_id, safe=PATH_SAFE)


class BedrockAdapter:
    """Chat over Converse / ConverseStream; SigV4 is added last by the backend's credential provider."""

    def build_request(self, op: Operation, body: dict[str, Any], target: Target) -> UpstreamRequest:
        try:
            if op != "chat":
                raise unsupported(f"Bedrock backends serve chat only, not {op}")
            doc = converse_request(body)
        except ProviderError as err:
            err.backend = target.backend
            raise
        stream = body.get("stream") is True
        action = "/converse-stream" if stream else "/converse"
        headers = {
            "content-type": "application/json",
            "accept": EVENT_STREAM if stream else "application/json",
            **target.headers,
        }
        url = target.base_url + model_path(target.model_id) + action
        return UpstreamRequest("POST", url, headers, orjson.dumps(doc))

    def parse_response(self, op: Operation, body: bytes, target: Target) -> Parsed:
        return chat_completion(body, target.model_id)

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ProviderError:
        return errors.http_error(status, headers, body, target)

    def stream_decoder(self, op: Operation, target: Target, *, max_event_bytes: int) -> EventStreamDecoder:
        return EventStreamDecoder(max_event_bytes)

    def headroom(self, headers: Mapping[str, str] | None) -> Headroom | None:
        """Bedrock sends no rate-limit headers; its throttling is a 429 ThrottlingException."""
        return None

    def stream_translator(
        self, op: Operation, target: Target, *, show_usage: bool = True
    ) -> ConverseStreamTranslator:
        return ConverseStreamTranslator(target.model_id, target.api_key, show_usage=show_usage)
