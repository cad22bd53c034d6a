"""Deterministic "model output": word tokens, stop sequences, JSON answers, tool calls and logprobs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and", "runs", "far")
DEFAULT_MAX_TOKENS = 16
_PIECE_CHARS = 6  # how finely JSON answers and tool arguments are cut into "tokens"


def estimate_tokens(chars: int) -> int:
    """The usual four-characters-per-token rule of thumb, never less than one."""
    return max(1, chars // 4)


def content_chars(content: Any) -> int:
    """Characters of a message `content`: a string, or a list of parts of which only text counts."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return 0


def messages_tokens(messages: list[Any]) -> int:
    return estimate_tokens(sum(content_chars(m.get("content")) for m in messages if isinstance(m, dict)))


def prompt_tokens(prompt: Any) -> int:
    """Legacy `prompt` or embeddings `input`: a string, a token array, or a list of either."""
    if isinstance(prompt, str):
        return estimate_tokens(len(prompt))
    if isinstance(prompt, list) and all(isinstance(item, int) for item in prompt):
        return max(1, len(prompt))
    if isinstance(prompt, list):
        return sum(prompt_tokens(item) for item in prompt)
    return 1


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Answer:
    """What one choice says: content pieces (one per token) or a tool call, and why it stopped."""

    index: int
    pieces: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        if self.tool_call is not None:
            return len(split_pieces(self.tool_call.arguments))
        return len(self.pieces)


def split_pieces(text: str) -> list[str]:
    return [text[i : i + _PIECE_CHARS] for i in range(0, len(text), _PIECE_CHARS)] or [""]


def word_at(position: int, index: int, seed: int) -> str:
    return " " + WORDS[(position + 3 * index + seed) % len(WORDS)]


def text_answer(index: int, count: int, seed: int, stops: list[str], capped: bool) -> Answer:
    """`count` words, cut short at the first stop sequence; "length" only when the client set the cap."""
    pieces: list[str] = []
    text = ""
    for position in range(count):
        piece = word_at(position, index, seed)
        cut = _first_stop(text + piece, stops)
        if cut is not None:
            if cut > len(text):
                pieces.append(piece[: cut - len(text)])
            return Answer(index, pieces, "stop")
        pieces.append(piece)
        text += piece
    return Answer(index, pieces, "length" if capped else "stop")


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(stop) for stop in stops if stop and stop in text]
    return min(hits) if hits else None


def parse_stops(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str)]
    return []


def json_answer(index: int, count: int, seed: int, response_format: dict[str, Any]) -> Answer:
    """A valid JSON object: shaped by the schema for `json_schema`, else `{"text": "..."}`."""
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        value = sample_for_schema(schema if isinstance(schema, dict) else {}, index + seed)
        if not isinstance(value, dict):
            value = {"value": value}
        return Answer(index, split_pieces(orjson.dumps(value).decode()))
    words = [word_at(position, index, seed) for position in range(max(1, count - 2))]
    return Answer(index, ['{"text":"', *words, '"}'])


def sample_for_schema(schema: dict[str, Any], salt: int = 0, depth: int = 0) -> Any:
    """A small value that satisfies common JSON Schema shapes (type, enum, properties, items)."""
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return schema["enum"][salt % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return _sample_object(schema, salt, depth)
    if kind == "array":
        items = schema.get("items")
        if depth >= 4 or not isinstance(items, dict):
            return []
        return [sample_for_schema(items, salt, depth + 1)]
    return _sample_scalar(kind, salt)


def _sample_object(schema: dict[str, Any], salt: int, depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    if depth >= 4 or not isinstance(properties, dict):
        return {}
    return {
        name: sample_for_schema(sub if isinstance(sub, dict) else {}, salt + i, depth + 1)
        for i, (name, sub) in enumerate(properties.items())
    }


def _sample_scalar(kind: Any, salt: int) -> Any:
    if kind == "integer":
        return 42 + salt
    if kind == "number":
        return 1.5 + salt
    if kind == "boolean":
        return salt % 2 == 0
    if kind == "null":
        return None
    return WORDS[salt % len(WORDS)] + " " + WORDS[(salt + 1) % len(WORDS)]


def chosen_tool(tools: Any, tool_choice: Any, messages: Any = None) -> dict[str, Any] | None:
    """The function the model "decides" to call, or None when tools are absent or switched off, or when
    the conversation ends with a tool's result and no call is forced (the model then answers in words, so
    a client's tool loop ends as it would with a real model)."""
    if not isinstance(tools, list) or not tools or tool_choice == "none":
        return None
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "tool" and tool_choice in (None, "auto"):
        return None
    functions: list[dict[str, Any]] = [
        t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    if not functions:
        return None
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        return next((f for f in functions if f.get("name") == wanted), functions[0])
    return functions[0]


def tool_answer(index: int, function: dict[str, Any], seed: int, request_id: str) -> Answer:
    parameters = function.get("parameters")
    arguments = sample_for_schema(parameters if isinstance(parameters, dict) else {}, index + seed)
    if not isinstance(arguments, dict):
        arguments = {}
    call_id = "call_" + hashlib.sha1(f"{request_id}/{index}".encode()).hexdigest()[:24]
    call = ToolCall(call_id, str(function.get("name", "tool")), orjson.dumps(arguments).decode())
    return Answer(index, [], "tool_calls", call)


def logprob_entry(token: str, position: int, top: int) -> dict[str, Any]:
    """One `logprobs.content` item; alternatives are other words with strictly lower log-probability."""
    logprob = -round(0.01 + 0.13 * (position % 5), 4)
    alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
    for rank in range(1, top):
        alt = " " + WORDS[(position + 5 * rank) % len(WORDS)] + ("" if rank < len(WORDS) else str(rank))
        alt_logprob = round(logprob - 1.0 * rank, 4)
        alternatives.append({"token": alt, "logprob": alt_logprob, "bytes": list(alt.encode())})
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": alternatives[:top],
    }
