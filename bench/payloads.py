"""The request bodies every load generator sends and the canned upstream answers, as bytes."""

from __future__ import annotations

import orjson

CHAT_PATH = "/v1/chat/completions"
# LiteLLM refuses to start without a master key; every client sends this one (loopback only, not a secret).
BENCH_KEY = "sk-bench-loopback-7c1e5a9d2b64f083"
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {BENCH_KEY}"}
MODEL = "bench-model"
SLOW_MODEL = "bench-slow"  # the upstream streams this one slowly (the many-open-streams test)
MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]

CHAT_BODY = orjson.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 16})
STREAM_BODY = orjson.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 16, "stream": True})
SLOW_STREAM_BODY = orjson.dumps({"model": SLOW_MODEL, "messages": MESSAGES, "max_tokens": 16, "stream": True})

_CREATED = 1_700_000_000
_ID = "chatcmpl-bench0000000000000000"

# Spec-complete on purpose (refusal, logprobs, usage): a gateway may forward it byte for byte.
COMPLETION = orjson.dumps(
    {
        "id": _ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
    }
)


def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": _ID,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


USAGE_CHUNK = orjson.dumps(
    {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
    }
)


def sse(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


FIRST_EVENT = sse(chunk({"role": "assistant", "content": ""}))
TOKEN_EVENT = sse(chunk({"content": " hello"}))
LAST_EVENTS = sse(chunk({}, "stop")) + sse(USAGE_CHUNK) + b"data: [DONE]\n\n"
# A whole fast stream: what a 0 ms upstream sends for `stream: true`.
FAST_STREAM = FIRST_EVENT + b"".join(sse(chunk({"content": w})) for w in ("Hello", "!", " How", " can", " I"))
FAST_STREAM += LAST_EVENTS

MODELS = orjson.dumps(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": _CREATED, "owned_by": "bench"}
            for m in (MODEL, SLOW_MODEL)
        ],
    }
)
