"""The router below the integration level, on an in-memory transport: ranking → attempts → failover order,
retries, hedging, deadlines, and every attempt's lifecycle (finished once, losers let go)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.errors import AllBackendsFailed, GatewayError, RateLimited, UpstreamRejected
from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.routing.router import Completed, OpenStream, per_try_s
from tests.mock_transport import HANG, MockReply, Wait, backend_of, chat_doc, chunk_doc, sse
from tests.unit.routing.router_kit import Kit, body, catalog

OK = "ok"


def canned(kind: str) -> MockReply | ProviderError:
    """One backend behaviour by name, as the table below spells it."""
    if kind == OK:
        return MockReply(200, chat_doc())
    if kind == "connect":
        return ProviderError("connect", "connection refused")
    status = int(kind)
    headers = {"retry-after": "0"} if status == 429 else {}
    return MockReply(status, {"error": {"message": f"status {status}"}}, headers)


def scripted(script: dict[str, list[str]]) -> Any:
    """Each backend answers its list in turn (the last answer repeats)."""
    calls: dict[str, int] = {}

    def handler(req: UpstreamRequest) -> MockReply | ProviderError:
        name = backend_of(req)
        n = calls.get(name, 0)
        calls[name] = n + 1
        answers = script[name]
        return canned(answers[min(n, len(answers) - 1)])

    return handler


CASES = [
    # (backends' behaviours, max_attempts, backends tried in order, the error the client gets or None)
    ({"a": [OK], "b": [OK]}, 3, ["a"], None),
    ({"a": ["500"], "b": [OK]}, 3, ["a", "b"], None),
    ({"a": ["connect"], "b": ["429"], "c": [OK]}, 3, ["a", "b", "c"], None),
    ({"a": ["401"], "b": [OK]}, 3, ["a", "b"], None),
    ({"a": ["400"], "b": [OK]}, 3, ["a"], UpstreamRejected),
    ({"a": ["500"], "b": ["500"], "c": [OK]}, 2, ["a", "b"], AllBackendsFailed),
    ({"a": ["500"], "b": ["502"], "c": ["503"]}, 3, ["a", "b", "c"], AllBackendsFailed),
    ({"a": ["429"], "b": ["429"]}, 3, ["a", "b"], RateLimited),
    ({"a": ["500", OK]}, 2, ["a", "a"], None),  # one backend: retried after a backoff
]


@pytest.mark.parametrize(("script", "max_attempts", "tried", "error"), CASES)
def test_failover_order_follows_the_ranking(
    script: dict[str, list[str]], max_attempts: int, tried: list[str], error: type[GatewayError] | None
) -> None:
    kit = Kit(scripted(script), catalog("".join(script), max_attempts=max_attempts))

    async def run() -> Completed:
        return await kit.router.complete(kit.plan(body()), body(), kit.req)

    if error is None:
        done = asyncio.run(run())
        assert done.target.backend == tried[-1]
        assert kit.outcomes()[-1] == "ok"
    else:
        with pytest.raises(error):
            asyncio.run(run())
    assert kit.tried() == tried
    assert kit.balanced()
    # Each upstream reply was read whole (released) or dropped: none is left open.
    assert all(r.let_go for r in kit.transport.replies)


def test_the_ranking_decides_the_first_attempt() -> None:
    kit = Kit(scripted({"a": [OK], "b": [OK], "c": [OK]}), catalog("cba"))  # c is now the cheapest
    plan = kit.plan(body())
    assert [s.target.backend for s in plan.ranked] == ["c", "b", "a"]
    asyncio.run(kit.router.complete(plan, body(), kit.req))
    assert kit.tried() == ["c"]


def test_usage_is_on_the_finished_attempt() -> None:
    kit = Kit(scripted({"a": [OK]}), catalog("a"))
    done = asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    att = kit.req.attempts[0]
    assert (att.input_tokens, att.output_tokens) == (3, 2)
    assert done.parsed.usage is not None and att.ttft_s is not None


# --- deadlines ----------------------------------------------------------------------------------------------


def test_total_deadline_bounds_a_hung_upstream() -> None:
    async def handler(req: UpstreamRequest) -> MockReply:
        await asyncio.sleep(30)
        return MockReply(200, chat_doc())

    kit = Kit(handler, catalog("ab", timeouts={"total_s": 0.3}))
    started = time.monotonic()
    with pytest.raises(AllBackendsFailed):
        asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    assert time.monotonic() - started < 3  # not the upstream's 30 s
    assert kit.outcomes()[0] == "timeout" and kit.balanced()


def test_a_stream_without_a_first_event_in_time_fails_over_and_is_dropped() -> None:
    def handler(req: UpstreamRequest) -> MockReply:
        if backend_of(req) == "a":
            return MockReply(200, steps=[HANG])
        return MockReply(200, steps=sse(chunk_doc("hi")))

    kit = Kit(handler, catalog("ab", timeouts={"first_token_s": 0.2}))
    opened = asyncio.run(kit.router.open_stream(kit.plan(body(True)), body(True), kit.req))
    assert kit.tried() == ["a", "b"] and kit.outcomes() == ["timeout", "pending"]
    assert kit.transport.replies[0].closed
    opened.attempt.end_stream(True, None)
    assert kit.balanced() and kit.transport.replies[1].released


# --- hedging ------------------------------------------------------------------------------------------------


def test_a_late_primary_is_hedged_and_the_loser_cancelled() -> None:
    async def handler(req: UpstreamRequest) -> MockReply:
        await asyncio.sleep(5 if backend_of(req) == "a" else 0.01)
        return MockReply(200, chat_doc())

    kit = Kit(handler, catalog("ab", hedge_ms=50))
    done = asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    assert done.target.backend == "b"
    assert dict(zip(kit.tried(), kit.outcomes(), strict=True)) == {"a": "cancelled", "b": "ok"}
    assert [backend_of(r) for r in kit.transport.cancelled] == ["a"]
    assert kit.balanced()


def test_hedged_streams_that_open_in_the_same_wake_up_leave_no_loser_open() -> None:
    """Regression: `race` returned the first success of a wake-up and dropped the other, whose stream was
    never closed nor finished (its in-flight count leaked)."""
    gate = asyncio.Event()

    async def handler(req: UpstreamRequest) -> MockReply:
        await gate.wait()
        return MockReply(200, steps=sse(chunk_doc("hi")))

    kit = Kit(handler, catalog("ab", hedge_ms=20))

    async def run() -> OpenStream:
        task = asyncio.ensure_future(kit.router.open_stream(kit.plan(body(True)), body(True), kit.req))
        while len(kit.transport.requests) < 2:  # both sent: the hedge fired
            await asyncio.sleep(0.01)
        gate.set()  # both answer in the same loop iteration
        return await task

    opened = asyncio.run(run())
    loser = next(a for a in kit.req.attempts if a.target is not opened.target)
    assert loser.outcome == "cancelled"
    assert [r.closed for r in kit.transport.replies if r is not opened.reply] == [True]
    assert kit.ledger.open() == [opened.attempt.record]  # only the winner, still being relayed
    opened.attempt.end_stream(True, None)
    assert kit.balanced()


def test_hedged_answers_in_the_same_wake_up_are_each_finished_once() -> None:
    gate = asyncio.Event()

    async def handler(req: UpstreamRequest) -> MockReply:
        await gate.wait()
        return MockReply(200, chat_doc())

    kit = Kit(handler, catalog("ab", hedge_ms=20))

    async def run() -> Completed:
        task = asyncio.ensure_future(kit.router.complete(kit.plan(body()), body(), kit.req))
        while len(kit.transport.requests) < 2:
            await asyncio.sleep(0.01)
        gate.set()
        return await task

    done = asyncio.run(run())
    assert done.target.backend == "a"  # the ranked-first backend wins a tie
    assert kit.balanced()


# --- the client goes away -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_cancelled_request_drops_its_upstream_attempt(where: str) -> None:
    entered = asyncio.Event()

    async def handler(req: UpstreamRequest) -> MockReply:
        entered.set()
        if where == "headers":
            await asyncio.sleep(30)
        return MockReply(200, steps=[b'{"id":', Wait(30), b"}"])

    kit = Kit(handler, catalog("ab"))

    async def run() -> None:
        task = asyncio.ensure_future(kit.router.complete(kit.plan(body()), body(), kit.req))
        await entered.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert kit.tried() == ["a"] and kit.outcomes() == ["cancelled"]  # no failover for a client gone
    if where == "headers":
        assert len(kit.transport.cancelled) == 1
    else:
        assert kit.transport.replies[0].closed
    assert kit.balanced()


def test_a_cancelled_hedge_cancels_both_attempts() -> None:
    async def handler(req: UpstreamRequest) -> MockReply:
        await asyncio.sleep(30)
        return MockReply(200, chat_doc())

    kit = Kit(handler, catalog("ab", hedge_ms=20))

    async def run() -> None:
        task = asyncio.ensure_future(kit.router.complete(kit.plan(body()), body(), kit.req))
        while len(kit.transport.requests) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert kit.outcomes() == ["cancelled", "cancelled"] and len(kit.transport.cancelled) == 2
    assert kit.balanced()


def test_a_request_cancelled_before_its_hedge_fires_cancels_the_primary() -> None:
    async def handler(req: UpstreamRequest) -> MockReply:
        await asyncio.sleep(30)
        return MockReply(200, chat_doc())

    kit = Kit(handler, catalog("ab", hedge_ms=5000))

    async def run() -> None:
        task = asyncio.ensure_future(kit.router.complete(kit.plan(body()), body(), kit.req))
        while not kit.transport.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Checked before the loop closes (closing it would cancel any orphan anyway).
        assert kit.outcomes() == ["cancelled"] and len(kit.transport.cancelled) == 1

    asyncio.run(run())
    assert kit.balanced()


# --- per-try deadlines (issue 14) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backends", "timeouts", "max_tokens", "expected_s", "left_s", "deadline_s"),
    [
        ("ab", {}, 10, 0.1, 10.0, 2.0),  # 4 x 0.1 s, but never under first_token_s
        ("ab", {}, 10, 2.0, 10.0, 5.0),  # 4 x 2 s, but half of total_s leaves room for the failover
        ("a", {}, 10, 2.0, 10.0, 8.0),  # no other backend to fail over to: 4 x 2 s
        ("ab", {}, None, 0.1, 10.0, 10.0),  # unbounded output: no prediction to trust, total_s as before
        ("ab", {"per_try_s": 1.0}, None, 0.1, 10.0, 1.0),  # an explicit cap applies to every attempt
        ("ab", {"per_try_factor": None}, 10, 0.1, 10.0, 10.0),  # off
        ("ab", {}, 10, 0.1, 0.5, 0.5),  # never past the request's own deadline
    ],
)
def test_a_non_streaming_attempt_gets_a_per_try_deadline(
    backends: str,
    timeouts: dict[str, Any],
    max_tokens: int | None,
    expected_s: float,
    left_s: float,
    deadline_s: float,
) -> None:
    kit = Kit(scripted({}), catalog(backends, timeouts=timeouts))
    extra = {"max_tokens": max_tokens} if max_tokens is not None else {}
    plan = kit.plan(body(**extra))
    assert per_try_s(plan, expected_s, left_s) == pytest.approx(deadline_s)


def test_a_hung_backend_leaves_room_for_the_failover() -> None:
    """Issue 14's hang: the attempt's own deadline ends it early enough for another backend to answer."""

    async def handler(req: UpstreamRequest) -> MockReply:
        await asyncio.sleep(30 if backend_of(req) == "a" else 0)
        return MockReply(200, chat_doc())

    kit = Kit(handler, catalog("ab", timeouts={"first_token_s": 0.05, "total_s": 0.6}))
    done = asyncio.run(kit.router.complete(kit.plan(body(max_tokens=5)), body(max_tokens=5), kit.req))
    assert done.target.backend == "b"
    assert kit.tried() == ["a", "b"] and kit.outcomes() == ["timeout", "ok"] and kit.balanced()
