"""Self-hosted load signals: a backend's Prometheus page (`metrics_url`) scraped in the background for its
queue depth and KV-cache use, into the telemetry store (shared by every replica, like the rest of it).

Which gauge names mean what is data (SIGNALS), read from the servers' published documentation. Everything
read is bounded: the body (bytes, and only identity encoding, so nothing is decompressed), the lines handed
to prometheus_client's parser (those of the gauges we read), the series summed; a scrape that fails for any
reason is counted and dropped, never raised to a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("routeway.loadsignals")

# Gauge name -> (which server family publishes it, which signal it is).
SIGNALS: Mapping[str, tuple[str, str]] = {
    # vLLM (docs.vllm.ai, "Production Metrics"): queue, batch, KV-cache use as a fraction of 1; the cache
    # gauge was renamed gpu_cache_usage_perc -> kv_cache_usage_perc (V1 engine): either is read.
    "vllm:num_requests_waiting": ("vllm", "waiting"),
    "vllm:num_requests_running": ("vllm", "running"),
    "vllm:gpu_cache_usage_perc": ("vllm", "kv_cache"),
    "vllm:kv_cache_usage_perc": ("vllm", "kv_cache"),
    # NVIDIA NIM for LLMs (docs.nvidia.com/nim/large-language-models/latest/observability.html, served at
    # /v1/metrics): the same gauges without a prefix, plus the concurrency cap.
    "num_requests_waiting": ("nim", "waiting"),
    "num_requests_running": ("nim", "running"),
    "gpu_cache_usage_perc": ("nim", "kv_cache"),
    "num_request_max": ("nim", "max_running"),
    # Hugging Face TGI (huggingface.co/docs/text-generation-inference/reference/metrics): queue and batch
    # size; TGI publishes no KV-cache gauge.
    "tgi_queue_size": ("tgi", "waiting"),
    "tgi_batch_current_size": ("tgi", "running"),
}
_WANTED = re.compile(
    r"^(?:# (?:TYPE|HELP) )?("
    + "|".join(re.escape(n) for n in sorted(SIGNALS, key=len, reverse=True))
    + r")[{\s]"
)
MAX_LINES = 4096  # kept lines (those of the gauges above): more series than any one server has
_MAX_VALUE = 1e9


@dataclass(frozen=True, slots=True)
class LoadSignal:
    """What one server's metrics page said at `at` (wall clock, epoch s); None where it did not say."""

    at: float
    waiting: float | None = None  # requests queued, not yet running
    running: float | None = None  # requests in the running batch
    kv_cache: float | None = None  # KV-cache use, 0..1
    max_running: float | None = None  # the server's concurrency cap, where published (NIM)
    source: str = ""  # which names matched: vllm, nim, tgi
    stale_after_s: float = 15.0  # older than this, scoring ignores it (three scrape intervals)

    def age(self, now: float) -> float:
        return max(0.0, now - self.at)

    def fresh(self, now: float) -> bool:
        return now - self.at <= self.stale_after_s

    def to_list(self) -> list[Any]:
        """The compact form RedisStore shares."""
        return [self.at, self.waiting, self.running, self.kv_cache, self.max_running, self.source,
                self.stale_after_s]  # fmt: skip

    @classmethod
    def from_list(cls, raw: Any) -> LoadSignal | None:
        """The shared form read back; None for anything malformed (another version's, or damaged)."""
        if not isinstance(raw, list) or len(raw) != 7:
            return None
        at, waiting, running, kv, cap, source, stale = raw
        numbers = (waiting, running, kv, cap)
        if not all(_number(x) for x in (at, stale)) or not all(x is None or _number(x) for x in numbers):
            return None
        return cls(float(at), waiting, running, kv, cap, str(source)[:16], float(stale))


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_load(text: str, at: float, *, stale_after_s: float = 15.0) -> LoadSignal | None:
    """The load gauges in a Prometheus text page: queues and batches summed over series (a server may
    label them per model or engine), KV-cache use the highest. None when the page has none of them; a
    ValueError when their lines do not parse."""
    kept: list[str] = []
    for line in text.splitlines():
        if _WANTED.match(line):
            kept.append(line)
            if len(kept) >= MAX_LINES:
                break
    if not kept:
        return None
    sums: dict[str, float] = {}
    sources: set[str] = set()
    for name, value in _samples("\n".join(kept) + "\n"):
        source, signal = SIGNALS[name]
        sources.add(source)
        prev = sums.get(signal)
        if signal == "kv_cache":
            sums[signal] = max(prev or 0.0, min(1.0, value))
        else:
            sums[signal] = (prev or 0.0) + value
    if not sums:
        return None
    return LoadSignal(
        at,
        sums.get("waiting"),
        sums.get("running"),
        sums.get("kv_cache"),
        sums.get("max_running"),
        ",".join(sorted(sources)),
        stale_after_s,
    )


