"""Chat answers -> OpenAI's Response object, and canonical chat chunks -> the Responses stream's named events.

The stream keeps one output item open at a time, as OpenAI's own stream does: text opens a message item,
a tool call closes it and opens a function_call item, the next tool call closes that one. Every event
carries the next `sequence_number`; the same response id runs through all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import GatewayError, RateLimited
from gateway.frontdoors.responses_request import Item, ResponsesCall
from gateway.frontdoors.wire import chat_usage, first_choice, named_event, new_id, obj, secret_id, text_or
from gateway.providers.base import ProviderError

# Chat finish reasons that leave a response incomplete, and the reason it then gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(
    call: ResponsesCall,
    rid: str,
    created_at: int,
    *,
    model: str,
    output: list[Item],
    status: str,
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Response object: this call's echo of the request, with the given output and state."""
    doc: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": call.instructions,
        "model": model,
        "output": output,
        "previous_response_id": call.previous_response_id,
        "store": call.store,
        "truncation": "disabled",
        **call.echo,
    }
    if usage is not None:
        doc["usage"] = usage
    return doc


def usage_object(raw: Any) -> dict[str, Any] | None:
    """Chat usage as the Responses API counts it; None when the backend reported none."""
    if not isinstance(raw, dict):
        return None
    inp, out, cached, reasoning = chat_usage(raw)
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def from_chat(call: ResponsesCall, rid: str, created_at: int, completion: dict[str, Any]) -> dict[str, Any]:
    """The Response object for a whole chat completion (its first choice: the Responses API has no `n`)."""
    choice = first_choice(completion)
    message = obj(choice.get("message"))
    output: list[Item] = []
    parts: list[dict[str, Any]] = []
    if text_or(message.get("content")):
        parts.append(_text_part(message["content"]))
    if text_or(message.get("refusal")):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(_message_item(new_id("msg"), parts, "completed"))
    calls = message.get("tool_calls")
    for tc in calls if isinstance(calls, list) else ():
        fn = obj(obj(tc).get("function"))
        call_id = text_or(obj(tc).get("id")) or new_id("call")
        output.append(
            _call_item(
                new_id("fc"), call_id, text_or(fn.get("name")), text_or(fn.get("arguments")), "completed"
            )
        )
    incomplete = _INCOMPLETE.get(str(choice.get("finish_reason")))
    return response_object(
        call,
        rid,
        created_at,
        model=str(completion.get("model") or call.model),
        output=output,
        status="incomplete" if incomplete else "completed",
        usage=usage_object(completion.get("usage")),
        incomplete=incomplete,
    )


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, parts: list[dict[str, Any]], status: str) -> Item:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": parts}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Item:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def error_code(err: GatewayError) -> str:
    """The Response object's `error.code` (an enum: OpenAI names only these two for gateway failures)."""
    return "rate_limit_exceeded" if isinstance(err, RateLimited) or err.status == 429 else "server_error"


# ---------------------------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """The output item being streamed: a message (its parts) or a function call (its chat tool index)."""

    index: int
    item: Item
    tool_index: int | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)


