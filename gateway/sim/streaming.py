"""Server-sent events with hardware-like pacing, plus the mid-stream cut and stall faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from gateway.sim.faults import abort_connection, wait_forever
from gateway.sim.responses import Event
from gateway.sim.state import Arrival, Knobs

# Set when a write failed because the client went away.
CLIENT_GONE = web.RequestKey("sim_client_gone", bool)
# Below this a sleep costs more in timer overhead than it buys in accuracy, so fast profiles send
# tokens in small bursts; pacing against absolute deadlines keeps the average rate exact anyway.
_MIN_SLEEP_S = 0.002


class Pacer:
    """Token `i` is due `ttft + i / tokens_per_s` after the pacer starts."""

    def __init__(self, ttft_ms: float, tokens_per_s: float) -> None:
        self._first = time.monotonic() + ttft_ms / 1000.0
        self._interval = 1.0 / tokens_per_s

    async def wait(self, token: int) -> None:
        delay = self._first + token * self._interval - time.monotonic()
        if delay >= _MIN_SLEEP_S or (token == 0 and delay > 0):
            await asyncio.sleep(delay)


def non_stream_delay(knobs: Knobs, tokens: int) -> float:
    return knobs.ttft_ms / 1000.0 + tokens / knobs.tokens_per_s


def encode_events(events: list[Event]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)


async def _interrupt(request: web.BaseRequest, knobs: Knobs, sent: int, at_end: bool) -> bool:
    """Apply `cut_after_tokens` / `stall_after_tokens` once `sent` tokens are out (or the tokens ran out).

    Returns True when the connection was cut and the stream must stop.
    """
    cut, stall = knobs.cut_after_tokens, knobs.stall_after_tokens
    if cut is not None and (sent >= cut or at_end):
        abort_connection(request, rst=False)
        return True
    if stall is not None and (sent >= stall or at_end):
        await wait_forever()
    return False


@dataclass(frozen=True)
class Framing:
    """How a stream's bytes are wrapped on the wire: SSE as is, or inside another format's messages."""

    content_type: str
    frame: Callable[[bytes], bytes]
    # The format's exception message (name -> bytes), which `stream_exception_after_tokens` sends instead
    # of the stream's end; None: the format has none.
    exception: Callable[[str], bytes] | None = None


# Set by a route that serves the OpenAI stream inside another wire format (SageMaker's PayloadPart).
FRAMING = web.RequestKey("sim_framing", Framing)


async def stream_events(
    request: web.BaseRequest,
    knobs: Knobs,
    arrival: Arrival,
    headers: Mapping[str, str],
    steps: list[list[Event]],
    tail: list[Event],
) -> web.StreamResponse:
    """Send headers at once, then one step (the chunks of one token position) per pacing tick.

    `steps[0]` should carry the role chunks so the first byte after the headers arrives at TTFT.
    """
    framing = request.get(FRAMING)
    frame = framing.frame if framing is not None else bytes
    content_type = framing.content_type if framing is not None else "text/event-stream"
    body = [frame(encode_events(step)) for step in steps]
    end = frame(encode_events(tail) + b"data: [DONE]\n\n")
    after = knobs.stream_exception_after_tokens
    if framing is not None and framing.exception is not None and after is not None:
        body, end = body[:after] or [b""], framing.exception(knobs.stream_exception)
    headers = {**headers, "content-type": content_type, "cache-control": "no-cache"}
    return await paced_write(request, knobs, arrival, headers, body, end)


async def paced_write(
    request: web.BaseRequest,
    knobs: Knobs,
    arrival: Arrival,
    headers: Mapping[str, str],
    steps: list[bytes],
    tail: bytes,
) -> web.StreamResponse:
    """Headers at once, then one step per pacing tick, then the tail; cut and stall faults apply."""
    response = web.StreamResponse(status=200, headers=headers)
    try:
        await response.prepare(request)
        arrival.status = 200
        pacer = Pacer(knobs.ttft_ms, knobs.tokens_per_s)
        for sent, step in enumerate(steps):
            if await _interrupt(request, knobs, sent, at_end=False):
                return response
            await pacer.wait(sent)
            await response.write(step)
        if await _interrupt(request, knobs, len(steps), at_end=True):
            return response
        await response.write(tail)
    except ConnectionResetError:
        request[CLIENT_GONE] = True
    return response
