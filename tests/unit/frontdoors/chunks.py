"""Canonical chat.completion.chunk payloads for the encoders' tests, as a backend streams them."""

from __future__ import annotations

from typing import Any

import orjson


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up-model",
            "choices": choices,
            **extra,
        }
    )


def usage_chunk(prompt: int = 7, completion: int = 5) -> bytes:
    return chunk(
        None,
        usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    )


def tool_start(index: int, call_id: str, name: str) -> bytes:
    return chunk(
        {
            "tool_calls": [
                {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
            ]
        }
    )


def tool_args(index: int, piece: str) -> bytes:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})


def text(piece: str) -> bytes:
    return chunk({"content": piece})


# Text, then two tool calls, then the finish and the usage: the richest ordinary stream.
TEXT_THEN_TOOLS = [
    chunk({"role": "assistant", "content": ""}),
    text("Let me "),
    text("look."),
    tool_start(0, "call_a", "lookup"),
    tool_args(0, '{"q": '),
    tool_args(0, '"cats"}'),
    tool_start(1, "call_b", "count"),
    tool_args(1, "{}"),
    chunk({}, "tool_calls"),
    usage_chunk(),
]
