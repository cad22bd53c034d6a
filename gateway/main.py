"""create_app(): the ASGI app (gateway.api.front before FastAPI); the lifespan builds the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api import admin, dashboard, health, messages, metrics, models, responses, tenancy
from gateway.api.bodies import Bodies
from gateway.api.front import Front
from gateway.errors import GatewayError, InternalError
from gateway.policy.loader import LoadedPolicy, load_policy
from gateway.policy.watch import PolicyWatcher
from gateway.runtime import Runtime
from gateway.settings import Settings

log = logging.getLogger("routeway")

# The collector's youngest generation runs when the tracked objects alive since its last run pass this
# count. Requests free almost all of theirs by reference counting, so what it sees is the objects of the
# requests in flight: at c=32 they passed Python's default of 700 about once every ten requests, and each
# run walked them all and moved them to the next generation (20-60 µs per request, 5-10% of the CPU, by
# gc.callbacks under wrk). Above what the requests in flight hold, it runs only on real garbage.
GC_YOUNG_THRESHOLD = 10_000


def create_app(settings: Settings | None = None, loaded: LoadedPolicy | None = None) -> Front:
    """Builds the app; loads the policy now so a bad one fails the start, not the first request."""
    settings = settings or Settings()
    loaded = loaded or load_policy(settings.config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.create(settings, loaded)
        await rt.transport.start()
        await rt.start()
        if rt.store is not None:
            await rt.store.start()
        app.state.runtime = rt
        watcher: asyncio.Task[None] | None = None
        if settings.reload_policies:
            # `current`: the catch-up load at start finds the policy unchanged instead of "reloading" it.
            watching = PolicyWatcher(settings.config, rt.swap, log, current=loaded)
            watcher = asyncio.create_task(watching.run())
        log.info(
            "routeway ready", extra={"policy": loaded.fingerprint, "backends": len(loaded.policy.backends)}
        )
        # ~100k long-lived objects exist after start-up (FastAPI, pydantic, OTel): moved out of the
        # collector's reach, full collections no longer pause for tens of ms (bench: p99 ~20x lower).
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await rt.close()
            await rt.transport.close()
            if rt.store is not None:
                await rt.store.close()
            if rt.tracing is not None:
                await asyncio.to_thread(rt.tracing.shutdown)  # flushes the last spans
            if rt.metrics is not None:
                rt.metrics.write_shared()  # the last values, for the workers that stay (no-op alone)
            if rt.access_log is not None:
                rt.access_log.flush()  # hands the last batch of lines to the log thread
            if rt.request_log is not None:
                rt.request_log.close()

    app = FastAPI(title="Routeway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    for module in (models, responses, messages, health, admin, metrics, dashboard, tenancy):
        app.include_router(module.router)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    return Front(app, Bodies(settings.max_body_bytes, settings.max_buffered_bytes))


def app_from_env() -> Front:
    """Factory for `uvicorn --factory` workers: everything comes from ROUTEWAY_* settings."""
    from gateway.exposure import enforce
    from gateway.observability.logging import setup_logging

    settings = Settings()
    setup_logging(settings.log_level)
    enforce(settings, log)  # a worker started by hand gets the same exposure rule as `routeway serve`
    return create_app(settings)


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _json(exc.status, exc.body(), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
    msg = f"{request.method} {request.url.path}: {exc.detail}"
    body = {"error": {"message": msg, "type": "invalid_request_error", "param": None, "code": kind}}
    return _json(exc.status_code, orjson.dumps(body))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", extra={"path": request.url.path, "exc_type": type(exc).__name__})
    return _json(500, InternalError().body())
