"""The FastAPI pass-through on httpx: its default transport, or httpx-aiohttp with `--transport aiohttp`."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from bench import serve_ref

# No pool cap, like the aiohttp pass-throughs, so the pool is not what differs.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=None)


def make_client(transport: str) -> httpx.AsyncClient:
    if transport == "aiohttp":
        from httpx_aiohttp import HttpxAiohttpClient  # only in the bench venv

        client: httpx.AsyncClient = HttpxAiohttpClient(limits=LIMITS, timeout=30.0)
        return client
    return httpx.AsyncClient(limits=LIMITS, timeout=30.0)


def create_app(upstream: str, transport: str) -> FastAPI:
    client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal client
        client = make_client(transport)
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        assert client is not None
        headers = {k: v for k in serve_ref.FORWARDED if (v := request.headers.get(k))}
        req = client.build_request(
            "POST", upstream + "/v1/chat/completions", content=await request.body(), headers=headers
        )
        resp = await client.send(req, stream=True)
        ctype = resp.headers.get("content-type", "application/json")
        if ctype.startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in resp.aiter_raw():
                        yield chunk
                finally:
                    await resp.aclose()

            return StreamingResponse(relay(), status_code=resp.status_code, media_type=ctype)
        body = await resp.aread()
        await resp.aclose()
        return Response(body, status_code=resp.status_code, media_type=ctype)

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--transport", choices=("default", "aiohttp"), default="default")
    opts = parser.parse_args()
    serve_ref.run(create_app(opts.upstream, opts.transport), opts.port)
