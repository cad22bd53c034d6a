"""The ASGI entry point: the endpoints' POST routes are served straight from ASGI, the rest by FastAPI.

FastAPI's routing, dependency and middleware layers cost about as much per request as all of Routeway's
own work (docs/benchmarks.md), so the routes of gateway.endpoints skip them: the body is read from
`receive`, the answer goes out in two `send` calls. Streams still use Starlette's StreamingResponse."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from gateway.api.bodies import Bodies, BodyReader
from gateway.api.disconnect import DisconnectWatch
from gateway.api.relay import Answer, ClientGone, relay
from gateway.endpoints import ENDPOINTS, EndpointSpec
from gateway.errors import GatewayError, InternalError, MethodNotAllowed
from gateway.runtime import Runtime

log = logging.getLogger("routeway")

_JSON = (b"content-type", b"application/json")


class Front:
    """Wraps the FastAPI app (which still owns the lifespan, the other routes and their errors)."""

    def __init__(
        self, app: FastAPI, bodies: Bodies, endpoints: Mapping[str, EndpointSpec] = ENDPOINTS
    ) -> None:
        self.app = app
        self.bodies = bodies
        self.endpoints = endpoints  # the paths served here, each by its spec
        app.state.bodies = bodies  # the FastAPI routes that read a body use the same limits

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        reader = self.bodies.reader(receive, _headers(scope))
        try:
            await self._serve(scope, receive, send, endpoint, reader)
        finally:
            reader.release()  # the parsed body lived until the answer was sent

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, endpoint: EndpointSpec, reader: BodyReader
    ) -> None:
        headers = reader.headers
        gone = DisconnectWatch(scope, receive, reader.read)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(
                    f"{scope['method']} {scope['path']}: use POST", headers={"allow": "POST"}
                )
            rt: Runtime = self.app.state.runtime
            try:
                answer = await relay(rt, endpoint, headers, gone.read)
            finally:
                gone.stop()
        except asyncio.CancelledError:
            if gone.absorbed():
                return  # the client left: relay recorded a 499 and the upstream call was cancelled
            raise
        except GatewayError as err:
            await _send(send, err.status, endpoint.error_body(err), err.headers)
            return
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - a bug still gets an OpenAI-shaped 500
            log.error("unhandled error", extra={"path": scope["path"], "exc_type": type(exc).__name__})
            await _send(send, 500, endpoint.error_body(InternalError()), {})
            return
        if isinstance(answer, Answer):
            try:
                await _send(send, answer.status, answer.body, answer.headers)
            finally:
                answer.finished()
        else:
            await answer(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the server lowers them); the first of repeated names wins."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}


async def _send(send: Send, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
