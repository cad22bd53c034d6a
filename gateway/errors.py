"""One error tree: each error knows its HTTP status, OpenAI error type and how to render itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class GatewayError(Exception):
    """An error returned to the client as an OpenAI-shaped JSON body."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body(self) -> bytes:
        return orjson.dumps(self.payload())


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(BadRequest):
    code = "context_length_exceeded"


class CostLimitExceeded(BadRequest):
    """The request's predicted cost is above the gateway's per-request cap (access.guards.MaxCostGuard)."""

    code = "cost_limit_exceeded"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """A known caller asking for something its key does not allow (a client key on an admin route)."""

    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class InternalError(GatewayError):
    """A bug in the gateway: the client sees no detail, the log has the exception's type."""

    code = "internal_error"

    def __init__(self) -> None:
        super().__init__("internal error")


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """Every eligible backend is rate-limited; the client should come back after `retry_after` seconds."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, headers={"retry-after": str(seconds)})
        self.retry_after = retry_after


class BudgetExceeded(RateLimited):
    """A virtual key's daily or monthly budget has no room for the request: retry-after is the reset."""

    type = "insufficient_quota"
    code = "budget_exceeded"


class ModelNotAllowed(PermissionDenied):
    """A virtual key asked for a model outside its allowed globs."""

    code = "model_not_allowed"


class UpstreamRejected(GatewayError):
    """A backend refused the request as the client's fault (4xx); passed on with the backend's status."""

    type = "invalid_request_error"


class AllBackendsFailed(GatewayError):
    """Every attempt failed; the message lists each backend's error in the order tried."""

    status = 502
    type = "upstream_error"
    code = "all_backends_failed"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class Overloaded(ServiceUnavailable):
    """A process-wide limit is reached (connections, requests in flight, buffered bytes): come back soon."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})


class HeadersTooLarge(GatewayError):
    """The request line and headers exceed the size or count limit (refused before any route runs)."""

    status = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class StreamInterrupted(GatewayError):
    """A stream that failed after its first byte reached the client: sent as the stream's last event."""

    status = 502
    type = "upstream_error"
    code = "stream_interrupted"


class StreamFailed(StreamInterrupted):
    """A bug ended a stream after it started (the log has the exception's type)."""

    type = "server_error"
