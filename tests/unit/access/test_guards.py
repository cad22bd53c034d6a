"""The guard stage on the real relay path over an in-memory transport: order, refusal before any upstream
call, and one settle with the real usage for an answer, a stream, and a stream the client abandons."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import orjson
import pytest
from starlette.requests import ClientDisconnect

from gateway.access.guards import Guard, Guards, MaxCostGuard
from gateway.access.principal import Keys, Principal
from gateway.api.relay import Answer, RelayStream, relay
from gateway.endpoints import CHAT
from gateway.errors import CostLimitExceeded, GatewayError, PermissionDenied
from gateway.events import Observer, RequestRecord
from gateway.providers.base import Usage
from gateway.routing.router import Plan
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.upstream import AiohttpTransport
from tests.mock_transport import CUT, MockReply, chat_doc, chunk_doc, sse
from tests.unit.routing.router_kit import Kit, body, catalog

CLIENT = "rw-client-1"


@dataclass
class Settled:
    principal: Principal
    usage: Usage | None
    cost_usd: float | None
    status: int | None


class Recording(Guard):
    """Notes each call in a shared journal; refuses when told to."""

    def __init__(self, name: str, journal: list[str], refuse: bool = False) -> None:
        self.name, self.journal, self.refuse = name, journal, refuse
        self.settled: list[Settled] = []

    async def admit(self, principal: Principal, plan: Plan, req: RequestRecord) -> None:
        self.journal.append(f"admit:{self.name}:{principal.label}")
        await asyncio.sleep(0)
        if self.refuse:
            raise PermissionDenied(f"refused by {self.name}", code="refused")

    async def settle(
        self,
        principal: Principal,
        plan: Plan,
        req: RequestRecord,
        usage: Usage | None,
        cost_usd: float | None,
    ) -> None:
        await asyncio.sleep(0)  # a ledger write: runs in its own task, after the request
        self.journal.append(f"settle:{self.name}")
        self.settled.append(Settled(principal, usage, cost_usd, req.status))


class Finished(Observer):
    """Keeps the request record relay made, as the access log would see it."""

    def __init__(self) -> None:
        self.reqs: list[RequestRecord] = []

    def request_finished(self, req: RequestRecord) -> None:
        self.reqs.append(req)


def runtime(kit: Kit, guards: list[Guard]) -> Runtime:
    settings = Settings(api_keys=f"other,{CLIENT}")
    kit.finished = Finished()  # type: ignore[attr-defined]
    kit.router.observers.add(kit.finished)  # type: ignore[attr-defined]
    return Runtime(
        settings=settings,
        transport=cast(AiohttpTransport, kit.transport),
        router=kit.router,
        loaded=cast(Any, None),
        catalog=kit.catalog,
        keys=Keys.from_settings(settings),
        guards=Guards(guards),
    )


async def call(rt: Runtime, doc: dict[str, Any]) -> Answer | RelayStream:
    raw = orjson.dumps(doc)

    async def read() -> bytes:
        return raw

    headers = {"authorization": f"Bearer {CLIENT}"}
    answer = await relay(rt, CHAT, headers, read)
    if isinstance(answer, Answer):
        answer.finished()  # as the front does once the answer is written
    return answer


def record(kit: Kit) -> RequestRecord:
    [req] = kit.finished.reqs  # type: ignore[attr-defined]
    return req


def ok(req: object) -> MockReply:
    return MockReply(200, chat_doc(usage=(30, 20)))


def test_guards_admit_in_order_and_the_first_refusal_stops_the_rest() -> None:
    journal: list[str] = []
    kit = Kit(ok, catalog("ab"))
    first, second, third = (
        Recording("1", journal),
        Recording("2", journal, refuse=True),
        Recording("3", journal),
    )
    rt = runtime(kit, [first, second, third])

    async def run() -> None:
        with pytest.raises(PermissionDenied):
            await call(rt, body())
        await rt.guards.drain()

    asyncio.run(run())
    # The principal is key-2 (the second key listed); a refused request still settles, with no usage.
    assert journal[:2] == ["admit:1:key-2", "admit:2:key-2"]
    assert sorted(journal[2:]) == ["settle:1", "settle:2", "settle:3"]
    assert kit.transport.requests == []  # refused before any upstream call
    assert record(kit).attempts == [] and first.settled[0].usage is None


def test_max_cost_refuses_before_any_upstream_call_with_a_400() -> None:
    kit = Kit(ok, catalog("ab"))  # prices $1 and $2 per million tokens, in and out
    rt = runtime(kit, [MaxCostGuard(0.001)])
    with pytest.raises(CostLimitExceeded) as info:
        asyncio.run(call(rt, body(max_tokens=5000)))
    err: GatewayError = info.value
    assert err.status == 400 and err.code == "cost_limit_exceeded" and err.param == "max_tokens"
    assert err.payload()["error"]["type"] == "invalid_request_error"
    assert "$0.001000" in err.message and kit.transport.requests == []


def test_max_cost_drops_candidates_above_the_cap_so_no_failover_exceeds_it() -> None:
    def handler(req: Any) -> MockReply:
        return MockReply(500, {"error": {"message": "down"}})

    kit = Kit(handler, catalog("abc"))
    rt = runtime(kit, [MaxCostGuard(0.0015)])  # ~1000 tokens: a costs ~$0.001, b ~$0.002, c ~$0.003
    with pytest.raises(GatewayError):
        asyncio.run(call(rt, body(max_tokens=1000)))
    req = record(kit)
    assert {a.target.backend for a in req.attempts} == {"a"}  # retried there; b and c never tried
    assert {d.backend for d in req.dropped} >= {"b", "c"}
    assert any("above the request cap" in d.reason for d in req.dropped)


def test_under_the_cap_nothing_changes() -> None:
    kit = Kit(ok, catalog("ab"))
    rt = runtime(kit, [MaxCostGuard(10.0)])
    answer = asyncio.run(call(rt, body(max_tokens=10)))
    assert isinstance(answer, Answer) and [c.target.backend for c in record(kit).candidates] == ["a", "b"]


def test_settle_once_with_the_real_usage_of_an_answer() -> None:
    guard = Recording("g", [])
    kit = Kit(ok, catalog("a"))
    rt = runtime(kit, [guard])

    async def run() -> Answer | RelayStream:
        answer = await call(rt, body())
        await rt.guards.drain()
        return answer

    answer = asyncio.run(run())
    assert isinstance(answer, Answer)
    [settled] = guard.settled
    assert settled.usage == Usage(30, 20) and settled.cost_usd == pytest.approx(50 / 1e6)
    assert settled.principal.label == "key-2" and settled.status == 200
    assert record(kit).principal == "key-2"


async def consume(stream: RelayStream, abandon_after: int | None = None) -> list[bytes]:
    """Reads the stream's body as Starlette would; `abandon_after` chunks then closes it (client gone)."""
    chunks: list[bytes] = []
    iterator = stream.body_iterator
    async for chunk in iterator:
        chunks.append(chunk if isinstance(chunk, bytes) else chunk.encode())
        if abandon_after is not None and len(chunks) >= abandon_after:
            await iterator.aclose()  # type: ignore[attr-defined]
            break
    return chunks


