"""Adapter for any server that speaks OpenAI's wire format (OpenAI, Groq, NIM, vLLM, TGI, ...)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gateway.providers import conform
from gateway.providers.base import (
    FailureKind,
    Operation,
    Parsed,
    ProviderError,
    StreamEvent,
    Target,
    UpstreamRequest,
    Usage,
)
from gateway.providers.dialects import OPENAI, Dialect, dig
from gateway.providers.sse import SSEDecoder
from gateway.redact import scrub
from gateway.secret import Secret
from gateway.telemetry.headroom import DEFAULT_TABLE, Headroom

_PATHS: dict[Operation, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}

# Context-length wording of OpenAI, Groq, vLLM, NIM (vLLM/TRT-LLM based), TGI, Bedrock and Vertex.
CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|maximum context length|context window|reduce the length|too many (input )?tokens"
    r"|input is too long|prompt is too long|exceeds? the maximum (number of )?tokens|input token count"
    r"|max_new_tokens. must be <=",
    re.IGNORECASE,
)

_STATUS_KIND: dict[int, FailureKind] = {
    401: "auth",
    403: "auth",
    408: "timeout",
    409: "server",
    429: "rate_limited",
}

_CONFORM: dict[Operation, Callable[[dict[str, Any], str], bool]] = {
    "chat": conform.chat_completion,
    "completions": conform.text_completion,
    "embeddings": conform.embeddings,
}


_CAPS = ("max_tokens", "max_completion_tokens")


class OpenAICompatAdapter:
    """Rewrites the model id, completes spec fields on the way back (the key is set by credentials.py).

    One instance per dialect (providers/dialects.py): the host's rate-limit headers, error shape and quirks
    are read from its table."""

    dialect: Dialect = OPENAI  # a subclass that sets up its own __init__ keeps the default

    def __init__(self, dialect: Dialect = OPENAI) -> None:
        self.dialect = dialect

    def build_request(self, op: Operation, body: dict[str, Any], target: Target) -> UpstreamRequest:
        out = dict(body)  # shallow copy: the caller's body is reused on a retry to another backend
        out["model"] = target.model_id
        quirks = self.dialect
        if op != "embeddings" and body.get("stream") is True:
            if quirks.stream_options:
                out["stream_options"] = with_usage(body.get("stream_options"))
            else:
                out.pop("stream_options", None)
        if op == "chat" and quirks.max_tokens_field is not None:
            _rename_cap(out, quirks.max_tokens_field)
        headers = {"content-type": "application/json", **target.headers}
        return UpstreamRequest("POST", target.base_url + _PATHS[op], headers, orjson.dumps(out))

    def parse_response(self, op: Operation, body: bytes, target: Target) -> Parsed:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderError("protocol", "response is not JSON", backend=target.backend) from None
        if not isinstance(doc, dict):
            raise ProviderError("protocol", "response is not a JSON object", backend=target.backend)
        changed = _CONFORM[op](doc, target.model_id)
        return Parsed(_dumps(doc) if changed else body, _usage(doc.get("usage")))

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ProviderError:
        doc = _json_or_none(body)
        # Some upstreams repeat the credential they were sent in their error text: never pass it on.
        text, limit = _error_message(doc, body, self.dialect)
        message = scrub(text, target.api_key, limit=limit)
        kind = self._kind(status, doc)
        if kind == "client" and CONTEXT_LENGTH.search(message):
            kind = "context_length"
        room = self.dialect.rate_limits.parse(headers)
        return ProviderError(
            kind,
            message,
            backend=target.backend,
            status=status,
            retry_after=room.retry_after_s if room is not None else None,
            body=_scrubbed_error(doc, target.api_key),
        )

    def _kind(self, status: int, doc: Any) -> FailureKind:
        """The error type the dialect knows, else the status's meaning (the dialect's, then HTTP's)."""
        shape = self.dialect.errors
        if shape.kinds:
            for path in shape.type:
                named = dig(doc, path)
                if isinstance(named, str) and named in shape.kinds:
                    return shape.kinds[named]
        return (
            self.dialect.status_kinds.get(status)
            or _STATUS_KIND.get(status)
            or ("server" if status >= 500 else "client")
        )

    def stream_decoder(self, op: Operation, target: Target, *, max_event_bytes: int) -> SSEDecoder:
        return SSEDecoder(max_event_bytes)

    def headroom(self, headers: Mapping[str, str] | None) -> Headroom | None:
        """The dialect's rate-limit headers (openai: x-ratelimit-*, anthropic-ratelimit-*) and retry-after."""
        return self.dialect.rate_limits.parse(headers)

    def stream_translator(self, op: Operation, target: Target, *, show_usage: bool = True) -> ChunkTranslator:
        more = self.dialect.more_usage
        return ChunkTranslator(op, target.model_id, target.api_key, show_usage=show_usage, usage_at=more)


