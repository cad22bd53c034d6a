"""Load signals from self-hosted servers' Prometheus pages: parsing (real pages and hostile ones), the
scraper's bounds and failure counting, and the store's sharing rule (newest per backend)."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sim.metrics_page import metrics_page
from gateway.sim.profiles import Profile
from gateway.sim.state import SimState
from gateway.telemetry import MemoryStore, RedisStore
from gateway.telemetry.loadsignals import LoadScraper, LoadSignal, ScrapeTarget, parse_load

AT = 1_733_000_000.0

# As vLLM 0.6 (V0 engine) publishes them: gpu_cache_usage_perc, a model_name label, histograms around.
VLLM_V0 = """# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.875
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.0
vllm:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.5
"""
# vLLM V1: kv_cache_usage_perc, one series per engine (data parallel): queues add up, the cache is the max.
VLLM_V1 = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 4.0
vllm:num_requests_running{engine="1",model_name="m"} 6.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.4
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.7
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 12345.0
"""
# NVIDIA NIM for LLMs at /v1/metrics: the same gauges without a prefix, and the concurrency cap.
NIM = """# HELP num_requests_running Number of requests currently running on GPU.
# TYPE num_requests_running gauge
num_requests_running{model_name="meta/llama-3.1-8b-instruct"} 30.0
# HELP num_requests_waiting Number of requests waiting to be processed.
# TYPE num_requests_waiting gauge
num_requests_waiting{model_name="meta/llama-3.1-8b-instruct"} 0.0
# HELP num_request_max Max number of concurrently running requests.
# TYPE num_request_max gauge
num_request_max{model_name="meta/llama-3.1-8b-instruct"} 64.0
# HELP gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE gpu_cache_usage_perc gauge
gpu_cache_usage_perc{model_name="meta/llama-3.1-8b-instruct"} 0.25
"""
# Hugging Face TGI: unlabelled gauges; no KV-cache gauge.
TGI = """# TYPE tgi_queue_size gauge
tgi_queue_size 7
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 32
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 16000
# TYPE tgi_request_count counter
tgi_request_count 100
"""


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (VLLM_V0, LoadSignal(AT, 3.0, 12.0, 0.875, None, "vllm")),
        (VLLM_V1, LoadSignal(AT, 2.0, 10.0, 0.7, None, "vllm")),
        (NIM, LoadSignal(AT, 0.0, 30.0, 0.25, 64.0, "nim")),
        (TGI, LoadSignal(AT, 7.0, 32.0, None, None, "tgi")),
        ("# TYPE http_requests_total counter\nhttp_requests_total 5\n", None),
        ("", None),
    ],
    ids=["vllm-v0", "vllm-v1", "nim", "tgi", "no-load-gauges", "empty"],
)
def test_real_pages(page: str, expected: LoadSignal | None) -> None:
    assert parse_load(page, AT) == expected


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("vllm:num_requests_waiting NaN\nvllm:num_requests_running +Inf\n", None),
        (
            "vllm:num_requests_waiting -4\nvllm:num_requests_running 2\n",
            LoadSignal(AT, None, 2.0, source="vllm"),
        ),
        ("vllm:kv_cache_usage_perc 7.5\n", LoadSignal(AT, kv_cache=1.0, source="vllm")),  # clamped to full
        ("vllm:num_requests_waiting 1e300\n", None),  # beyond any real queue: ignored
        ("vllm:num_requests_waitingX 5\nxvllm:num_requests_waiting 5\n", None),  # only exact names
    ],
    ids=["non-finite", "negative", "kv-over-one", "absurd", "near-names"],
)
def test_hostile_values_are_ignored(page: str, expected: LoadSignal | None) -> None:
    assert parse_load(page, AT) == expected


