"""Bedrock's Converse answers as OpenAI chat: the whole response, and ConverseStream's events as chunks."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from gateway.providers import conform
from gateway.providers.aws.errors import stream_exception
from gateway.providers.aws.eventstream import ExceptionEvent
from gateway.providers.base import Parsed, ProviderError, StreamEvent, Usage
from gateway.secret import Secret

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def openai_usage(raw: Any) -> dict[str, Any] | None:
    """Converse usage as OpenAI's: cache reads and writes are prompt tokens too (Bedrock counts them apart
    from `inputTokens`); reads are also `prompt_tokens_details.cached_tokens`."""
    if not isinstance(raw, dict):
        return None
    read, written = _count(raw, "cacheReadInputTokens"), _count(raw, "cacheWriteInputTokens")
    prompt = _count(raw, "inputTokens") + read + written
    completion = _count(raw, "outputTokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def _usage(doc: dict[str, Any] | None) -> Usage | None:
    return Usage(doc["prompt_tokens"], doc["completion_tokens"]) if doc is not None else None


def _new_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def chat_completion(body: bytes, model: str) -> Parsed:
    """A Converse response as a `chat.completion`; any shape we did not expect is a protocol error."""
    doc = _object(body, "response")
    output = doc.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    blocks = message.get("content") if isinstance(message, dict) else None
    if not isinstance(blocks, list):
        raise ProviderError("protocol", "Converse response has no output.message.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise ProviderError("protocol", "Converse content block is not an object")
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            calls.append(_tool_call(block["toolUse"]))
        # reasoningContent, guardContent, images...: not part of an OpenAI chat answer
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    usage = openai_usage(doc.get("usage"))
    completion: dict[str, Any] = {
        "id": _new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(doc.get("stopReason")),
            }
        ],
    }
    if usage is not None:
        completion["usage"] = usage
    conform.chat_completion(completion, model)
    return Parsed(orjson.dumps(completion), _usage(usage))


def _tool_call(use: dict[str, Any]) -> dict[str, Any]:
    call_id, name = use.get("toolUseId"), use.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise ProviderError("protocol", "Converse toolUse block lacks toolUseId or name")
    try:
        arguments = orjson.dumps(use.get("input") if use.get("input") is not None else {}).decode()
    except orjson.JSONEncodeError:  # orjson reads 1024 levels but writes only 254
        raise ProviderError("protocol", "toolUse input is nested too deeply to re-encode") from None
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError("protocol", f"Converse {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise ProviderError("protocol", f"Converse {what} is not a JSON object")
    return doc


class ConverseStreamTranslator:
    """ConverseStream events -> `chat.completion.chunk`s. Clean end: the `metadata` event (usage) after
    `messageStop`; a stream whose bytes end after `messageStop` without it also counts as ended. Unknown
    events and fields (the padding `p`) are ignored; an exception message is the stream's failure."""

    __slots__ = (
        "_id",
        "_created",
        "_model",
        "_secret",
        "_show_usage",
        "_tools",
        "_stopped",
        "_role",
        "usage",
        "ended",
        "output_chars",
    )

    def __init__(self, model: str, secret: Secret | None = None, *, show_usage: bool = True) -> None:
        self._id = _new_id()
        self._created = int(time.time())
        self._model = model
        self._secret = secret
        self._show_usage = show_usage
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool_calls index
        self._stopped = False
        self._role = False  # messageStart seen, its role not yet sent: it rides on the first real chunk
        self.usage: Usage | None = None
        self.ended = False
        self.output_chars = 0

    def translate(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, ExceptionEvent):
            raise stream_exception(event.name, event.data, self._secret)
        handler = _HANDLERS.get(event.name or "")
        if handler is None:
            return []
        return handler(self, _object(event.data, f"{event.name} event"))

    def flush(self) -> list[bytes]:
        if self._stopped:
            self.ended = True
        return []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if self._role:
            delta = {"role": "assistant", **delta}
            self._role = False
        return orjson.dumps(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    def _message_start(self, doc: dict[str, Any]) -> list[bytes]:
        # No chunk yet: until content arrives the router has not committed, so an exception message right
        # after messageStart still fails over.
        self._role = True
        return []

    def _block_start(self, doc: dict[str, Any]) -> list[bytes]:
        start = doc.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return []
        index = self._tools.setdefault(_block_index(doc), len(self._tools))
        call_id, name = use.get("toolUseId"), use.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise ProviderError("protocol", "contentBlockStart toolUse lacks toolUseId or name")
        call = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, doc: dict[str, Any]) -> list[bytes]:
        delta = doc.get("delta")
        if not isinstance(delta, dict):
            raise ProviderError("protocol", "contentBlockDelta has no delta")
        text = delta.get("text")
        if isinstance(text, str):
            self.output_chars += len(text)
            return [self._chunk({"content": text})]
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str):
            index = self._tools.get(_block_index(doc))
            if index is None:
                raise ProviderError("protocol", "tool input delta for a block that did not start a tool")
            self.output_chars += len(use["input"])
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": use["input"]}}]})]
        return []  # reasoningContent and other deltas have no OpenAI chat form

    def _message_stop(self, doc: dict[str, Any]) -> list[bytes]:
        self._stopped = True
        return [self._chunk({}, finish_reason(doc.get("stopReason")))]

    def _metadata(self, doc: dict[str, Any]) -> list[bytes]:
        usage = openai_usage(doc.get("usage"))
        self.usage = _usage(usage)
        self.ended = True
        if usage is None or not self._show_usage:
            return []
        return [
            orjson.dumps(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": usage,
                }
            )
        ]


def _block_index(doc: dict[str, Any]) -> int:
    index = doc.get("contentBlockIndex")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ProviderError("protocol", "event lacks its contentBlockIndex")
    return index


_HANDLERS = {
    "messageStart": ConverseStreamTranslator._message_start,
    "contentBlockStart": ConverseStreamTranslator._block_start,
    "contentBlockDelta": ConverseStreamTranslator._block_delta,
    "messageStop": ConverseStreamTranslator._message_stop,
    "metadata": ConverseStreamTranslator._metadata,
}