DONE = b"[DONE]"


class ChunkTranslator:
    """Per-stream state: completes each chunk to the spec, picks up usage, passes untouched chunks as is;
    the stream has ended cleanly once `data: [DONE]` arrived.

    With `show_usage=False` (the client did not ask for usage; the gateway did, to bill the stream) the
    usage-only final chunk is dropped and a `usage` key on other chunks removed."""

    __slots__ = (
        "_conform",
        "_model",
        "_secret",
        "_hide_usage",
        "_usage_at",
        "usage",
        "ended",
        "output_chars",
    )

    def __init__(
        self,
        op: Operation,
        model: str,
        secret: Secret | None = None,
        *,
        show_usage: bool = True,
        usage_at: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        self._conform: Callable[[dict[str, Any], str], bool] = (
            conform.chat_chunk if op == "chat" else _text_chunk
        )
        self._model = model
        self._secret = secret
        self._hide_usage = not show_usage
        self._usage_at = usage_at  # where else than `usage` the dialect puts a chunk's usage
        self.usage: Usage | None = None
        self.ended = False
        self.output_chars = 0

    def translate(self, event: StreamEvent) -> list[bytes]:
        data = event.data
        if data == DONE:
            self.ended = True
            return []
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProviderError("protocol", "malformed stream chunk") from None
        if not isinstance(doc, dict):
            raise ProviderError("protocol", "stream chunk is not a JSON object")
        if "error" in doc or event.name == "error":
            err = doc.get("error", doc)
            msg = err.get("message") if isinstance(err, dict) else err
            if not isinstance(msg, str):  # never repr() an arbitrary (deeply nested) upstream value
                msg = "error"
            raise ProviderError("server", scrub(f"upstream error in stream: {msg}", self._secret, limit=300))
        usage = _usage(doc.get("usage"))
        if usage is None and self._usage_at:
            usage = next((u for p in self._usage_at if (u := _usage(dig(doc, p))) is not None), None)
        if usage is not None:
            self.usage = usage
        self.output_chars += _generated_chars(doc.get("choices"))
        changed = self._conform(doc, self._model)
        if self._hide_usage and "usage" in doc:
            if usage is not None and not doc.get("choices"):
                return []  # the usage-only chunk the client did not ask for
            del doc["usage"]
            changed = True
        return [_dumps(doc) if changed else data]

    def flush(self) -> list[bytes]:
        return []  # nothing is held back: each chunk stands alone


def _generated_chars(choices: Any) -> int:
    """Characters of text in a chunk's choices (chat `delta.content`, completions `text`)."""
    total = 0
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str):
                    total += len(text)
    return total


def _rename_cap(body: dict[str, Any], name: str) -> None:
    """The output-token cap under the one name the server knows (the client's own value kept if both)."""
    for other in _CAPS:
        if other != name and other in body:
            value = body.pop(other)
            body.setdefault(name, value)


def with_usage(opts: Any) -> dict[str, Any]:
    """The client's stream_options with usage asked for: every stream is billed, asked or not."""
    if isinstance(opts, dict):
        return {**opts, "include_usage": True}
    return {"include_usage": True}


def _dumps(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # orjson reads 1024 levels but writes only 254
        raise ProviderError("protocol", "response is nested too deeply to re-encode") from None


def _text_chunk(doc: dict[str, Any], model: str) -> bool:
    return conform.text_completion(doc, model, chunk=True)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    inp = raw.get("prompt_tokens")
    out = raw.get("completion_tokens")
    return Usage(inp if isinstance(inp, int) else 0, out if isinstance(out, int) else 0)


def _scrubbed_error(doc: Any, secret: Secret | None) -> dict[str, Any] | None:
    """The upstream's `error.param` and `error.code` (all we pass on), without credentials."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None
    kept = {k: scrub(v, secret) for k in ("param", "code") if isinstance(v := err.get(k), str)}
    return {"error": kept}


def _json_or_none(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


_NOT_SPACE = re.compile(rb"\S")
_BODY_TEXT = 4096  # bytes of a non-JSON error body looked at; scrub() cuts the text to 200 afterwards


def _error_message(doc: Any, body: bytes, dialect: Dialect = OPENAI) -> tuple[str, int]:
    """The upstream's error text, whole, and how much of it the client may see (cut after scrubbing)."""
    if isinstance(doc, dict):
        for path in dialect.errors.message:
            text = dig(doc, path)
            if isinstance(text, str):
                return text, 500
    first = _NOT_SPACE.search(body)
    if first is None:
        return "no error body", 500
    text = body[first.start() : first.start() + _BODY_TEXT].decode("utf-8", "replace").rstrip()
    return text, 200


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    room = DEFAULT_TABLE.parse(headers)
    return room.retry_after_s if room is not None else None
