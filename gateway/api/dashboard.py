"""The operator dashboard: GET /dashboard (a static page and its vendored assets) and GET /admin/state."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access import principal as access
from gateway.api.relay import JSON, runtime
from gateway.dashboard.state import build_state, find_decision
from gateway.errors import NotFound

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
    access.admin(rt.keys, request.headers)
    return Response(orjson.dumps(build_state(rt)), media_type=JSON, headers={"cache-control": "no-store"})


@router.get("/admin/decisions/{request_id}")
async def decision(request: Request, request_id: str) -> Response:
    """One recent decision with its ranked candidates and drop reasons (the dashboard's drill-down)."""
    rt = runtime(request)
    access.admin(rt.keys, request.headers)
    found = find_decision(rt.recent, request_id)
    if found is None:
        raise NotFound(f"No recent decision '{request_id[:128]}': only the last ones are kept")
    return Response(orjson.dumps(found), media_type=JSON, headers={"cache-control": "no-store"})
