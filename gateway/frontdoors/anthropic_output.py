"""Chat answers -> Anthropic's message, canonical chat chunks -> its stream events, errors -> its error shape.

Anthropic's stream has one content block open at a time (start, deltas, stop); a tool call closes the text
block before it and the next tool call closes the one before. Usage arrives at the end of a chat stream,
so `message_start` reports zero tokens and `message_delta` the totals (the SDKs take the later figures).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.frontdoors.anthropic_request import MessagesCall
from gateway.frontdoors.wire import chat_usage, first_choice, named_event, new_id, obj, text_or
from gateway.providers.base import ProviderError

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
_STOP_REFUSAL = {"content_filter": "refusal"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class InvalidToolArguments(GatewayError):
    """A tool call whose arguments are not a JSON object: Anthropic's `input` must be one."""

    status = 502
    type = "upstream_error"
    code = "invalid_tool_arguments"


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_payload(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err.status), "message": err.message}}


def error_body(err: GatewayError) -> bytes:
    """Anthropic's error body for any gateway error (the status stays the gateway's)."""
    return orjson.dumps(error_payload(err))


def stop_reason(finish_reason: Any, matched: Any, call: MessagesCall) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence); `matched` is the stop string vLLM-style servers report."""
    if finish_reason == "stop" and isinstance(matched, str) and matched in call.stop_sequences:
        return "stop_sequence", matched
    reason = _STOP.get(str(finish_reason)) or _STOP_REFUSAL.get(str(finish_reason)) or "end_turn"
    return reason, None


def usage_object(raw: Any) -> dict[str, int]:
    inp, out, cached, _ = chat_usage(raw)
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def tool_input(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidToolArguments("The model called a tool with arguments that are not a JSON object")
    return value


def from_chat(call: MessagesCall, completion: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's message for a whole chat completion (its first choice)."""
    choice = first_choice(completion)
    message = obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    # Anthropic has no refusal block: a refusal is what the model said (stop_reason tells the rest).
    text = text_or(message.get("content")) + text_or(message.get("refusal"))
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for tc in calls if isinstance(calls, list) else ():
        fn = obj(obj(tc).get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": text_or(obj(tc).get("id")) or new_id("toolu"),
                "name": text_or(fn.get("name")),
                "input": tool_input(text_or(fn.get("arguments"))),
            }
        )
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), call)
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": str(completion.get("model") or call.model),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_object(completion.get("usage")),
    }


class MessagesStreamEncoder:
    """Canonical chat.completion.chunk payloads in, Anthropic's stream events out."""

    def __init__(self, call: MessagesCall, message_id: str | None = None) -> None:
        self.call = call
        self.id = message_id or new_id("msg")
        self._started = False
        self._block = -1  # index of the open content block, -1 when none is open
        self._next_block = 0
        self._tool: int | None = None  # chat tool-call index of the open tool_use block
        self._tools_seen: set[int] = set()
        self._finish: Any = None
        self._matched: Any = None
        self._usage: Any = None
        self._model = call.model

    def encode(self, chunk: bytes) -> bytes:
        doc = orjson.loads(chunk)
        out: list[bytes] = []
        if not self._started and isinstance(doc.get("model"), str):
            self._model = doc["model"]
        self._start(out)
        if isinstance(doc.get("usage"), dict):
            self._usage = doc["usage"]
        choices = doc.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        self._start(out)
        self._close(out)
        reason, sequence = stop_reason(self._finish, self._matched, self.call)
        usage = usage_object(self._usage)
        out.append(
            named_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": usage,
                },
            )
        )
        out.append(named_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        return named_event("error", error_payload(err))

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(named_event("message_start", {"type": "message_start", "message": message}))
        out.append(named_event("ping", {"type": "ping"}))

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = text_or(delta.get("content")) + text_or(delta.get("refusal"))
            if text:
                if self._block < 0 or self._tool is not None:
                    self._open({"type": "text", "text": ""}, out)
                self._delta({"type": "text_delta", "text": text}, out)
            tool_calls = delta.get("tool_calls")
            for tc in tool_calls if isinstance(tool_calls, list) else ():
                if isinstance(tc, dict):
                    self._tool_delta(tc, out)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
            self._matched = choice.get("stop_reason")

    def _tool_delta(self, tc: dict[str, Any], out: list[bytes]) -> None:
        index = tc.get("index", 0)
        if not isinstance(index, int):
            raise ProviderError("protocol", "a streamed tool call has no integer index")
        fn = obj(tc.get("function"))
        if self._tool != index:
            if index in self._tools_seen:
                raise ProviderError("protocol", "a streamed tool call continued after the next one began")
            self._tools_seen.add(index)
            call_id = text_or(tc.get("id")) or new_id("toolu")
            name = text_or(fn.get("name"))
            self._open({"type": "tool_use", "id": call_id, "name": name, "input": {}}, out)
            self._tool = index
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            self._delta({"type": "input_json_delta", "partial_json": args}, out)

    def _open(self, block: dict[str, Any], out: list[bytes]) -> None:
        self._close(out)
        self._block = self._next_block
        self._next_block += 1
        out.append(
            named_event(
                "content_block_start",
                {"type": "content_block_start", "index": self._block, "content_block": block},
            )
        )

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        out.append(
            named_event(
                "content_block_delta", {"type": "content_block_delta", "index": self._block, "delta": delta}
            )
        )

    def _close(self, out: list[bytes]) -> None:
        if self._block >= 0:
            out.append(
                named_event("content_block_stop", {"type": "content_block_stop", "index": self._block})
            )
        self._block, self._tool = -1, None