def test_settle_once_when_a_stream_ends_with_its_usage() -> None:
    guard = Recording("g", [])
    steps = sse(chunk_doc("hi"), chunk_doc(" there"), chunk_doc(None, usage=(7, 2)))
    kit = Kit(lambda req: MockReply(200, steps=steps), catalog("a"))
    rt = runtime(kit, [guard])

    async def run() -> list[bytes]:
        stream = await call(rt, body(stream=True))
        assert isinstance(stream, RelayStream)
        assert guard.settled == []  # not before the stream ended
        chunks = await consume(stream)
        await rt.guards.drain()
        return chunks

    chunks = asyncio.run(run())
    assert chunks[-1].endswith(b"data: [DONE]\n\n")
    [settled] = guard.settled
    assert settled.usage == Usage(7, 2) and settled.cost_usd == pytest.approx(9 / 1e6)


def test_settle_once_when_the_client_abandons_a_stream() -> None:
    guard = Recording("g", [])
    steps = sse(chunk_doc("hi"), chunk_doc(" there"), chunk_doc(None, usage=(7, 2)))
    kit = Kit(lambda req: MockReply(200, steps=[steps[0], steps[1], CUT]), catalog("a"))
    rt = runtime(kit, [guard])

    async def run() -> None:
        stream = await call(rt, body(stream=True))
        assert isinstance(stream, RelayStream)
        await consume(stream, abandon_after=1)
        await rt.guards.drain()

    asyncio.run(run())
    [settled] = guard.settled  # once, though nothing more will ever be read
    # No usage arrived: billed on the gateway's own count of what was relayed ("hi": one token).
    assert settled.usage is not None and settled.usage.output_tokens == 1 and settled.usage.input_tokens > 0
    assert settled.cost_usd is not None and settled.cost_usd > 0
    assert record(kit).error == "client_disconnected" and kit.balanced()