def _samples(text: str) -> list[tuple[str, float]]:
    """(gauge name, value) of each usable sample: finite, not negative, not absurd."""
    out: list[tuple[str, float]] = []
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in SIGNALS:
                continue
            for sample in family.samples:
                value = float(sample.value)
                if sample.name == family.name and math.isfinite(value) and 0 <= value <= _MAX_VALUE:
                    out.append((family.name, value))
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # the parser's ways of saying "malformed"
        raise ValueError(f"malformed metrics page: {str(exc)[:80]}") from None
    return out


class LoadSink(Protocol):
    """Where scrapes go: the telemetry store."""

    def set_load(self, backend: str, signal: LoadSignal) -> None: ...


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    backend: str
    url: str
    interval_s: float


class ScrapeFailed(Exception):
    """Why one scrape gave nothing (counted, logged at debug, never raised further)."""


class LoadScraper:
    """One background task per backend with a `metrics_url`; `configure` follows policy reloads."""

    def __init__(
        self,
        sink: LoadSink,
        *,
        max_bytes: int = 2 * 1024 * 1024,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        on_result: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._sink = sink
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._clock = clock
        self._transport = transport
        self._on_result = on_result  # (backend, ok): the metrics' counter
        self._client: httpx.AsyncClient | None = None
        self._targets: dict[str, ScrapeTarget] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.failures: dict[str, int] = {}  # per backend, since start
        self.last_error: dict[str, str] = {}  # per backend: why its last failed scrape failed
        self.scrapes: dict[str, int] = {}  # successful ones, per backend

    def configure(self, targets: list[ScrapeTarget]) -> None:
        """The backends to scrape now; unchanged ones keep their task (and rhythm)."""
        wanted = {t.backend: t for t in targets}
        for name in [n for n, t in self._targets.items() if wanted.get(n) != t]:
            self._targets.pop(name)
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
        for name, target in wanted.items():
            if name not in self._targets:
                self._targets[name] = target
                if self._client is not None:
                    self._spawn(target)

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=self._timeout_s,
            follow_redirects=False,
            trust_env=False,  # the URL is the policy's: no proxy from the environment
            headers={"accept": "text/plain", "accept-encoding": "identity"},
        )
        for target in self._targets.values():
            self._spawn(target)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _spawn(self, target: ScrapeTarget) -> None:
        self._tasks[target.backend] = asyncio.create_task(self._run(target), name=f"scrape-{target.backend}")

    async def _run(self, target: ScrapeTarget) -> None:
        while True:
            await self.scrape(target)
            await asyncio.sleep(target.interval_s)

    async def scrape(self, target: ScrapeTarget) -> LoadSignal | None:
        """One scrape into the sink; a failure of any kind is counted and None returned."""
        try:
            async with asyncio.timeout(self._timeout_s):
                text = await self._fetch(target.url)
            signal = parse_load(text, self._clock(), stale_after_s=3 * target.interval_s)
            if signal is None:
                raise ScrapeFailed("no load gauge on the page")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a scrape never fails anything but itself
            self.failures[target.backend] = self.failures.get(target.backend, 0) + 1
            self.last_error[target.backend] = why = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.debug("load scrape of %s failed: %s", target.backend, why)
            if self._on_result is not None:
                self._on_result(target.backend, False)
            return None
        self.scrapes[target.backend] = self.scrapes.get(target.backend, 0) + 1
        self._sink.set_load(target.backend, signal)
        if self._on_result is not None:
            self._on_result(target.backend, True)
        return signal

    async def _fetch(self, url: str) -> str:
        assert self._client is not None, "start() first"
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ScrapeFailed(f"status {response.status_code}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise ScrapeFailed(f"content-encoding {encoding[:20]!r} (asked for identity)")
            body = bytearray()
            # Identity only (checked above), so these are the bytes as sent: nothing is decompressed.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise ScrapeFailed(f"page larger than {self._max_bytes} bytes")
        return body.decode("utf-8", "replace")


def scrape_targets(backends: Mapping[str, Any]) -> list[ScrapeTarget]:
    """The policy's backends that publish a metrics page."""
    return [
        ScrapeTarget(name, b.metrics_url, b.metrics_interval_s)
        for name, b in backends.items()
        if b.metrics_url is not None
    ]
