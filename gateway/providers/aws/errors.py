"""AWS errors as ProviderError kinds: HTTP answers named by `x-amzn-errortype`, and the exception messages
of an event stream (Bedrock's `throttlingException`..., SageMaker's `ModelStreamError`...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.providers.base import FailureKind, ProviderError, Target
from gateway.providers.openai_compat import CONTEXT_LENGTH, retry_after
from gateway.redact import scrub
from gateway.secret import Secret

# Error type -> failure kind, for Bedrock Runtime and SageMaker Runtime (names compared case-blind, since
# HTTP errors are `ThrottlingException` and stream exceptions `throttlingException`).
_KINDS: dict[str, FailureKind] = {
    "throttlingexception": "rate_limited",
    "servicequotaexceededexception": "rate_limited",
    "toomanyrequestsexception": "rate_limited",
    "modelnotreadyexception": "server",  # the model is being loaded: another backend, then back later
    "modeltimeoutexception": "timeout",
    "modelerrorexception": "server",
    "modelstreamerrorexception": "server",
    "internalserverexception": "server",
    "serviceunavailableexception": "server",
    "accessdeniedexception": "auth",
    "unrecognizedclientexception": "auth",
    "invalidsignatureexception": "auth",
    "expiredtokenexception": "auth",
    "incompletesignatureexception": "auth",
    "missingauthenticationtokenexception": "auth",
    "validationexception": "client",
    "resourcenotfoundexception": "client",
    # SageMaker Runtime
    "validationerror": "client",
    "modelerror": "server",
    "modelstreamerror": "server",
    "internalstreamfailure": "server",
    "internalfailure": "server",
    "internaldependencyexception": "server",
    "serviceunavailable": "server",
}

_STATUS_KINDS: dict[int, FailureKind] = {401: "auth", 403: "auth", 408: "timeout", 429: "rate_limited"}


def error_type(headers: Mapping[str, str], doc: Any) -> str:
    """`x-amzn-errortype` (without its `:namespace` suffix), else the body's `__type` (after `#`)."""
    raw = headers.get("x-amzn-errortype") or ""
    if not raw and isinstance(doc, dict) and isinstance(doc.get("__type"), str):
        raw = doc["__type"].rpartition("#")[2]
    return raw.partition(":")[0].strip()


def kind_of(name: str, status: int | None, message: str, original: int | None = None) -> FailureKind:
    """The failure kind of an AWS error type; SageMaker's ModelError (the container's own error, 424) is
    judged by the status the container answered (`original`), so a 400 for too long a prompt stays the
    client's context-length error and a 429 a rate limit."""
    kind = _KINDS.get(name.lower())
    if name.lower() == "modelerror" and original is not None:
        kind = _STATUS_KINDS.get(original) or ("server" if original >= 500 else "client")
    if kind is None:
        kind = (
            (_STATUS_KINDS.get(status) or ("server" if status >= 500 else "client")) if status else "server"
        )
    if kind == "client" and CONTEXT_LENGTH.search(message):
        return "context_length"
    return kind


def http_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ProviderError:
    """An AWS error answer: `{"message": ...}` (or `Message`) with its type in `x-amzn-errortype`."""
    doc = _json(body)
    name = error_type(headers, doc)
    text = _message(doc) or body[:300].decode("utf-8", "replace").strip() or "no error body"
    message = scrub(f"{name}: {text}" if name else text, target.api_key, limit=500)
    original = doc.get("OriginalStatusCode") if isinstance(doc, dict) else None
    return ProviderError(
        kind_of(name, status, message, original if isinstance(original, int) else None),
        message,
        backend=target.backend,
        status=status,
        retry_after=retry_after(headers),
        body={"error": {"code": name}} if name else None,
    )


def stream_exception(name: str | None, payload: bytes, secret: Secret | None) -> ProviderError:
    """An exception message inside a stream: the stream failed (before its first chunk: failover)."""
    label = name or "exception"
    text = _message(_json(payload)) or payload[:300].decode("utf-8", "replace").strip()
    message = scrub(f"upstream error in stream: {label}: {text}", secret, limit=300)
    return ProviderError(kind_of(label, None, message), message)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _message(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    for key in ("message", "OriginalMessage", "Message"):  # a container's own words first
        value = doc.get(key)
        if isinstance(value, str):
            return value
    return ""
