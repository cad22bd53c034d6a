"""JSON bodies in the shapes the OpenAI API returns: chat, legacy completions, embeddings and errors."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

from gateway.sim.generate import Answer, logprob_entry, split_pieces

Event = dict[str, Any]  # one server-sent event's JSON payload


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class Reply:
    """What every body of one response shares."""

    id: str
    created: int
    model: str
    fingerprint: str
    omit_optional: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    include_usage: bool = False

    def header(self, object_: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": object_,
            "created": self.created,
            "model": self.model,
        }
        if self.omit_optional:
            # Streams from such servers carry an explicit null rather than leaving the key out.
            if stream:
                body["system_fingerprint"] = None
        else:
            body["service_tier"] = "default"
            body["system_fingerprint"] = self.fingerprint
        return body


def usage(prompt: int, completion: int, omit_optional: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    out["total_tokens"] = prompt + completion
    if not omit_optional:
        out["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        out["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return out


def _tool_call_json(answer: Answer) -> list[dict[str, Any]]:
    assert answer.tool_call is not None
    call = answer.tool_call
    return [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]


def _chat_logprobs(reply: Reply, pieces: list[str], start: int) -> dict[str, Any]:
    content = [logprob_entry(piece, start + i, reply.top_logprobs) for i, piece in enumerate(pieces)]
    return {"content": content, "refusal": None}


def _with_logprobs(reply: Reply, choice: dict[str, Any], logprobs: dict[str, Any] | None) -> dict[str, Any]:
    if reply.logprobs:
        choice["logprobs"] = logprobs
    elif not reply.omit_optional:
        choice["logprobs"] = None
    return choice


def chat_completion(reply: Reply, answers: list[Answer], prompt_tokens: int) -> dict[str, Any]:
    body = reply.header("chat.completion", stream=False)
    body["choices"] = [_chat_choice(reply, answer) for answer in answers]
    completion = sum(answer.tokens for answer in answers)
    body["usage"] = usage(prompt_tokens, completion, reply.omit_optional)
    return body


def _chat_choice(reply: Reply, answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if answer.tool_call else answer.text}
    if not reply.omit_optional:
        message["refusal"] = None
        message["annotations"] = []
    if answer.tool_call is not None:
        message["tool_calls"] = _tool_call_json(answer)
    choice: dict[str, Any] = {"index": answer.index, "message": message}
    logprobs = None if answer.tool_call else _chat_logprobs(reply, answer.pieces, 0)
    _with_logprobs(reply, choice, logprobs)
    choice["finish_reason"] = answer.finish_reason
    return choice


def chat_chunk(
    reply: Reply,
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = reply.header("chat.completion.chunk", stream=True)
    choice = _with_logprobs(reply, {"index": index, "delta": delta}, logprobs)
    choice["finish_reason"] = finish_reason
    body["choices"] = [choice]
    if reply.include_usage:
        body["usage"] = None
    return body


def chat_stream_steps(
    reply: Reply, answers: list[Answer]
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Chunks grouped by token position (one chunk per still-talking choice), then the role chunks.

    Role chunks go out together with the first token so the time to the first byte is the TTFT.
    """
    roles = [chat_chunk(reply, a.index, _role_delta(a)) for a in answers]
    per_choice = [_choice_chunks(reply, answer) for answer in answers]
    depth = max((len(chunks) for chunks in per_choice), default=0)
    steps = [[chunks[i] for chunks in per_choice if i < len(chunks)] for i in range(depth)]
    return steps, roles


def _role_delta(answer: Answer) -> dict[str, Any]:
    if answer.tool_call is None:
        return {"role": "assistant", "content": ""}
    call = answer.tool_call
    header = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
    return {"role": "assistant", "content": None, "tool_calls": [header]}


def _choice_chunks(reply: Reply, answer: Answer) -> list[dict[str, Any]]:
    if answer.tool_call is not None:
        return [
            chat_chunk(reply, answer.index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in split_pieces(answer.tool_call.arguments)
        ]
    return [
        chat_chunk(
            reply,
            answer.index,
            {"content": piece},
            None,
            _chat_logprobs(reply, [piece], position) if reply.logprobs else None,
        )
        for position, piece in enumerate(answer.pieces)
    ]


def chat_stream_tail(reply: Reply, answers: list[Answer], prompt_tokens: int) -> list[dict[str, Any]]:
    """The finish chunk of every choice and, if asked for, the usage-only chunk."""
    tail = [chat_chunk(reply, a.index, {}, a.finish_reason) for a in answers]
    if reply.include_usage:
        last = reply.header("chat.completion.chunk", stream=True)
        last["choices"] = []
        last["usage"] = usage(prompt_tokens, sum(a.tokens for a in answers), reply.omit_optional)
        tail.append(last)
    return tail


def _legacy_logprobs(reply: Reply, pieces: list[str]) -> dict[str, Any] | None:
    if not reply.logprobs:
        return None
    entries = [logprob_entry(piece, i, reply.top_logprobs) for i, piece in enumerate(pieces)]
    offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    return {
        "tokens": pieces,
        "token_logprobs": [entry["logprob"] for entry in entries],
        "top_logprobs": [
            {alt["token"]: alt["logprob"] for alt in entry["top_logprobs"]} for entry in entries
        ],
        "text_offset": offsets,
    }


def text_completion(reply: Reply, answers: list[Answer], prompt_tokens: int) -> dict[str, Any]:
    body = reply.header("text_completion", stream=False)
    body["choices"] = [
        {
            "text": answer.text,
            "index": answer.index,
            "logprobs": _legacy_logprobs(reply, answer.pieces),
            "finish_reason": answer.finish_reason,
        }
        for answer in answers
    ]
    body["usage"] = usage(prompt_tokens, sum(a.tokens for a in answers), reply.omit_optional)
    return body


def text_chunk(reply: Reply, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    body = reply.header("text_completion", stream=True)
    logprobs = _legacy_logprobs(reply, [text]) if text else None
    body["choices"] = [{"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}]
    if reply.include_usage:
        body["usage"] = None
    return body


def embedding_vector(model: str, item: Any, dim: int) -> list[float]:
    """A unit vector seeded by the model and input, so equal inputs always embed equally."""
    digest = hashlib.sha256(f"{model}\x00{item!r}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "little"))
    raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings(model: str, items: list[Any], dim: int, as_base64: bool, prompt_tokens: int) -> dict[str, Any]:
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(model, item, dim)
        encoded: Any = encode_base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
