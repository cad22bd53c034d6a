"""Holds many slow SSE streams open through a server at once (aiohttp client) while sampling its RSS."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from bench import payloads, procs


@dataclass(slots=True)
class StreamsResult:
    streams: int
    completed: int  # ended with [DONE]
    errors: int
    error_kinds: dict[str, int]
    max_open: int  # streams that had their first event and were not finished yet, at the busiest moment
    first_event_p50_s: float  # from sending the request to the first SSE bytes
    first_event_max_s: float  # seconds: a stream queued behind a full connection pool shows up here
    rss_before_mb: float
    rss_peak_mb: float  # the highest VmRSS sample while the streams were open
    hwm_mb: float  # VmHWM: the kernel's own peak, whole process lifetime
    open_s: float  # from the first request to the last stream's end


async def hold(port: int, pid: int, n: int, timeout_s: float) -> StreamsResult:
    url = f"http://127.0.0.1:{port}{payloads.CHAT_PATH}"
    errors: Counter[str] = Counter()
    state = {"open": 0, "max_open": 0, "done": 0}
    rss_before = procs.status_kb(pid, "VmRSS")
    peak = rss_before
    finished = asyncio.Event()

    firsts: list[float] = []

    async def one(session: aiohttp.ClientSession) -> None:
        opened = False
        sent = time.monotonic()
        try:
            async with session.post(url, data=payloads.SLOW_STREAM_BODY, headers=payloads.HEADERS) as resp:
                if resp.status != 200:
                    errors[f"HTTP {resp.status}"] += 1
                    return
                tail = b""
                async for chunk in resp.content.iter_any():
                    if not opened:
                        opened = True
                        firsts.append(time.monotonic() - sent)
                        state["open"] += 1
                        state["max_open"] = max(state["max_open"], state["open"])
                    tail = (tail + chunk)[-64:]
                if b"[DONE]" in tail:
                    state["done"] += 1
                else:
                    errors["ended without [DONE]"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            if opened:
                state["open"] -= 1

    async def sample() -> None:
        nonlocal peak
        while not finished.is_set():
            peak = max(peak, procs.status_kb(pid, "VmRSS"))
            await asyncio.sleep(0.2)

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sampler = asyncio.create_task(sample())
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(one(session)))
            if i % 100 == 99:
                await asyncio.sleep(0.05)  # open them over ~0.5 s rather than in one SYN burst
        await asyncio.gather(*tasks)
        finished.set()
        await sampler
    mb = 1024.0
    firsts.sort()
    return StreamsResult(
        streams=n,
        completed=state["done"],
        errors=sum(errors.values()),
        error_kinds=dict(errors),
        max_open=state["max_open"],
        first_event_p50_s=round(firsts[len(firsts) // 2], 3) if firsts else 0.0,
        first_event_max_s=round(firsts[-1], 3) if firsts else 0.0,
        rss_before_mb=round(rss_before / mb, 1),
        rss_peak_mb=round(peak / mb, 1),
        hwm_mb=round(procs.status_kb(pid, "VmHWM") / mb, 1),
        open_s=round(time.monotonic() - started, 2),
    )


def run(port: int, pid: int, n: int, hold_s: float) -> StreamsResult:
    """Bounded: every stream has a total timeout of hold + 30 s."""
    import uvloop

    return uvloop.run(hold(port, pid, n, hold_s + 30.0))