def test_a_page_of_millions_of_series_is_cut_at_the_line_bound() -> None:
    page = "".join(f'vllm:num_requests_waiting{{engine="{i}"}} 1\n' for i in range(10_000))
    signal = parse_load(page, AT)
    assert signal is not None and signal.waiting == 4096  # MAX_LINES kept, the rest never parsed


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=400), st.sampled_from(["vllm:num_requests_waiting", "tgi_queue_size", "num_request_max"])
)
def test_any_text_is_a_signal_none_or_a_value_error(junk: str, name: str) -> None:
    for page in (junk, f"{name}{junk}\n", f"{name} {junk}\n", f"# TYPE {name} {junk}\n{name} 1\n"):
        try:
            signal = parse_load(page, AT)
        except ValueError:
            continue  # a malformed page: the scraper counts it as a failed scrape
        if signal is not None:
            for value in (signal.waiting, signal.running, signal.max_running):
                assert value is None or 0 <= value <= 1e9 * 4096
            assert signal.kv_cache is None or 0 <= signal.kv_cache <= 1


def test_the_simulators_page_reflects_its_in_flight_requests_and_forced_knobs() -> None:
    state = SimState(Profile(name="sim", hardware="nvidia-h100", models=["m"]))
    state.update_knobs({"max_running": 4})
    state.stats.in_flight = 6
    assert parse_load(metrics_page(state), AT) == LoadSignal(AT, 2.0, 4.0, 1.0, None, "vllm")
    state.stats.in_flight = 1
    assert parse_load(metrics_page(state), AT) == LoadSignal(AT, 0.0, 1.0, 0.25, None, "vllm")
    state.update_knobs({"force_waiting": 9, "force_kv_cache": 0.99})
    assert parse_load(metrics_page(state), AT) == LoadSignal(AT, 9.0, 1.0, 0.99, None, "vllm")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, LoadSignal]] = []

    def set_load(self, backend: str, signal: LoadSignal) -> None:
        self.got.append((backend, signal))


def _scraper(
    handler: httpx.MockTransport, sink: Sink, **kw: object
) -> tuple[LoadScraper, list[tuple[str, bool]]]:
    seen: list[tuple[str, bool]] = []
    scraper = LoadScraper(
        sink,
        transport=handler,
        clock=lambda: AT,
        on_result=lambda b, ok: seen.append((b, ok)),
        **kw,  # type: ignore[arg-type]
    )
    return scraper, seen


def _scrape(scraper: LoadScraper, target: ScrapeTarget, times: int = 1) -> list[LoadSignal | None]:
    async def go() -> list[LoadSignal | None]:
        await scraper.start()
        try:
            return [await scraper.scrape(target) for _ in range(times)]
        finally:
            await scraper.close()

    return asyncio.run(go())


TARGET = ScrapeTarget("local", "http://vllm:8000/metrics", 2.0)


@pytest.mark.parametrize(
    ("status", "content", "headers", "reason"),
    [
        (503, b"down", {}, "status 503"),
        (200, b"# nothing here\n", {}, "no load gauge"),
        (200, b"x" * 5000, {}, "larger than 4096 bytes"),
        (200, gzip.compress(VLLM_V0.encode()), {"content-encoding": "gzip"}, "content-encoding 'gzip'"),
        (200, b"vllm:num_requests_waiting{ 3\n", {}, "malformed metrics page"),
    ],
    ids=["5xx", "no-gauges", "too-big", "compressed-bomb-guard", "malformed"],
)
def test_failed_scrapes_are_counted_and_change_nothing(
    status: int, content: bytes, headers: dict[str, str], reason: str
) -> None:
    sink = Sink()
    answer = httpx.MockTransport(lambda request: httpx.Response(status, content=content, headers=headers))
    scraper, seen = _scraper(answer, sink, max_bytes=4096)
    assert _scrape(scraper, TARGET, times=2) == [None, None]
    assert sink.got == [] and scraper.failures == {"local": 2} and seen == [("local", False)] * 2
    assert reason in scraper.last_error["local"]


