"""The endpoint and stream seams, end to end on the in-memory transport: a test-only endpoint (its own body,
answer, stream events and error body) and a test-only upstream framing (named SSE events, no [DONE]) go
through the real front, relay and router unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from gateway.api.bodies import Bodies
from gateway.api.front import Front
from gateway.api.relay import Answer, RelayStream, relay
from gateway.endpoints import CHAT, ENDPOINTS
from gateway.endpoints.spec import EndpointSpec
from gateway.errors import AllBackendsFailed
from gateway.providers.base import UpstreamRequest
from gateway.runtime import Runtime
from tests.mock_transport import CUT, MockReply, backend_of, chat_doc, chunk_doc, sse
from tests.unit.access.test_guards import CLIENT, consume, record, runtime
from tests.unit.named_stream import SHOUT, NamedAdapter, named
from tests.unit.routing.router_kit import Kit, body, catalog

HEADERS = {"authorization": f"Bearer {CLIENT}"}
NAMED_STEPS = [
    named("start", {}),
    named("ping", {}),
    named("delta", {"text": "he|llo"}),
    named("delta", {"text": " you"}),
    named("stop", {"in": 5, "out": 3}),
]


def kit_for(handler: Any, backends: str = "a", adapter: NamedAdapter | None = None) -> tuple[Kit, Runtime]:
    kit = Kit(handler, catalog(backends))
    if adapter is not None:
        kit.catalog.adapters["openai"] = adapter
    return kit, runtime(kit, [])


async def call(rt: Runtime, spec: EndpointSpec, doc: dict[str, Any]) -> Answer | RelayStream:
    raw = orjson.dumps(doc)

    async def read() -> bytes:
        return raw

    answer = await relay(rt, spec, HEADERS, read)
    if isinstance(answer, Answer):
        answer.finished()  # as the front does once the answer is written
    return answer


def events(data: bytes) -> list[tuple[str | None, Any]]:
    """(name, JSON or raw text) of each SSE event a client received."""
    out: list[tuple[str | None, Any]] = []
    for block in data.split(b"\n\n"):
        if not block:
            continue
        name, payload = None, b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                payload = line[6:]
        out.append((name, payload.decode() if payload == b"[DONE]" else orjson.loads(payload)))
    return out


def outcomes(kit: Kit) -> list[tuple[str, str]]:
    return [(a.target.backend, a.outcome) for a in record(kit).attempts]


def stream_of(rt: Runtime, spec: EndpointSpec, doc: dict[str, Any]) -> bytes:
    async def run() -> bytes:
        answer = await call(rt, spec, doc)
        assert isinstance(answer, RelayStream)
        return b"".join(await consume(answer))

    return asyncio.run(run())


def test_every_openai_route_is_in_the_table_once() -> None:
    openai_routes = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    assert sorted(ENDPOINTS) == sorted([*openai_routes, "/v1/responses", "/v1/messages"])
    assert {s.operation for s in ENDPOINTS.values()} == {"chat", "completions", "embeddings"}
    assert ENDPOINTS["/v1/embeddings"].stream_encoder is None  # never streams, whatever the body says


# --- a new endpoint is one spec --------------------------------------------------------------------------


def test_a_test_only_endpoint_translates_the_request_and_the_answer() -> None:
    kit, rt = kit_for(lambda req: MockReply(200, chat_doc("loud", usage=(4, 1))))
    answer = asyncio.run(call(rt, SHOUT, {"model": "m", "text": "say it"}))
    assert isinstance(answer, Answer)
    assert orjson.loads(answer.body) == {"shout": "LOUD", "asked": "say it"}
    [sent] = kit.transport.requests
    assert sent.url == "http://a/chat/completions"  # routed as the canonical chat operation
    assert orjson.loads(sent.body)["messages"] == [{"role": "user", "content": "say it"}]
    req = record(kit)
    assert (req.path, req.op, req.operation_name) == ("/v1/shout", "chat", "shout")
    assert (req.input_tokens, req.output_tokens) == (4, 1) and req.cost_usd is not None


def test_a_test_only_endpoint_streams_in_its_own_events() -> None:
    steps = sse(chunk_doc("hi"), chunk_doc(" there"), chunk_doc(None, usage=(3, 2)))
    kit, rt = kit_for(lambda req: MockReply(200, steps=steps))
    got = events(stream_of(rt, SHOUT, {"model": "m", "text": "x", "stream": True}))
    assert got == [("piece", {"text": "HI"}), ("piece", {"text": " THERE"}), ("done", {"pieces": 2})]
    assert record(kit).output_tokens == 2  # billed though the client's format never asked for usage


def test_a_test_only_endpoint_fails_mid_stream_in_its_own_error_event() -> None:
    steps = [*sse(chunk_doc("hi"), done=False), CUT]
    kit, rt = kit_for(lambda req: MockReply(200, steps=steps))
    got = events(stream_of(rt, SHOUT, {"model": "m", "text": "x", "stream": True}))
    assert got[0] == ("piece", {"text": "HI"})
    name, doc = got[-1]
    assert name == "failure" and doc["type"] == "error" and doc["error"]["type"] == "upstream_error"
    assert record(kit).error == "stream_interrupted"


def test_the_front_serves_a_spec_it_is_given_with_its_error_body() -> None:
    kit, rt = kit_for(lambda req: MockReply(200, chat_doc("loud")))
    app = FastAPI()
    app.state.runtime = rt
    front = Front(app, Bodies(10_000, 100_000), {SHOUT.path: SHOUT})
    sent: list[dict[str, Any]] = []

    async def serve(doc: dict[str, Any]) -> tuple[int, Any]:
        sent.clear()
        messages = [{"type": "http.request", "body": orjson.dumps(doc), "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.Event().wait()  # the client stays: no disconnect
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        raw_headers = [(b"authorization", f"Bearer {CLIENT}".encode())]
        scope = {"type": "http", "method": "POST", "path": SHOUT.path, "headers": raw_headers}
        await front(scope, receive, send)
        return sent[0]["status"], orjson.loads(sent[1]["body"])

    assert asyncio.run(serve({"model": "m", "text": "hey"})) == (200, {"shout": "LOUD", "asked": "hey"})
    status, doc = asyncio.run(serve({"model": "m"}))
    assert status == 400 and doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("write_fails", [False, True])
def test_the_front_finishes_a_request_after_its_answer_is_written(write_fails: bool) -> None:
    """The observers (metrics, telemetry, access log) run once the bytes are out, off the client's wait;
    exactly once, also when the write fails because the client left."""
    kit, rt = kit_for(lambda req: MockReply(200, chat_doc("loud")))
    app = FastAPI()
    app.state.runtime = rt
    front = Front(app, Bodies(10_000, 100_000), {SHOUT.path: SHOUT})
    finished = kit.finished.reqs  # type: ignore[attr-defined]
    seen_at_write: list[int] = []
    messages = [
        {"type": "http.request", "body": orjson.dumps({"model": "m", "text": "a"}), "more_body": False}
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        seen_at_write.append(len(finished))
        if write_fails and message["type"] == "http.response.body":
            raise ConnectionResetError("the client left")

    scope = {
        "type": "http",
        "method": "POST",
        "path": SHOUT.path,
        "headers": [(b"authorization", HEADERS["authorization"].encode())],
    }
    if write_fails:
        with pytest.raises(ConnectionResetError):
            asyncio.run(front(scope, receive, send))
    else:
        asyncio.run(front(scope, receive, send))
    assert seen_at_write == [0, 0]  # head and body written before the request was finished
    assert len(finished) == 1 and finished[0].status == 200


# --- adapter-owned framing: named events, 0..n chunks per event, a flush, a clean end without [DONE] ------


def test_a_named_event_stream_ends_cleanly_on_its_own_stop_event() -> None:
    adapter = NamedAdapter()
    kit, rt = kit_for(lambda req: MockReply(200, steps=NAMED_STEPS), adapter=adapter)
    got = events(stream_of(rt, CHAT, body(True)))
    texts = [doc["choices"][0]["delta"].get("content") for _, doc in got[:-1]]
    assert texts == ["he", "llo", " you", None]  # two chunks from one event; the flush's finish chunk last
    assert got[-2][1]["choices"][0]["finish_reason"] == "stop"
    assert got[-1] == (None, "[DONE]")  # the client's clean end, though the upstream never sent [DONE]
    assert [t.flushed for t in adapter.translators] == [1]
    req = record(kit)
    assert (req.input_tokens, req.output_tokens, req.error) == (5, 3, None)
    assert req.attempts[0].outcome == "ok" and not req.attempts[0].partial
    assert kit.transport.replies[0].released and kit.balanced()


def test_bytes_that_end_before_the_clean_end_are_an_error_event_after_the_first_byte() -> None:
    adapter = NamedAdapter()
    kit, rt = kit_for(lambda req: MockReply(200, steps=NAMED_STEPS[:-1]), adapter=adapter)
    got = events(stream_of(rt, CHAT, body(True)))
    assert [doc["choices"][0]["delta"]["content"] for _, doc in got[:-1]] == ["he", "llo", " you"]
    assert got[-1][1]["error"]["code"] == "stream_interrupted" and (None, "[DONE]") not in got
    att = record(kit).attempts[0]
    assert att.outcome == "protocol" and att.partial and kit.balanced()
    assert [t.flushed for t in adapter.translators] == [1]  # flushed once, at the end of the bytes


def test_a_stream_that_ends_unfinished_before_its_first_chunk_fails_over() -> None:
    def handler(req: UpstreamRequest) -> MockReply:
        if backend_of(req) == "a":  # events that make no chunk, then the bytes end: never committed to
            return MockReply(200, steps=NAMED_STEPS[:2])
        return MockReply(200, steps=NAMED_STEPS)

    kit, rt = kit_for(handler, "ab", adapter=NamedAdapter())
    got = events(stream_of(rt, CHAT, body(True)))
    assert got[-1] == (None, "[DONE]")
    assert outcomes(kit) == [("a", "protocol"), ("b", "ok")] and kit.balanced()


def test_an_error_event_before_the_first_chunk_fails_over() -> None:
    def handler(req: UpstreamRequest) -> MockReply:
        if backend_of(req) == "a":
            return MockReply(200, steps=[named("start", {}), named("error", {})])
        return MockReply(200, steps=NAMED_STEPS)

    kit, rt = kit_for(handler, "ab", adapter=NamedAdapter())
    assert events(stream_of(rt, CHAT, body(True)))[-1] == (None, "[DONE]")
    assert outcomes(kit) == [("a", "server"), ("b", "ok")]


def test_an_openai_stream_without_done_fails_over_before_its_first_chunk() -> None:
    def handler(req: UpstreamRequest) -> MockReply:
        if backend_of(req) == "a":  # only a comment and a usage chunk the client did not ask for
            return MockReply(200, steps=[b": ping\n\n", *sse(chunk_doc(None, usage=(1, 1)), done=False)])
        return MockReply(200, steps=sse(chunk_doc("hi")))

    kit, rt = kit_for(handler, "ab")
    got = events(stream_of(rt, CHAT, body(True)))
    assert got[-1] == (None, "[DONE]") and outcomes(kit) == [("a", "protocol"), ("b", "ok")]


@pytest.mark.parametrize("cut", [1, 7, 40])
def test_the_relay_writes_one_client_write_per_upstream_read(cut: int) -> None:
    """However the upstream's bytes are cut, the client receives the same events."""
    raw = b"".join(NAMED_STEPS)
    steps = [raw[i : i + cut] for i in range(0, len(raw), cut)]
    kit, rt = kit_for(lambda req: MockReply(200, steps=steps), adapter=NamedAdapter())
    whole_kit, whole_rt = kit_for(lambda req: MockReply(200, steps=[raw]), adapter=NamedAdapter())
    assert events(stream_of(rt, CHAT, body(True))) == events(stream_of(whole_rt, CHAT, body(True)))


