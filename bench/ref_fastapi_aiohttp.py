"""The reference: a minimal FastAPI route forwarding to the upstream with one shared aiohttp session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from bench import serve_ref


def create_app(upstream: str) -> FastAPI:
    session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal session
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await session.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        assert session is not None
        headers = {k: v for k in serve_ref.FORWARDED if (v := request.headers.get(k))}
        resp = await session.post(
            upstream + "/v1/chat/completions", data=await request.body(), headers=headers
        )
        ctype = resp.headers.get("content-type", "application/json")
        if ctype.startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()

            return StreamingResponse(relay(), status_code=resp.status, media_type=ctype)
        body = await resp.read()
        resp.release()
        return Response(body, status_code=resp.status, media_type=ctype)

    return app


if __name__ == "__main__":
    opts = serve_ref.args(__doc__)
    serve_ref.run(create_app(opts.upstream), opts.port)