class ResponsesStreamEncoder:
    """Canonical chat.completion.chunk payloads in, the Responses API's named SSE events out.

    `response` holds the final Response object once `finish` or `error` ran (what `store` keeps).
    """

    def __init__(self, call: ResponsesCall, rid: str | None = None, created_at: int | None = None) -> None:
        self.call = call
        self.rid = rid or secret_id("resp")
        self.created_at = int(time.time()) if created_at is None else created_at
        self.model = call.model
        self.response: dict[str, Any] | None = None
        self._seq = 0
        self._started = False
        self._output: list[Item] = []
        self._open: _Open | None = None
        self._tools_seen: set[int] = set()
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    def encode(self, chunk: bytes) -> bytes:
        doc = orjson.loads(chunk)
        out: list[bytes] = []
        if not self._started and isinstance(doc.get("model"), str):
            self.model = doc["model"]
        self._start(out)
        usage = usage_object(doc.get("usage"))
        if usage is not None:
            self._usage = usage
        choices = doc.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        self._start(out)
        self._close(out)
        incomplete = _INCOMPLETE.get(str(self._finish_reason))
        status = "incomplete" if incomplete else "completed"
        self.response = self._snapshot(status, usage=self._usage, incomplete=incomplete)
        out.append(self._event(f"response.{status}", {"response": self.response}))
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        """`error`, then `response.failed` with what had been streamed (items left incomplete)."""
        out: list[bytes] = []
        self._start(out)
        if self._open is not None:
            self._open.item["status"] = "incomplete"
            if self._open.item["type"] == "message":
                self._open.item["content"] = self._open.parts
            self._open = None
        code = error_code(err)
        out.append(
            self._event("error", {"code": err.code or code, "message": err.message, "param": err.param})
        )
        self.response = self._snapshot(
            "failed", usage=self._usage, error={"code": code, "message": err.message}
        )
        out.append(self._event("response.failed", {"response": self.response}))
        return b"".join(out)

    # -- internals ---------------------------------------------------------------------------------------

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        doc = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return named_event(kind, doc)

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self.call,
            self.rid,
            self.created_at,
            model=self.model,
            output=list(self._output),
            status=status,
            **extra,
        )

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        for kind in ("response.created", "response.in_progress"):
            out.append(self._event(kind, {"response": self._snapshot("in_progress")}))

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content, refusal = delta.get("content"), delta.get("refusal")
            if isinstance(content, str) and content:
                self._text("output_text", content, out)
            if isinstance(refusal, str) and refusal:
                self._text("refusal", refusal, out)
            tool_calls = delta.get("tool_calls")
            for tc in tool_calls if isinstance(tool_calls, list) else ():
                if isinstance(tc, dict):
                    self._tool(tc, out)
        if isinstance(choice.get("finish_reason"), str):
            self._finish_reason = choice["finish_reason"]

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        cur = self._open
        if cur is None or cur.item["type"] != "message":
            self._close(out)
            cur = self._add(_message_item(new_id("msg"), [], "in_progress"), out)
        if not cur.parts or cur.parts[-1]["type"] != kind:
            self._close_part(cur, out)
            part = _text_part("") if kind == "output_text" else {"type": "refusal", "refusal": ""}
            cur.parts.append(part)
            out.append(self._event("response.content_part.added", {**self._at(cur), "part": dict(part)}))
        part = cur.parts[-1]
        if kind == "output_text":
            part["text"] += text
            out.append(
                self._event("response.output_text.delta", {**self._at(cur), "delta": text, "logprobs": []})
            )
        else:
            part["refusal"] += text
            out.append(self._event("response.refusal.delta", {**self._at(cur), "delta": text}))

    def _tool(self, tc: dict[str, Any], out: list[bytes]) -> None:
        index = tc.get("index", 0)
        if not isinstance(index, int):
            raise ProviderError("protocol", "a streamed tool call has no integer index")
        fn = obj(tc.get("function"))
        cur = self._open
        if cur is None or cur.tool_index != index:
            if index in self._tools_seen:
                raise ProviderError("protocol", "a streamed tool call continued after the next one began")
            self._tools_seen.add(index)
            self._close(out)
            call_id = text_or(tc.get("id")) or new_id("call")
            name = text_or(fn.get("name"))
            cur = self._add(_call_item(new_id("fc"), call_id, name, "", "in_progress"), out, index)
        elif isinstance(fn.get("name"), str) and fn["name"] and not cur.item["name"]:
            cur.item["name"] = fn["name"]
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            cur.item["arguments"] += args
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": cur.item["id"], "output_index": cur.index, "delta": args},
                )
            )

    def _add(self, item: Item, out: list[bytes], tool_index: int | None = None) -> _Open:
        cur = _Open(len(self._output), item, tool_index)
        self._output.append(item)
        self._open = cur
        added = {**item, "content": []} if item["type"] == "message" else dict(item)
        out.append(self._event("response.output_item.added", {"output_index": cur.index, "item": added}))
        return cur

    def _at(self, cur: _Open) -> dict[str, Any]:
        return {"item_id": cur.item["id"], "output_index": cur.index, "content_index": len(cur.parts) - 1}

    def _close_part(self, cur: _Open, out: list[bytes]) -> None:
        if not cur.parts:
            return
        part = cur.parts[-1]
        if part["type"] == "output_text":
            out.append(
                self._event(
                    "response.output_text.done", {**self._at(cur), "text": part["text"], "logprobs": []}
                )
            )
        else:
            out.append(self._event("response.refusal.done", {**self._at(cur), "refusal": part["refusal"]}))
        out.append(self._event("response.content_part.done", {**self._at(cur), "part": dict(part)}))

    def _close(self, out: list[bytes]) -> None:
        cur, self._open = self._open, None
        if cur is None:
            return
        item = cur.item
        if item["type"] == "message":
            self._close_part(cur, out)
            item["content"] = cur.parts
        else:
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    {
                        "item_id": item["id"],
                        "output_index": cur.index,
                        "name": item["name"],
                        "arguments": item["arguments"],
                    },
                )
            )
        item["status"] = "completed"
        out.append(self._event("response.output_item.done", {"output_index": cur.index, "item": item}))