def test_a_transport_error_is_a_failed_scrape_too() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    scraper, _ = _scraper(httpx.MockTransport(refuse), Sink())
    assert _scrape(scraper, TARGET) == [None]
    assert scraper.failures == {"local": 1}


def test_a_good_scrape_reaches_the_sink_with_its_staleness_bound() -> None:
    asked: list[httpx.Request] = []

    def page(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, text=VLLM_V0)

    sink = Sink()
    scraper, seen = _scraper(httpx.MockTransport(page), sink)
    [signal] = _scrape(scraper, TARGET)
    assert signal == LoadSignal(AT, 3.0, 12.0, 0.875, None, "vllm", stale_after_s=6.0)
    assert sink.got == [("local", signal)] and seen == [("local", True)]
    assert asked[0].headers["accept-encoding"] == "identity"


def test_configure_follows_the_policy() -> None:
    hits: dict[str, int] = {}

    def page(request: httpx.Request) -> httpx.Response:
        hits[request.url.host] = hits.get(request.url.host, 0) + 1
        return httpx.Response(200, text=TGI)

    async def go() -> None:
        scraper, _ = _scraper(httpx.MockTransport(page), Sink())
        a, b = ScrapeTarget("a", "http://a/metrics", 60.0), ScrapeTarget("b", "http://b/metrics", 60.0)
        scraper.configure([a, b])
        await scraper.start()
        try:
            while len(hits) < 2:  # each task scrapes at once, then sleeps its interval
                await asyncio.sleep(0)
            task_a, task_b = scraper._tasks["a"], scraper._tasks["b"]
            scraper.configure([b, ScrapeTarget("c", "http://c/metrics", 60.0)])  # a removed, c added
            await asyncio.sleep(0)
            assert task_a.cancelled() and scraper._tasks["b"] is task_b and set(scraper._tasks) == {"b", "c"}
            while "c" not in hits:
                await asyncio.sleep(0)
        finally:
            await scraper.close()
        assert hits == {"a": 1, "b": 1, "c": 1}

    asyncio.run(go())


def test_the_memory_store_shows_the_latest_scrape_in_its_snapshot() -> None:
    store = MemoryStore(clock=lambda: AT)
    assert store.snapshot().loads == {}
    first = LoadSignal(AT - 1, 1.0, 2.0, 0.5)
    store.set_load("local", first)
    assert store.snapshot().loads == {"local": first}
    second = LoadSignal(AT, 0.0, 2.0, 0.3)
    store.set_load("local", second)
    assert store.snapshot().loads == {"local": second}


def test_replicas_share_loads_and_the_newest_scrape_wins() -> None:
    """RedisStore's blob round trip without a server: A's encoded blob absorbed by B."""
    a = RedisStore("redis://unused", replica_id="a", clock=lambda: AT)
    b = RedisStore("redis://unused", replica_id="b", clock=lambda: AT)
    a.set_load("local", LoadSignal(AT - 0.5, 5.0, 8.0, 0.97, None, "vllm"))
    a.set_load("other", LoadSignal(AT - 3.0, 0.0, 1.0, 0.1, None, "vllm"))
    b.set_load("other", LoadSignal(AT - 1.0, 2.0, 1.0, 0.2, None, "vllm"))
    b._absorb({b"a": a._encode(AT)}, {}, AT)
    loads = b.snapshot().loads
    assert loads["local"] == LoadSignal(AT - 0.5, 5.0, 8.0, 0.97, None, "vllm")  # A's scrape, seen by B
    assert loads["other"].at == AT - 1.0  # B's own is newer than A's
    damaged = orjson.dumps({"t": AT, "k": [], "l": {"x": [1, "two"], "y": "z"}})
    b._absorb({b"a": damaged}, {}, AT)  # another version's or a damaged blob: skipped, sharing goes on
    assert set(b.snapshot().loads) == {"other"}
