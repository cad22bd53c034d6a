"""What the front doors share on the wire: named SSE events, object ids, small field checks."""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

import orjson

from gateway.errors import BadRequest

# Ids are a random per-process prefix and a counter: unique across replicas, no syscall per request.
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def new_id(kind: str) -> str:
    """`msg_…`, `fc_…`, `call_…`: the shape OpenAI's and Anthropic's ids have."""
    return f"{kind}_{_PREFIX}{next(_COUNTER):012x}"


_SECRET = os.urandom(32)


def secret_id(kind: str) -> str:
    """An id nobody can guess from others (a keyed hash of the counter): stored responses' ids, which a
    gateway running without client keys protects by nothing else."""
    digest = hashlib.blake2b(next(_COUNTER).to_bytes(8, "big"), key=_SECRET, digest_size=16).hexdigest()
    return f"{kind}_{_PREFIX}{digest}"


def named_event(name: str, doc: dict[str, Any]) -> bytes:
    """One server-sent event with an `event:` line, as both APIs frame their streams."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n"


def kind_of(value: Any) -> str:
    """A JSON value's type as a client would call it, for error messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def want_str(value: Any, param: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{param}' must be a string, not {kind_of(value)}", param=param)
    return value


def want_int(value: Any, param: str, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"'{param}' must be an integer >= {minimum}", param=param)
    return value


def want_number(value: Any, param: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"'{param}' must be a number between {low:g} and {high:g}", param=param)
    return value


def want_bool(value: Any, param: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'{param}' must be a boolean", param=param)
    return value


def want_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"'{param}' must be an array, not {kind_of(value)}", param=param)
    return value


def want_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"'{param}' must be an object, not {kind_of(value)}", param=param)
    return value


def unsupported(what: str, param: str) -> BadRequest:
    """The 400 for a feature this gateway does not serve: named, so the client knows what to drop."""
    return BadRequest(f"{what} is not supported by this gateway", param=param, code="unsupported_parameter")


def chat_usage(raw: Any) -> tuple[int, int, int, int]:
    """(input, output, cached input, reasoning) tokens from a chat `usage` object; zeros when absent."""
    if not isinstance(raw, dict):
        return 0, 0, 0, 0
    details_in = raw.get("prompt_tokens_details")
    details_out = raw.get("completion_tokens_details")
    return (
        _count(raw.get("prompt_tokens")),
        _count(raw.get("completion_tokens")),
        _count(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
        _count(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else 0,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (for reading upstream shapes defensively)."""
    return value if isinstance(value, dict) else {}


def text_or(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def first_choice(completion: dict[str, Any]) -> dict[str, Any]:
    """A chat completion's first choice (both doors answer one), or an empty object."""
    choices = completion.get("choices")
    return obj(choices[0]) if isinstance(choices, list) and choices else {}


def label(value: Any) -> str:
    """A client's type name quoted for an error message: short strings as given, anything else by kind."""
    if isinstance(value, str) and len(value) <= 64 and value.isprintable():
        return repr(value)
    return kind_of(value)
