"""The transport: a small Protocol, and its aiohttp implementation (one shared session) used in production."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from gateway.bounded import ACCEPT_ENCODING, Inflater, inflater_for
from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.providers.sse import MAX_EVENT_BYTES

MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Deadlines:
    connect_s: float
    first_byte_s: float  # until the response headers arrive
    idle_s: float  # between two body chunks
    total_s: float


class Reply(Protocol):
    """An upstream response as the router sees it: status and headers, then the body whole or as chunks."""

    status: int
    headers: Mapping[str, str]
    max_event_bytes: int

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None:
        """Drops the connection (the body will not be read to its end)."""

    def release(self) -> None:
        """Hands the connection back once the body was read whole."""


class Transport(Protocol):
    """Sends a neutral request and returns once the response headers arrived (tests swap in their own)."""

    async def send(self, req: UpstreamRequest, deadlines: Deadlines) -> Reply: ...


class AiohttpReply:
    """An upstream response: status and headers, then the body read whole or as a stream of chunks.

    Bodies are bounded: at most `max_body` bytes, compressed or not, and at most that much once
    decompressed (aiohttp's own decompression is off: it has no limit)."""

    __slots__ = ("status", "headers", "max_event_bytes", "_resp", "_idle_s", "_max_body")

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        idle_s: float,
        max_body: int = MAX_BODY_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.max_event_bytes = max_event_bytes  # for the SSE decoder of this stream
        self._resp = resp
        self._idle_s = idle_s
        self._max_body = max_body

    async def read(self) -> bytes:
        try:
            inflater = inflater_for(self._resp.headers.get("content-encoding"), self._max_body)
            length = self._resp.content_length
            if length is not None and length > self._max_body:
                raise self._too_large()
            if self._resp.content.is_eof():  # the body came with the headers: nothing to wait for
                return await self._collect(inflater)
            async with asyncio.timeout(self._idle_s):
                return await self._collect(inflater)
        except TimeoutError:
            raise ProviderError("timeout", f"no body within {self._idle_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError("protocol", f"body cut: {type(exc).__name__}") from None
        except ProviderError:
            self._resp.close()  # the rest of an oversized or corrupt body is not worth reading
            raise
        finally:
            self._resp.release()

    async def _collect(self, inflater: Inflater | None) -> bytes:
        content = self._resp.content
        parts: list[bytes] = []
        size = 0
        while chunk := await content.readany():
            size += len(chunk)
            if size > self._max_body:
                raise self._too_large()
            if inflater is None:
                parts.append(chunk)
            else:
                parts.extend(inflater.feed(chunk))
        if inflater is not None:
            inflater.finish()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yields body bytes as they arrive (decompressed); raises ProviderError on a stall, a cut or a body
        over the limit."""
        inflater = inflater_for(self._resp.headers.get("content-encoding"), self._max_body)
        content = self._resp.content
        size = 0
        while True:
            try:
                async with asyncio.timeout(self._idle_s):
                    chunk = await content.readany()
            except TimeoutError:
                raise ProviderError("timeout", f"stream stalled for {self._idle_s:g}s") from None
            except aiohttp.ClientError as exc:
                raise ProviderError("protocol", f"stream cut: {type(exc).__name__}") from None
            if not chunk:
                if inflater is not None:
                    inflater.finish()
                return
            size += len(chunk)
            if size > self._max_body:
                raise self._too_large()
            if inflater is None:
                yield chunk
            else:
                for piece in inflater.feed(chunk):
                    yield piece

    def _too_large(self) -> ProviderError:
        return ProviderError("protocol", f"the upstream body exceeds the limit of {self._max_body} bytes")

    def close(self) -> None:
        """Drops the connection (used when the client went away or the stream is abandoned)."""
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


class AiohttpTransport:
    """Owns the pooled aiohttp ClientSession; nothing else on the hot path speaks HTTP upstream."""

    def __init__(
        self,
        *,
        pool_size: int = 512,
        per_host: int = 0,
        max_body: int = MAX_BODY_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self._pool_size = pool_size
        self._per_host = per_host
        self._max_body = max_body
        self._max_event_bytes = max_event_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=self._per_host,
            ttl_dns_cache=300,
            enable_cleanup_closed=True,
        )
        # No cookies, no env proxies, and we never follow redirects: upstream URLs come only from config.
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,  # aiohttp inflates without a limit; Reply does it bounded
            headers={"accept-encoding": ACCEPT_ENCODING},  # only what Reply can undo (not br or zstd)
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, req: UpstreamRequest, deadlines: Deadlines) -> AiohttpReply:
        """Sends and waits for the response headers; connection failures become ProviderError."""
        if self._session is None:
            raise RuntimeError("transport not started")
        timeout = aiohttp.ClientTimeout(total=deadlines.total_s, sock_connect=deadlines.connect_s)
        sending = self._session.request(
            req.method, req.url, data=req.body, headers=req.headers, timeout=timeout, allow_redirects=False
        )
        try:
            if deadlines.first_byte_s < deadlines.total_s:
                async with asyncio.timeout(deadlines.first_byte_s):
                    resp = await sending
            else:
                resp = await sending  # aiohttp's total timeout is the first-byte deadline too
        except TimeoutError:
            raise ProviderError("timeout", f"no response within {deadlines.first_byte_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise ProviderError(
                "connect", f"connection failed: {exc.strerror or type(exc).__name__}"
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise ProviderError("connect", f"connection lost before response: {type(exc).__name__}") from None
        except aiohttp.ClientError as exc:
            raise ProviderError("protocol", f"bad response: {type(exc).__name__}") from None
        return AiohttpReply(resp, deadlines.idle_s, self._max_body, self._max_event_bytes)
