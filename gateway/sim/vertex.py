"""Vertex AI's side of a simulated provider: its URL layout, its OAuth token endpoint (the JWT bearer grant a
service account makes), the Bearer tokens it issued, and google.rpc.Status error bodies."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.sim.faults import ApiError, error_of, json_response
from gateway.sim.profiles import Profile, VertexProfile

CHAT_PATH = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}/chat/completions"
TOKEN_PATH = "/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the audience google-auth always signs for
MAX_TOKENS = 10_000  # tokens remembered; the oldest go first
MAX_ASSERTION_BYTES = 16 * 1024

# google.rpc.Code by HTTP status, as Google's APIs map them.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


@dataclass
class VertexState:
    """The tokens this server issued (token -> monotonic expiry) and the service accounts it trusts."""

    profile: VertexProfile
    ttl_s: float
    trusted: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    issued: int = 0
    rejected_grants: int = 0

    @classmethod
    def from_profile(cls, profile: VertexProfile) -> VertexState:
        keys = {email: _public_key(pem) for email, pem in profile.trusted_keys}
        return cls(profile, profile.token_ttl_s, keys)

    def issue(self, now: float) -> tuple[str, int]:
        for token in [t for t, until in self.tokens.items() if until <= now]:
            del self.tokens[token]
        while len(self.tokens) >= MAX_TOKENS:
            del self.tokens[next(iter(self.tokens))]
        token = "ya29.sim-" + secrets.token_urlsafe(24)
        ttl = max(1, round(self.ttl_s))
        self.tokens[token] = now + ttl
        self.issued += 1
        return token, ttl

    def valid(self, token: str, now: float) -> bool:
        until = self.tokens.get(token)
        return until is not None and until > now

    def to_json(self, now: float) -> dict[str, Any]:
        active = sum(1 for until in self.tokens.values() if until > now)
        return {
            "issued": self.issued,
            "active": active,
            "ttl_s": self.ttl_s,
            "rejected_grants": self.rejected_grants,
        }


VERTEX: web.AppKey[VertexState] = web.AppKey("sim_vertex", VertexState)
GOOGLE = web.RequestKey("sim_google_errors", bool)  # set on Vertex routes: errors in Google's shape


def add_routes(app: web.Application, profile: Profile) -> None:
    """The token endpoint and the sim's controls of it; the chat route is the server's own handler."""
    assert profile.vertex is not None
    app[VERTEX] = VertexState.from_profile(profile.vertex)
    app.router.add_post(TOKEN_PATH, _token)
    app.router.add_get("/sim/tokens", _get_tokens)
    app.router.add_post("/sim/tokens", _post_tokens)
    app.router.add_post("/sim/service-account", _mint_service_account)


async def authorise(request: web.Request, profile: Profile) -> None:
    """Vertex's checks on an inference call: a Bearer token this server issued and still valid, then a
    project, location and endpoint it serves."""
    request[GOOGLE] = True
    state = request.app[VERTEX]
    given = request.headers.get("Authorization", "")
    token = given[7:] if given[:7].lower() == "bearer " else ""
    if not state.valid(token, time.monotonic()):
        raise ApiError(401, UNAUTHENTICATED)
    where = request.match_info
    endpoint = where["endpoint"]
    served = (state.profile.project, state.profile.location)
    if (where["project"], where["location"]) != served or not (endpoint == "openapi" or endpoint.isdigit()):
        name = f"projects/{where['project']}/locations/{where['location']}/endpoints/{endpoint}"
        raise ApiError(404, f"Endpoint `{name}` not found.")


def google_errors(profile: Profile) -> Callable[[web.StreamResponse], web.StreamResponse]:
    """The route's error wire: an OpenAI-shaped error (the simulator's faults, limits and checks) as
    Vertex renders it; other bodies (a fixed one in Google's shape, HTML) pass as they are."""

    def wire(response: web.StreamResponse) -> web.StreamResponse:
        found = error_of(response)
        error = found[0] if found is not None else None
        if found is None or error is None or "status" in error or not isinstance(error.get("message"), str):
            return response
        code = error.get("code")
        return error_response(response.status, error["message"], code, found[1], profile)

    return wire


def error_response(
    status: int, message: str, code: object, headers: Mapping[str, str], profile: Profile
) -> web.Response:
    """An error as Vertex renders it: google.rpc.Status, a 429's wait in RetryInfo."""
    err: dict[str, Any] = {
        "code": status,
        "message": _message(status, message, code, profile),
        "status": _STATUS_NAMES.get(status, "UNKNOWN" if status < 500 else "INTERNAL"),
    }
    wait = _wait_s({k.lower(): v for k, v in headers.items()})
    if status == 429 and wait is not None:
        delay = f"{wait:.3f}".rstrip("0").rstrip(".") + "s"
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
    return json_response({"error": err}, status)


def _message(status: int, message: str, code: object, profile: Profile) -> str:
    if code == "context_length_exceeded":
        return (
            f"The input token count exceeds the maximum number of tokens allowed ({profile.context_window})."
        )
    if code == "model_not_found" and profile.vertex is not None:
        model = message.split("`")[1] if message.count("`") >= 2 else "model"
        publisher, _, name = model.rpartition("/")
        where = f"projects/{profile.vertex.project}/locations/{profile.vertex.location}"
        return (
            f"Publisher Model `{where}/publishers/{publisher or 'google'}/models/{name}` was not found or "
            "your project does not have access to it."
        )
    if status == 429:
        return "Resource exhausted. Please try again later."
    return message


def _wait_s(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers[name]) / scale
        except (KeyError, ValueError):
            continue
    return None


async def _token(request: web.Request) -> web.Response:
    state = request.app[VERTEX]
    if (request.content_length or 0) > MAX_ASSERTION_BYTES:
        return _oauth_error(state, "invalid_request", "The request is too large.")
    form = await request.post()
    assertion = form.get("assertion")
    if form.get("grant_type") != JWT_BEARER or not isinstance(assertion, str):
        return _oauth_error(state, "unsupported_grant_type", "Invalid grant_type or no assertion.")
    audiences = {GOOGLE_TOKEN_URI, f"{request.scheme}://{request.host}{TOKEN_PATH}"}
    problem = check_assertion(assertion, state.trusted, audiences, time.time())
    if problem is not None:
        return _oauth_error(state, "invalid_grant", problem)
    token, ttl = state.issue(time.monotonic())
    return json_response({"access_token": token, "expires_in": ttl, "token_type": "Bearer"})


def _oauth_error(state: VertexState, error: str, description: str) -> web.Response:
    state.rejected_grants += 1
    return json_response({"error": error, "error_description": description}, 400)


def check_assertion(
    jwt: str, trusted: Mapping[str, rsa.RSAPublicKey], audiences: set[str], now: float
) -> str | None:
    """What is wrong with a service account's signed JWT (None: nothing). With trusted keys, the issuer must
    be one of them and the RS256 signature must verify; without any, the shape and issuer are checked."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return "Invalid JWT: not three segments."
    header, claims, signature = (_b64_json(parts[0]), _b64_json(parts[1]), _b64(parts[2]))
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        return "Invalid JWT: header or claims malformed."
    iss, iat, exp = claims.get("iss"), claims.get("iat"), claims.get("exp")
    if not isinstance(iss, str) or not iss.endswith(".gserviceaccount.com") or "@" not in iss:
        return "Invalid JWT: the issuer is not a service account."
    if claims.get("aud") not in audiences:
        return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
    if not isinstance(iat, int) or not isinstance(exp, int) or not iat - 300 <= now < exp or exp - iat > 3600:
        return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
    if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
        return "Invalid JWT: no scope the simulator serves."
    if not trusted:
        return None
    key = trusted.get(iss)
    if key is None or signature is None:
        return "Invalid grant: account not found"
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "Invalid JWT Signature."
    return None


def _b64(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def _b64_json(segment: str) -> Any:
    raw = _b64(segment)
    try:
        return orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None


def _public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a trusted key must be an RSA public key")
    return key


async def _get_tokens(request: web.Request) -> web.Response:
    return json_response(request.app[VERTEX].to_json(time.monotonic()))


async def _post_tokens(request: web.Request) -> web.Response:
    """`{"ttl_s": 2}` changes the lifetime of tokens issued from now on; `{"revoke": true}` forgets every
    token issued (the next call with one gets 401 UNAUTHENTICATED)."""
    state = request.app[VERTEX]
    try:
        changes = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        changes = None
    ttl = changes.get("ttl_s") if isinstance(changes, dict) else None
    valid_ttl = ttl is None or (
        isinstance(ttl, int | float) and not isinstance(ttl, bool) and 1 <= ttl <= 86400
    )
    if not isinstance(changes, dict) or set(changes) - {"ttl_s", "revoke"} or not valid_ttl:
        return ApiError(
            400, 'expected {"ttl_s": 1..86400, "revoke": true|false}', code="invalid_knob"
        ).response()
    if ttl is not None and math.isfinite(ttl):
        state.ttl_s = float(ttl)
    if changes.get("revoke") is True:
        state.tokens.clear()
    return json_response(state.to_json(time.monotonic()))


async def _mint_service_account(request: web.Request) -> web.Response:
    """A service account for the simulator only, its token_uri this server as the caller reached it: what
    `routeway demo` hands its gateway."""
    token_uri = f"{request.scheme}://{request.host}{TOKEN_PATH}"
    return json_response(mint_service_account(request.app[VERTEX], token_uri))


def mint_service_account(state: VertexState, token_uri: str) -> dict[str, str]:
    """A new service-account key file whose RSA key is generated here and trusted from now on."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"routeway-sim-{secrets.token_hex(3)}@{state.profile.project}.iam.gserviceaccount.com"
    state.trusted[email] = key.public_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": state.profile.project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
