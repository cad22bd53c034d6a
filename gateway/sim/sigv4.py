"""The simulator's SigV4 check: the signature recomputed with botocore from what the server received
(method, raw path and query, the signed headers as sent, the body bytes), compared in constant time."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_SKEW_S = 300  # AWS refuses a request signed more than 5 minutes away from its clock
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})\Z"
)


class SignatureError(Exception):
    """Why a request does not verify, with the AWS error type it answers with (all 403)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Mapping[str, str],
    *,
    service: str,
    now: datetime | None = None,
) -> None:
    """Raises SignatureError unless the request carries a valid SigV4 signature by one of `keys`
    (access key id -> secret) for `service`. `url` is scheme, the Host header and the raw path as sent."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.match(lower.get("authorization", ""))
    if match is None:
        raise SignatureError(
            "MissingAuthenticationTokenException", "Missing or malformed Authorization header."
        )
    parts = match["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignatureException", "Credential scope is malformed.")
    key_id, day, region, signed_service, _ = parts
    secret = keys.get(key_id)
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if signed_service != service:
        raise SignatureError(
            "InvalidSignatureException", f"Credential should be scoped to service '{service}'."
        )
    stamp = lower.get("x-amz-date", "")
    _check_time(stamp, day, now or datetime.now(UTC))
    signed = match["signed"].split(";")
    if "host" not in signed or any(name not in lower for name in signed):
        raise SignatureError("InvalidSignatureException", "A signed header is missing from the request.")
    request = AWSRequest(method=method, url=url, data=body, headers={name: lower[name] for name in signed})
    signer = SigV4Auth(Credentials(key_id, secret, lower.get("x-amz-security-token")), service, region)
    request.context["timestamp"] = stamp
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["sig"]):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )


def _check_time(stamp: str, day: str, now: datetime) -> None:
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed.") from None
    if not stamp.startswith(day):
        raise SignatureError("InvalidSignatureException", "Credential date does not match X-Amz-Date.")
    if abs((now - signed_at).total_seconds()) > MAX_SKEW_S:
        raise SignatureError(
            "InvalidSignatureException", "Signature expired: the request time is too skewed."
        )
