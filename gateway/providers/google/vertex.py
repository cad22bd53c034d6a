"""Vertex AI's OpenAI-compatible endpoint: where it lives, and what its google.rpc.Status errors mean."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from gateway.providers.base import FailureKind, ProviderError, Target
from gateway.providers.openai_compat import CONTEXT_LENGTH, OpenAICompatAdapter, retry_after
from gateway.redact import scrub

if TYPE_CHECKING:
    from gateway.policy.model import Backend

GLOBAL_HOST = "https://aiplatform.googleapis.com"

# google.rpc.Code names -> what the router does. A backend that cannot serve as configured (its project may
# not call the model, the model or endpoint is not there, a precondition such as billing or the region
# fails) is "auth": failed over at once and cooled down like a rejected key. 401 is also "auth"; its token
# is renewed (resilience/health.py asks the credential provider).
_KINDS: dict[str, FailureKind] = {
    "INVALID_ARGUMENT": "client",
    "OUT_OF_RANGE": "client",
    "UNIMPLEMENTED": "client",
    "UNAUTHENTICATED": "auth",
    "PERMISSION_DENIED": "auth",
    "NOT_FOUND": "auth",
    "FAILED_PRECONDITION": "auth",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "DEADLINE_EXCEEDED": "timeout",
    "UNAVAILABLE": "server",
    "INTERNAL": "server",
    "UNKNOWN": "server",
    "ABORTED": "server",
    "CANCELLED": "server",
    "DATA_LOSS": "server",
}
_MAX_DETAILS = 16  # details entries looked at: the body is bounded already, this bounds the walk


def api_root(project: str, location: str, endpoint: str = "openapi", base_url: str | None = None) -> str:
    """The endpoint's URL, to which the OpenAI paths (/chat/completions) are appended. `base_url` replaces
    only the scheme and host (a Private Service Connect address, a test server), as Google's
    `api_endpoint` client option does; the `global` location has no regional host."""
    if base_url:
        host = base_url.rstrip("/")
    elif location == "global":
        host = GLOBAL_HOST
    else:
        host = f"https://{location}-aiplatform.googleapis.com"
    return f"{host}/v1/projects/{project}/locations/{location}/endpoints/{endpoint}"


def backend_root(backend: Backend) -> str:
    """A vertex backend's API root from its keys (the registry's `root` for this kind)."""
    assert backend.project is not None and backend.location is not None  # the schema requires them
    return api_root(backend.project, backend.location, backend.endpoint or "openapi", backend.base_url)


def config_problems(fields: Mapping[str, Any]) -> list[str]:
    """What a vertex backend may not have beyond the keys the registry checks: a key (it authenticates
    with Application Default Credentials), or a base_url with a path (the path is Vertex's)."""
    problems = []
    if fields.get("api_key_env") is not None:
        problems.append("vertex authenticates with Application Default Credentials, not api_key_env")
    url = fields.get("base_url")
    if isinstance(url, str) and urlsplit(url).path not in ("", "/"):
        problems.append("vertex's base_url is a scheme and host only: the /v1/projects/... path is Vertex's")
    return problems


@dataclass(frozen=True, slots=True)
class GoogleError:
    """The parts of a google.rpc.Status error body the router uses."""

    status: str  # the google.rpc.Code name, e.g. RESOURCE_EXHAUSTED
    message: str
    retry_delay_s: float | None = None  # google.rpc.RetryInfo
    field: str | None = None  # the first google.rpc.BadRequest field violation


def google_error(body: bytes) -> GoogleError | None:
    """`{"error": {"code", "message", "status", "details"}}`, also wrapped in a one-item list as some Vertex
    routes send it; None when the body is not that shape."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc:
        doc = doc[0]
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("status"), str):
        return None
    message = err.get("message")
    details = err.get("details")
    details = [d for d in details[:_MAX_DETAILS] if isinstance(d, dict)] if isinstance(details, list) else []
    return GoogleError(
        err["status"],
        message if isinstance(message, str) else err["status"],
        _retry_delay(details),
        _bad_field(details),
    )


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """RetryInfo's retryDelay, a protobuf Duration in JSON: seconds with an `s` suffix, e.g. "2.5s"."""
    for detail in details:
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            try:
                seconds = float(delay.removesuffix("s")) if delay.endswith("s") else math.nan
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def _bad_field(details: list[dict[str, Any]]) -> str | None:
    for detail in details:
        violations = detail.get("fieldViolations")
        if str(detail.get("@type", "")).endswith("google.rpc.BadRequest") and isinstance(violations, list):
            first = violations[0] if violations else None
            field = first.get("field") if isinstance(first, dict) else None
            return field if isinstance(field, str) else None
    return None


def failure_kind(http_status: int, err: GoogleError) -> FailureKind | None:
    """The router's kind for a Google status (None: unknown name, judge by the HTTP status)."""
    if http_status == 429:  # whatever the body names, the HTTP status says: come back later
        return "rate_limited"
    kind = _KINDS.get(err.status)
    if kind == "client" and CONTEXT_LENGTH.search(err.message):
        return "context_length"
    return kind


class VertexAdapter(OpenAICompatAdapter):
    """Requests, answers and SSE streams are OpenAI's (the target's base_url is the endpoint's root, see
    api_root); errors are google.rpc.Status bodies, mapped here. Rate limits: Vertex sends no
    x-ratelimit-* headers; a 429's wait is its Retry-After, else the body's RetryInfo, else the cooldown's
    default (resilience/cooldown.py)."""

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ProviderError:
        err = google_error(body)
        kind = failure_kind(status, err) if err is not None else None
        if err is None or kind is None:
            fallback = super().parse_error(status, headers, body, target)
            if status == 404:  # Google's front end on a URL it does not route: this backend's settings
                fallback.kind = "auth"
            return fallback
        wait = retry_after(headers)
        kept = {"code": err.status, **({"param": err.field} if err.field else {})}
        return ProviderError(
            kind,
            scrub(err.message, target.api_key, limit=500),
            backend=target.backend,
            status=status,
            retry_after=wait if wait is not None else err.retry_delay_s,
            body={"error": {k: scrub(v, target.api_key) for k, v in kept.items()}},
        )
