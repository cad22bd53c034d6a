"""Replays a workload against one backend at a time through its adapter and the transport, streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.providers.base import Adapter, ProviderError, Target, Usage
from gateway.providers.credentials import authorize, authorize_now
from gateway.providers.stream import UpstreamStream
from gateway.routing.router import cost_usd
from gateway.telemetry.headroom import Headroom
from gateway.upstream import Deadlines, Transport
from gateway.workbench.workload import Item

DEADLINES = Deadlines(connect_s=5.0, first_byte_s=60.0, idle_s=60.0, total_s=300.0)


@dataclass(slots=True)
class Sample:
    """One replayed request: what it cost and how fast it was; `error` is a FailureKind on failure."""

    ttft_s: float | None = None
    e2e_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    headroom: Headroom | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token (a one-token answer has none)."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2:
            return None
        gen = self.e2e_s - self.ttft_s
        return (self.output_tokens - 1) / gen if gen > 0 else None


@dataclass(frozen=True, slots=True)
class Load:
    """How requests arrive: open loop at `rate` per second, else closed loop at `concurrency`."""

    rate: float | None = None
    concurrency: int = 4
    requests: int | None = None
    duration_s: float | None = None


class SpendCap:
    """The hard cap, shared by every backend of a run: spent so far plus what is in flight, predicted."""

    def __init__(self, max_usd: float) -> None:
        self.max_usd = max_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.hit = False

    def reserve(self, predicted: float) -> bool:
        """False (and the cap marked as hit) when sending would cross the cap."""
        if self.spent + self.reserved + predicted > self.max_usd:
            self.hit = True
            return False
        self.reserved += predicted
        return True

    def settle(self, predicted: float, actual: float) -> None:
        self.reserved -= predicted
        self.spent += actual


def predicted_cost(target: Target, item: Item) -> float:
    """The gateway's own pricing (router.cost_usd) on the expected sizes: the most a request may cost."""
    return cost_usd(target, Usage(item.input_tokens, item.output_tokens)) or 0.0


@dataclass(slots=True)
class Run:
    target: Target
    samples: list[Sample] = field(default_factory=list)
    stopped_by_cap: bool = False
    wall_s: float = 0.0


async def replay(
    target: Target,
    adapter: Adapter,
    transport: Transport,
    items: Iterator[Item],
    load: Load,
    cap: SpendCap,
    progress: Callable[[Run], None] | None = None,
) -> Run:
    """Sends requests until the count, the duration or the spend cap says stop; closed or open loop."""
    run = Run(target)
    started = time.monotonic()
    deadline = started + load.duration_s if load.duration_s is not None else None
    budget = [load.requests if load.requests is not None else (None if deadline else 100)]

    def next_item() -> Item | None:
        if budget[0] is not None and budget[0] <= 0:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return None
        item = next(items, None)
        if item is None:
            return None
        if not cap.reserve(predicted_cost(target, item)):
            run.stopped_by_cap = True
            return None
        if budget[0] is not None:
            budget[0] -= 1
        return item

    async def one(item: Item) -> None:
        predicted = predicted_cost(target, item)
        sample = await send_one(target, adapter, transport, item)
        cap.settle(predicted, sample.cost_usd)
        run.samples.append(sample)
        if progress is not None:
            progress(run)

    if load.rate is not None:
        await _open_loop(load.rate, next_item, one)
    else:
        await _closed_loop(load.concurrency, next_item, one)
    run.wall_s = time.monotonic() - started
    return run


async def _closed_loop(
    concurrency: int, next_item: Callable[[], Item | None], one: Callable[[Item], Awaitable[None]]
) -> None:
    async def worker() -> None:
        while (item := next_item()) is not None:
            await one(item)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


async def _open_loop(
    rate: float, next_item: Callable[[], Item | None], one: Callable[[Item], Awaitable[None]]
) -> None:
    """Arrivals on a fixed schedule whatever the answers' speed, so a slow backend builds a queue."""
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    sent = 0
    while (item := next_item()) is not None:
        task = asyncio.ensure_future(one(item))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)


async def send_one(target: Target, adapter: Adapter, transport: Transport, item: Item) -> Sample:
    """One streamed request: TTFT at the first event carrying a token, usage from the stream's end."""
    sample = Sample()
    upstream = adapter.build_request("chat", item.body(target.model), target)
    started = time.monotonic()
    try:
        if not authorize_now(upstream, target):  # signed last, as the router does
            upstream = await authorize(upstream, target)
        reply = await transport.send(upstream, DEADLINES)
        sample.headroom = adapter.headroom(reply.headers)  # in the backend's dialect
        if reply.status >= 300:
            raise adapter.parse_error(reply.status, reply.headers, await reply.read(), target)
        stream = UpstreamStream(
            reply.chunks(),
            adapter.stream_decoder("chat", target, max_event_bytes=reply.max_event_bytes),
            adapter.stream_translator("chat", target, show_usage=True),
        )
        try:
            while not stream.done:
                chunks = await stream.read()
                if sample.ttft_s is None and any(_has_token(c) for c in chunks):
                    sample.ttft_s = time.monotonic() - started
        except BaseException:
            reply.close()
            raise
        # Read whole: the connection goes back to the pool, so the next TTFT holds no TCP/TLS handshake.
        reply.release()
    except ProviderError as err:
        sample.error = err.kind
        return sample
    sample.e2e_s = time.monotonic() - started
    usage = stream.usage
    if usage is None:
        sample.error = "no_usage"  # cannot be priced: counted as an error rather than as free
        return sample
    sample.input_tokens, sample.output_tokens = usage.input_tokens, usage.output_tokens
    sample.cost_usd = cost_usd(target, usage) or 0.0
    return sample


def _has_token(chunk: bytes) -> bool:
    """Whether a chunk carries generated text (the role-only first chunk of some servers does not)."""
    try:
        doc: Any = orjson.loads(chunk)
        choices = doc.get("choices") or ()
        return any((c.get("delta") or {}).get("content") for c in choices)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return False
