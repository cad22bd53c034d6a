"""Completes OpenAI-format bodies that omit fields the published spec requires, in place and cheaply.

Many OpenAI-compatible servers (vLLM, TGI, some hosted NIMs) leave out `message.refusal`, `choices[].logprobs`
or send `system_fingerprint: null`; the official SDKs tolerate that, strict clients and validators do not.
Each function returns True when it changed the document, so untouched bodies are forwarded byte for byte.
They are total over any JSON object: a field present with the wrong type (`choices: [1]`, `delta: "x"`)
is a ProviderError of kind "protocol" (failover, or an error event mid-stream), never an uncaught exception.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gateway.providers.base import ProviderError

Doc = dict[str, Any]

_STREAM_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call", None})
_NULL_NOT_ALLOWED = ("system_fingerprint", "service_tier")
_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _top(doc: Doc, obj: str, id_prefix: str, model: str) -> bool:
    changed = False
    if not isinstance(doc.get("id"), str):
        doc["id"] = _new_id(id_prefix)
        changed = True
    if doc.get("object") != obj:
        doc["object"] = obj
        changed = True
    if not isinstance(doc.get("created"), int):
        doc["created"] = int(time.time())
        changed = True
    if not isinstance(doc.get("model"), str):
        doc["model"] = model
        changed = True
    for key in _NULL_NOT_ALLOWED:
        if key in doc and doc[key] is None:
            del doc[key]
            changed = True
    choices = doc.get("choices")
    if choices is None:
        doc["choices"] = []
        return True
    if not isinstance(choices, list):
        raise ProviderError("protocol", "'choices' is not an array of objects")
    for c in choices:  # a plain loop, not all() over a generator: this runs per response and per chunk
        if not isinstance(c, dict):
            raise ProviderError("protocol", "'choices' is not an array of objects")
    return changed


def _object(d: Doc, key: str) -> bool:
    """Sets a missing (or null) object field to {}; any other non-object value is a protocol error."""
    value = d.get(key)
    if isinstance(value, dict):
        return False
    if value is not None:
        raise ProviderError("protocol", f"'{key}' is not an object")
    d[key] = {}
    return True


def _usage(doc: Doc, keys: tuple[str, ...], *, null_ok: bool = False) -> bool:
    """Fills missing counters; drops `usage: null` where the spec does not allow null (whole responses)."""
    if "usage" not in doc:
        return False
    usage = doc["usage"]
    if not isinstance(usage, dict):
        if usage is None and null_ok:
            return False
        del doc["usage"]
        return True
    changed = False
    for key in keys:
        if not isinstance(usage.get(key), int):
            usage[key] = 0
            changed = True
    return changed


def _setdefault(d: Doc, key: str, value: Any) -> bool:
    if key in d:
        return False
    d[key] = value
    return True


def _defaults(d: Doc, pairs: tuple[tuple[str, Any], ...]) -> bool:
    """Sets each missing key of `pairs` to its default (one call for several fields)."""
    changed = False
    for key, value in pairs:
        if key not in d:
            d[key] = value
            changed = True
    return changed


_MESSAGE_DEFAULTS = (("role", "assistant"), ("content", None), ("refusal", None))


def _finish(choice: Doc, *, nullable: bool) -> bool:
    reason = choice.get("finish_reason")
    if "finish_reason" in choice and (
        (reason is None and nullable) or (isinstance(reason, str) and reason in _STREAM_FINISH)
    ):
        return False
    # Unknown reasons ("eos", "abort", a number, missing) map to the closest spec value.
    choice["finish_reason"] = (
        None if nullable and reason is None else ("length" if reason == "length" else "stop")
    )
    return True


def chat_completion(doc: Doc, model: str) -> bool:
    changed = _top(doc, "chat.completion", "chatcmpl-", model)
    for i, choice in enumerate(doc["choices"]):
        changed |= _setdefault(choice, "index", i)
        changed |= _finish(choice, nullable=False)
        changed |= _setdefault(choice, "logprobs", None)
        changed |= _object(choice, "message")
        changed |= _defaults(choice["message"], _MESSAGE_DEFAULTS)
    return _usage(doc, _COUNTS) or changed


def chat_chunk(doc: Doc, model: str) -> bool:
    changed = _top(doc, "chat.completion.chunk", "chatcmpl-", model)
    for i, choice in enumerate(doc["choices"]):
        changed |= _setdefault(choice, "index", i)
        changed |= _object(choice, "delta")
        changed |= _finish(choice, nullable=True)
    return _usage(doc, _COUNTS, null_ok=True) or changed


def text_completion(doc: Doc, model: str, *, chunk: bool = False) -> bool:
    changed = _top(doc, "text_completion", "cmpl-", model)
    for i, choice in enumerate(doc["choices"]):
        changed |= _setdefault(choice, "index", i)
        changed |= _setdefault(choice, "text", "")
        changed |= _setdefault(choice, "logprobs", None)
        changed |= _finish(choice, nullable=chunk)
    return _usage(doc, _COUNTS, null_ok=chunk) or changed


def embeddings(doc: Doc, model: str) -> bool:
    changed = False
    if doc.get("object") != "list":
        doc["object"] = "list"
        changed = True
    if not isinstance(doc.get("model"), str):
        doc["model"] = model
        changed = True
    data = doc.get("data")
    if data is None:
        data = doc["data"] = []
        changed = True
    elif not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ProviderError("protocol", "'data' is not an array of objects")
    for i, item in enumerate(data):
        changed |= _setdefault(item, "index", i)
        if item.get("object") != "embedding":
            item["object"] = "embedding"
            changed = True
    if not isinstance(doc.get("usage"), dict):
        doc["usage"] = {"prompt_tokens": 0, "total_tokens": 0}
        return True
    return _usage(doc, ("prompt_tokens", "total_tokens")) or changed
