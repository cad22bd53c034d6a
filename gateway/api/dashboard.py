"""The operator dashboard: GET /dashboard (a static page and its vendored assets) and GET /admin/state."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.relay import JSON, runtime
from gateway.dashboard.state import build_state, find_decision
from gateway.errors import AuthenticationFailed, NotFound, PermissionDenied
from gateway.runtime import Runtime

router = APIRouter()

# The page holds no data, so it is served to anyone; the data comes from /admin/state, which checks the key.
# Only same-origin scripts, styles and fetches: no inline code, no CDN, nothing that could leak the key.
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}


def require_admin(rt: Runtime, headers: Mapping[str, str], client: str | None) -> None:
    """With an admin key: only `Bearer <admin key>`. Without: an open gateway (no client keys) answers
    loopback callers only; anything else is told to set ROUTEWAY_ADMIN_KEY."""
    admin_key = rt.settings.admin_key
    if admin_key:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # Bytes on both sides: compare_digest refuses non-ASCII str, and a wrong key must be a 401, not a 500.
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), admin_key.encode()):
            return
        raise AuthenticationFailed("Missing or invalid admin key in the Authorization header")
    if not rt.client_keys and _loopback(client):
        return
    raise PermissionDenied(
        "The admin endpoints need an admin key: set ROUTEWAY_ADMIN_KEY and send it as a Bearer token"
    )


def _loopback(host: str | None) -> bool:
    try:
        addr = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


@cache
def _static(name: str) -> bytes:
    return (files("gateway.dashboard") / "static" / name).read_bytes()


@router.get("/dashboard")
async def page() -> Response:
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/dashboard/assets/{name}")
async def asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"No dashboard asset '{name[:100]}'", code="not_found")
    headers = {"cache-control": "public, max-age=300", "x-content-type-options": "nosniff"}
    return Response(_static(name), media_type=media_type, headers=headers)


@router.get("/admin/state")
async def state(request: Request) -> Response:
    rt = runtime(request)
    require_admin(rt, request.headers, request.client.host if request.client else None)
    return Response(orjson.dumps(build_state(rt)), media_type=JSON, headers={"cache-control": "no-store"})


@router.get("/admin/decisions/{request_id}")
async def decision(request: Request, request_id: str) -> Response:
    """One recent decision with its ranked candidates and drop reasons (the dashboard's drill-down)."""
    rt = runtime(request)
    require_admin(rt, request.headers, request.client.host if request.client else None)
    found = find_decision(rt.recent, request_id)
    if found is None:
        raise NotFound(f"No recent decision '{request_id[:128]}': only the last ones are kept")
    return Response(orjson.dumps(found), media_type=JSON, headers={"cache-control": "no-store"})
