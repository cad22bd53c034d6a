"""Spans that cannot be exported are counted on /metrics, and requests never wait for the collector."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import GatewayThread, default_policy

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def dropped(gw: GatewayThread) -> dict[str, float]:
    text = httpx.get(f"{gw.root}/metrics", timeout=10).text
    return {
        s.labels["reason"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "routeway_trace_spans_dropped_total"
    }


def test_unreachable_collector_counts_failed_exports(sims: SimThread, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with GatewayThread(
        default_policy(sims),
        tmp_path,
        reload_policies=False,
        otel_exporter_otlp_endpoint=closed,
        otel_bsp_schedule_delay_ms=20,
    ) as gw:
        with gw.client() as client:
            for _ in range(4):
                client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        deadline = time.monotonic() + 10
        while dropped(gw).get("export_failed", 0) < 12:  # three spans a request
            assert time.monotonic() < deadline, dropped(gw)
            time.sleep(0.05)
        assert dropped(gw)["export_failed"] == 12 and dropped(gw).get("queue_full", 0) == 0


def test_stuck_collector_fills_the_queue_and_requests_do_not_wait(sims: SimThread, tmp_path: Path) -> None:
    """A collector that accepts connections and never answers: the queue fills, the rest is dropped."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:  # closed by the test
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        with GatewayThread(
            default_policy(sims),
            tmp_path,
            reload_policies=False,
            otel_exporter_otlp_endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}",
            otel_exporter_otlp_timeout_ms=30_000,
            otel_bsp_schedule_delay_ms=20,
            otel_bsp_max_queue_size=6,
            otel_bsp_max_export_batch_size=3,
        ) as gw:
            started = time.monotonic()
            with httpx.Client(timeout=10) as c:
                for _ in range(20):
                    assert c.post(f"{gw.base_url}/chat/completions", json=CHAT).status_code == 200
            assert time.monotonic() - started < 10  # the stuck export never held a request
            counts = dropped(gw)
            # 60 spans: one batch of 3 stuck in the export, 6 queued, the rest dropped as they came.
            assert counts["queue_full"] >= 60 - 3 - 6 - 3, counts
            stop.set()  # the collector goes away: the stuck export fails and shutdown is quick
            for s in held:
                s.close()
            listener.close()
    finally:
        stop.set()
        for s in held:
            s.close()
        listener.close()
