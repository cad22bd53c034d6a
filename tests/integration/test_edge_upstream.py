"""Hostile upstreams over real sockets: keys echoed at every cut, gzip bombs, bad chunks, deep JSON."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from gateway.observability.logging import JsonFormatter
from gateway.providers.base import StreamEvent
from gateway.providers.openai_compat import ChunkTranslator
from tests.integration.conftest import GatewayThread
from tests.integration.test_observability import OtlpReceiver

EDGE_KEY_ENV = "ROUTEWAY_TEST_EDGE_KEY"
KEY = "Zq7Ux3Wm9Kp2Lr5Tn8Vb4Yc6Hd1Jf0G"  # no known key shape: only the exact-secret redaction can catch it
FORMS = {
    "plain": KEY,
    "upper": KEY.upper(),
    "base64": base64.b64encode(KEY.encode()).decode(),
    "basic": base64.b64encode(f"apikey:{KEY}".encode()).decode(),
}
CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "up-h",
    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
}
MSG = [{"role": "user", "content": "hello"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    """A real aiohttp upstream in its own thread; each test says how it misbehaves (`behave`)."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        assert self.handler is not None
        return await self.handler(request)

    def behave(self, handler: Handler) -> None:
        self.handler = handler

    def __enter__(self) -> Hostile:
        self.thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def policy(url: str) -> dict[str, Any]:
    return {
        "backends": {
            "hostile": {
                "provider": "openai",
                "base_url": url + "/v1",
                "api_key_env": EDGE_KEY_ENV,
                "models": {"h": {"id": "up-h"}},
            }
        },
        "routes": [
            {
                "name": "default",
                "match": {"model": "*"},
                "max_attempts": 1,
                "timeouts": {"first_token_s": 5, "idle_s": 5, "total_s": 20, "connect_s": 1},
                "probe_interval_s": 0,
            }
        ],
        # A failing upstream must not open the circuit: each request of a test has to reach it.
        "resilience": {"breaker": {"consecutive_failures": 10**6, "min_requests": 10**6}},
    }


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with Hostile() as h:
        yield h


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def gw(
    hostile: Hostile, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv(EDGE_KEY_ENV, KEY)
    with GatewayThread(
        policy(f"http://127.0.0.1:{hostile.port}"),
        tmp_path_factory.mktemp("edge"),
        reload_policies=False,
        otel_exporter_otlp_endpoint=receiver.url,
        otel_bsp_schedule_delay_ms=20,
    ) as gateway:
        yield gateway
    mp.undo()


HTTP = httpx.Client(timeout=30)  # one client: building one per request costs more than the request


def chat(gw: GatewayThread, rid: str = "", **extra: Any) -> httpx.Response:
    body = {"model": "h", "messages": MSG, **extra}
    headers = {"x-request-id": rid} if rid else {}
    return HTTP.post(gw.base_url + "/chat/completions", json=body, headers=headers)


def leaked(text: str | bytes, secret: str) -> str | None:
    """The first 8-character piece of `secret` found in `text`, if any."""
    data = text.encode() if isinstance(text, str) else text
    for i in range(len(secret) - 7):
        if secret[i : i + 8].encode() in data:
            return secret[i : i + 8]
    return None


def secret_parts(form: str) -> str:
    """The part of an echoed form that the key alone determines (`apikey:` shapes the first base64 chars)."""
    return FORMS[form][12:] if form == "basic" else FORMS[form]


def sse(*events: bytes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(0.01)  # a later read: after the first event there is no failover
            await resp.write(event)
        return resp

    return handler


def json_reply(status: int, doc: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")

    return handler


def text_reply(status: int, text: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text)

    return handler


def event(doc: Any) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


@pytest.mark.parametrize("form", list(FORMS))
def test_echoed_key_never_leaks_at_any_cut(
    form: str, gw: GatewayThread, hostile: Hostile, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="routeway")
    echoed = FORMS[form]
    bodies: list[str] = []
    # The old cuts: 500 characters of a JSON error message, 200 of a text body, 300 of a stream error event.
    for cut, make in (
        (500, lambda off: json_reply(400, {"error": {"message": "x" * off + echoed + " <- your key"}})),
        (200, lambda off: text_reply(400, "y" * off + echoed + " <- your key")),
        (300, lambda off: sse(event(CHUNK), event({"error": {"message": "z" * off + echoed}}))),
    ):
        for off in range(cut - len(echoed) - 1, cut + 2):  # the key straddles the cut, or just misses it
            hostile.behave(make(off))
            r = chat(gw, f"echo-{form}-{cut}-{off}", stream=cut == 300)
            # A stream's error comes after its first event (200, then an error event) or, when a loaded
            # machine delivers both events in one read, before the first byte (failover, then a 502):
            # either way the error text is the one that must not leak.
            assert r.status_code in ((200, 502) if cut == 300 else (400,)), r.text
            assert '"error"' in r.text
            bodies.append(r.text)
    for text in bodies:
        assert leaked(text, secret_parts(form)) is None, text
    receiver.wait_server_span(f"echo-{form}-300-301")  # the last request's spans were exported
    assert leaked(receiver.all_bytes(), secret_parts(form)) is None
    formatter = JsonFormatter()
    lines = [formatter.format(rec) for rec in caplog.records if rec.name.startswith("routeway")]
    assert lines
    for line in lines:
        assert leaked(line, secret_parts(form)) is None, line


def zero_bomb(prefix: bytes, gigabytes: int) -> tuple[bytes, bytes, int]:
    """A gzip stream that inflates to `prefix` and then `gigabytes` GiB of zeros, built block by block
    (after a full flush, the compressor emits the same bytes for the same 1 MiB of zeros)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return head, block, gigabytes * 1024


def bomb(prefix: bytes, content_type: str, gigabytes: int = 10) -> Handler:
    head, block, count = zero_bomb(prefix, gigabytes)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": content_type, "content-encoding": "gzip"})
        resp.content_length = len(head) + len(block) * count
        await resp.prepare(request)
        try:
            await resp.write(head)
            batch = block * 256
            for _ in range(count // 256):
                await resp.write(batch)
        except (ConnectionError, RuntimeError):
            pass  # the gateway hung up, as it should
        return resp

    return handler


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def reset_peak_rss() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from the current RSS
    return peak_rss_kib()


def test_gzip_bomb_is_a_fast_502_with_bounded_memory(gw: GatewayThread, hostile: Hostile) -> None:
    hostile.behave(bomb(b"", "application/json"))
    before = reset_peak_rss()
    started = time.monotonic()
    r = chat(gw)
    took = time.monotonic() - started
    grown_mib = (peak_rss_kib() - before) / 1024
    assert r.status_code == 502 and r.json()["error"]["code"] == "all_backends_failed", r.text
    assert "size limit" in r.json()["error"]["message"]
    assert took < 5, took  # aiohttp's unbounded inflate took 34 s on 10 GB
    assert grown_mib < 200, grown_mib  # ...and 6.2 GB; the cap is 64 MiB of output (measured: +65 MiB)


def test_gzip_bomb_in_a_stream_ends_with_an_error_event(gw: GatewayThread, hostile: Hostile) -> None:
    hostile.behave(bomb(event(CHUNK), "text/event-stream"))
    before = reset_peak_rss()
    started = time.monotonic()
    r = chat(gw, stream=True)
    assert time.monotonic() - started < 5
    assert (peak_rss_kib() - before) / 1024 < 200
    assert r.status_code == 200
    assert r.text.startswith("data: ") and '"content":"hi"' in r.text
    assert "exceeds" in r.text and '"error"' in r.text and "[DONE]" not in r.text


def test_unknown_content_encoding_is_a_502(gw: GatewayThread, hostile: Hostile) -> None:
    async def brotli(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x8b\x02\x80hello\x03", headers={"content-encoding": "br"})

    hostile.behave(brotli)
    r = chat(gw)
    assert r.status_code == 502 and "content-encoding" in r.json()["error"]["message"]


def test_gzip_body_is_inflated(gw: GatewayThread, hostile: Hostile) -> None:
    doc = {**CHUNK, "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "ok"}}]}

    async def gzipped(request: web.Request) -> web.StreamResponse:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        body = c.compress(orjson.dumps(doc)) + c.flush()
        return web.Response(
            body=body, headers={"content-encoding": "gzip", "content-type": "application/json"}
        )

    hostile.behave(gzipped)
    r = chat(gw)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"


def test_sse_line_that_never_ends_is_cut_with_an_error_event(gw: GatewayThread, hostile: Hostile) -> None:
    hostile.behave(sse(event(CHUNK), b"data: " + b"x" * (3 << 20)))
    r = chat(gw, stream=True)
    assert r.status_code == 200 and '"content":"hi"' in r.text
    assert "exceeds 1048576 bytes" in r.text and "[DONE]" not in r.text


def test_non_object_choice_mid_stream_is_an_error_event(gw: GatewayThread, hostile: Hostile) -> None:
    hostile.behave(sse(event(CHUNK), event({**CHUNK, "choices": [1]}), b"data: [DONE]\n\n"))
    with httpx.stream("POST", gw.base_url + "/chat/completions", json={"model": "h", "messages": MSG,
                      "stream": True}, timeout=10) as r:  # fmt: skip
        text = r.read().decode()
    assert r.status_code == 200
    events = [orjson.loads(e[6:]) for e in text.strip().split("\n\n")]
    assert events[0]["choices"][0]["delta"]["content"] == "hi"
    assert events[-1]["error"]["code"] == "stream_interrupted"
    assert "'choices' is not an array of objects" in events[-1]["error"]["message"]


def test_non_object_choice_in_first_event_is_a_502(gw: GatewayThread, hostile: Hostile) -> None:
    hostile.behave(sse(event({**CHUNK, "choices": [1]})))
    r = chat(gw, stream=True)
    assert r.status_code == 502 and "choices" in r.json()["error"]["message"]


def test_a_bug_mid_stream_still_ends_with_an_error_event(
    gw: GatewayThread, hostile: Hostile, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="routeway")
    real = ChunkTranslator.translate

    def second_call_fails(self: ChunkTranslator, ev: StreamEvent) -> list[bytes]:
        if b'"second"' in ev.data:
            raise RuntimeError("a bug " + KEY)  # its text must not reach the client or the log
        return real(self, ev)

    monkeypatch.setattr(ChunkTranslator, "translate", second_call_fails)
    hostile.behave(sse(event(CHUNK), event({**CHUNK, "id": "second"}), b"data: [DONE]\n\n"))
    r = chat(gw, stream=True)
    assert r.status_code == 200 and '"content":"hi"' in r.text
    assert '"code":"stream_interrupted"' in r.text and "[DONE]" not in r.text and KEY not in r.text
    failed = [rec for rec in caplog.records if rec.getMessage() == "stream failed after it started"]
    assert failed and failed[0].exc_type == "RuntimeError"
    assert KEY not in caplog.text


def test_deep_upstream_response_is_a_502(gw: GatewayThread, hostile: Hostile) -> None:
    body = b'{"choices":[{"message":{"content":"x"}}],"extra":' + b"[" * 300 + b"]" * 300 + b"}"

    async def deep(request: web.Request) -> web.StreamResponse:  # orjson itself cannot write this
        return web.Response(body=body, content_type="application/json")

    hostile.behave(deep)
    r = chat(gw)
    assert r.status_code == 502 and "nested too deeply" in r.json()["error"]["message"]


def nested_body(depth: int) -> bytes:
    head = orjson.dumps({"model": "chat", "messages": MSG, "max_tokens": 2})[:-1]
    return head + b',"x_passthrough":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [300, 1000, 1100])
def test_deeply_nested_request_is_a_400(gateway: GatewayThread, depth: int) -> None:
    r = httpx.post(gateway.base_url + "/chat/completions", content=nested_body(depth), timeout=10,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    if depth < 1024:
        assert "128" in r.json()["error"]["message"]


def test_nesting_under_the_limit_is_relayed(gateway: GatewayThread) -> None:
    r = httpx.post(gateway.base_url + "/chat/completions", content=nested_body(100), timeout=10,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text


def test_huge_model_name_is_a_short_access_log_field(
    gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routeway")
    r = httpx.post(gateway.base_url + "/chat/completions", timeout=30,
                   json={"model": "m" * (10 << 20), "messages": MSG})  # fmt: skip
    assert r.status_code == 404 and len(r.content) < 1000
    lines = [rec for rec in caplog.records if rec.getMessage() == "request" and rec.status == 404]
    assert lines and all(len(rec.model) < 300 for rec in lines)