def test_a_response_translation_that_refuses_is_recorded_like_any_error() -> None:
    def untranslatable(response: bytes, request: dict[str, Any]) -> bytes:
        raise AllBackendsFailed("the answer has no equivalent in this format")

    spec = dataclasses.replace(SHOUT, from_backend=untranslatable)
    kit, rt = kit_for(lambda req: MockReply(200, chat_doc("loud")))
    with pytest.raises(AllBackendsFailed) as info:
        asyncio.run(call(rt, spec, {"model": "m", "text": "hey"}))
    assert info.value.headers["x-request-id"]
    req = record(kit)
    assert (req.status, req.error) == (502, "all_backends_failed") and kit.balanced()


# --- endpoints that keep state: begin binds the call, commit runs before the last bytes -----------------


class Ledger:
    """A stateful test-only spec: `begin` reads the principal and the body, `commit` notes what was sent."""

    def __init__(self) -> None:
        self.began: list[str] = []
        self.committed: list[tuple[str, bool]] = []

    async def begin(self, rt: Runtime, principal: Any, doc: dict[str, Any]) -> EndpointSpec:
        self.began.append(principal.label)
        encoder = SHOUT.stream_encoder(doc) if SHOUT.stream_encoder is not None else None
        seen: dict[str, Any] = {}

        def from_backend(response: bytes, request: dict[str, Any]) -> bytes:
            seen["body"] = SHOUT.from_backend(response, request)
            return bytes(seen["body"])

        async def commit() -> None:
            await asyncio.sleep(0)  # really awaited
            streamed = encoder is not None and getattr(encoder, "pieces", 0) > 0
            self.committed.append((doc["text"], streamed or "body" in seen))

        return dataclasses.replace(
            SHOUT, begin=None, from_backend=from_backend, stream_encoder=lambda _: encoder, commit=commit
        )