def test_a_stream_without_usage_is_billed_on_the_gateways_own_count() -> None:
    guard = Recording("g", [])
    steps = sse(chunk_doc("hello "), chunk_doc("world, again"))  # 18 characters, no usage chunk
    kit = Kit(lambda req: MockReply(200, steps=steps), catalog("a"))
    rt = runtime(kit, [guard])

    async def run() -> None:
        stream = await call(rt, body(stream=True))
        assert isinstance(stream, RelayStream)
        await consume(stream)
        await rt.guards.drain()

    asyncio.run(run())
    [settled] = guard.settled
    assert settled.usage is not None and settled.usage.output_tokens == 5  # ceil(18 / 4)
    assert record(kit).output_tokens == 5 and record(kit).cost_usd == settled.cost_usd


def test_settle_once_when_a_stream_is_never_started() -> None:
    """The client left before the first write: the response's own finally still settles."""
    guard = Recording("g", [])
    steps = sse(chunk_doc("hi"), chunk_doc(None, usage=(7, 2)))
    kit = Kit(lambda req: MockReply(200, steps=steps), catalog("a"))
    rt = runtime(kit, [guard])

    async def send(message: Any) -> None:
        raise OSError("connection reset")

    async def receive() -> Any:
        await asyncio.Event().wait()

    async def run() -> None:
        stream = await call(rt, body(stream=True))
        assert isinstance(stream, RelayStream)
        scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "POST", "headers": []}
        with pytest.raises(ClientDisconnect):  # Starlette's word for the OSError on the first send
            await stream(scope, receive, send)
        await rt.guards.drain()

    asyncio.run(run())
    assert len(guard.settled) == 1 and kit.balanced()


def test_no_guards_no_settle_task_and_from_settings() -> None:
    assert not Guards.from_settings(Settings())
    guards = Guards.from_settings(Settings(max_request_usd=0.5))
    [guard] = guards.guards
    assert isinstance(guard, MaxCostGuard) and guard.max_usd == 0.5

    async def run() -> int:
        before = len(asyncio.all_tasks())
        plan = cast(Plan, None)
        guards.settle(Principal("client", "key-1"), plan, RequestRecord("r", "chat", "/"), None, None)
        return len(asyncio.all_tasks()) - before

    assert asyncio.run(run()) == 0  # MaxCostGuard has nothing to settle: no task per request


class KeyedRecording(Recording):
    keyed = True  # acts only on a virtual key's principal, as the key limits do


def test_keyed_guards_alone_are_skipped_for_a_caller_without_a_virtual_key() -> None:
    journal: list[str] = []
    kit = Kit(ok, catalog("ab"))
    rt = runtime(kit, [KeyedRecording("k", journal)])

    async def run() -> Answer | RelayStream:
        answer = await call(rt, body())
        await rt.guards.drain()
        return answer

    assert isinstance(asyncio.run(run()), Answer)
    assert journal == []  # neither admit nor settle ran: nothing per request for a gateway without keys
    virtual = Principal("client", "vk-1", key=cast(Any, object()))
    assert rt.guards.concern(virtual) and not rt.guards.concern(Principal("client", "key-2"))
    assert not Guards().concern(virtual)


def test_a_keyed_guard_beside_an_unkeyed_one_still_runs_in_order() -> None:
    journal: list[str] = []
    kit = Kit(ok, catalog("ab"))
    rt = runtime(kit, [Recording("1", journal), KeyedRecording("k", journal)])

    async def run() -> None:
        await call(rt, body())
        await rt.guards.drain()

    asyncio.run(run())
    assert journal[:2] == ["admit:1:key-2", "admit:k:key-2"]  # the stage runs whole, as before
    assert sorted(journal[2:]) == ["settle:1", "settle:k"]
