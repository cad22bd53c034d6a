"""Virtual keys over HTTP: `/admin/keys` (admin key only), `/admin/usage`, and `/v1/usage` for a key's own."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access import keyadmin
from gateway.access import principal as access
from gateway.access.ledger import LedgerRangeError, UsageRow, days
from gateway.access.tenancy import Tenancy
from gateway.api.bodies import read_json
from gateway.api.relay import JSON, authenticate, runtime
from gateway.errors import BadRequest, PermissionDenied, ServiceUnavailable
from gateway.runtime import Runtime

router = APIRouter()


def _tenancy(rt: Runtime) -> Tenancy:
    if rt.tenancy is None:
        raise ServiceUnavailable("Virtual keys are not set up in this process")
    return rt.tenancy


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


def _admin(request: Request) -> Tenancy:
    rt = runtime(request)
    access.admin(rt.keys, request.headers)
    return _tenancy(rt)


@router.post("/admin/keys")
async def create_key(request: Request) -> Response:
    t = _admin(request)
    spec = keyadmin.parse_spec(await read_json(request))
    key, secret = await keyadmin.create(t.store, spec)
    return _json({**key.public(), "key": secret}, 201)


@router.get("/admin/keys")
async def list_keys(request: Request) -> Response:
    t = _admin(request)
    found = await t.store.all()
    return _json({"object": "list", "data": [k.public() for k in found]})


@router.get("/admin/keys/{key_id}")
async def show_key(request: Request, key_id: str) -> Response:
    t = _admin(request)
    return _json((await keyadmin.get(t.store, key_id)).public())


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    t = _admin(request)
    key = await keyadmin.revoke(t.store, key_id)
    t.identity.forget(key.hash)  # here at once; other replicas within their cache's bound
    return _json(key.public())


@router.post("/admin/keys/{key_id}/rotate")
async def rotate_key(request: Request, key_id: str) -> Response:
    t = _admin(request)
    key, secret, old_hash = await keyadmin.rotate(t.store, key_id)
    t.identity.forget(old_hash)
    return _json({**key.public(), "key": secret})


def _range(request: Request) -> list[str]:
    q = request.query_params
    try:
        return days(q.get("from"), q.get("to"))
    except LedgerRangeError as err:
        raise BadRequest(str(err), param="from") from None


def _usage(rows: list[UsageRow]) -> dict[str, Any]:
    total = {
        "requests": sum(r.requests for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost_usd": round(sum(r.cost_usd for r in rows), 9),
    }
    return {"object": "list", "data": [r.json() for r in rows], "total": total}


@router.get("/v1/usage")
async def own_usage(request: Request) -> Response:
    """The calling virtual key's own ledger rows (`from`/`to`: ISO dates, default the last 30 days)."""
    rt = runtime(request)
    principal = await authenticate(rt, request.headers)
    if principal.key is None:
        raise PermissionDenied("Usage is kept per virtual key: call this with a virtual key (rwk-...)")
    span = _range(request)
    return _json(_usage(await _tenancy(rt).usage.rows([principal.key], span)))


@router.get("/admin/usage")
async def all_usage(request: Request) -> Response:
    """Every key's ledger rows, optionally one team's (`team`, `from`, `to`)."""
    t = _admin(request)
    span = _range(request)
    team = request.query_params.get("team")
    found = [k for k in await t.store.all() if team is None or k.team == team]
    return _json(_usage(await t.usage.rows(found, span)))