def test_a_stateful_endpoint_commits_before_its_answer_and_before_a_streams_clean_end() -> None:
    ledger = Ledger()
    spec = dataclasses.replace(SHOUT, begin=ledger.begin)
    steps = sse(chunk_doc("hi"), chunk_doc(None, usage=(3, 2)))
    kit, rt = kit_for(
        lambda req: (
            MockReply(200, steps=steps) if b'"stream":true' in req.body else MockReply(200, chat_doc("yo"))
        )
    )
    answer = asyncio.run(call(rt, spec, {"model": "m", "text": "plain"}))
    assert isinstance(answer, Answer) and ledger.committed == [("plain", True)]

    async def stream_until_last_write() -> list[tuple[str, bool]]:
        response = await call(rt, spec, {"model": "m", "text": "streamed", "stream": True})
        assert isinstance(response, RelayStream)
        async for write in response.body_iterator:
            if events(write)[-1][0] == "done":  # the clean end in hand: the commit already ran
                return list(ledger.committed)
        raise AssertionError("no clean end")

    assert asyncio.run(stream_until_last_write()) == [("plain", True), ("streamed", True)]
    assert ledger.began == ["key-2", "key-2"]  # the caller's principal


def test_a_stream_that_fails_commits_nothing() -> None:
    ledger = Ledger()
    spec = dataclasses.replace(SHOUT, begin=ledger.begin)
    kit, rt = kit_for(lambda req: MockReply(200, steps=[*sse(chunk_doc("hi"), done=False), CUT]))
    data = stream_of(rt, spec, {"model": "m", "text": "cut", "stream": True})
    assert events(data)[-1][0] == "failure" and ledger.committed == []
