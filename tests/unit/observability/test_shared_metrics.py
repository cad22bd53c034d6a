"""The shared metrics folder: live workers summed, dead ones folded (counters kept, gauges dropped)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import Metrics
from gateway.observability.shared_metrics import SharedMetricsDir, fresh_metrics_dir


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(m.render().decode())
        for s in f.samples
    }


def test_scrape_sums_live_files_and_folds_dead_ones(tmp_path: Path) -> None:
    gauges = frozenset({"routeway_requests_in_flight"})
    dead, other = SharedMetricsDir(tmp_path, gauges, _dead_pid()), SharedMetricsDir(tmp_path, gauges, 1)
    row = [1.0] + [0.0] * 15 + [0.004]  # one observation in the first bucket, then the sum
    dead.write(
        {
            "routeway_requests": [(["chat", "r", "m", "b", "200"], 3.0)],
            "routeway_requests_in_flight": [(["chat"], 2.0)],
            "routeway_request_duration_seconds": [(["chat", "r", "m", "false"], row)],
        }
    )
    other.write({"routeway_requests": [(["chat", "r", "m", "b", "200"], 4.0)]})  # pid 1: alive
    m = Metrics(None, tmp_path, 1.0)
    m.requests.add(("chat", "r", "m", "b", "200"), 5.0)
    m.in_flight.add(("chat",), 1.0)
    for _ in range(2):  # the second scrape reads the archive, not the (removed) dead worker's file
        got = _samples(m)
        key = (("backend", "b"), ("model", "m"), ("op", "chat"), ("route", "r"), ("status", "200"))
        assert got[("routeway_requests_total", key)] == 12.0
        assert got[("routeway_requests_in_flight", (("op", "chat"),))] == 1.0  # the dead worker's 2: gone
        hist = (("model", "m"), ("op", "chat"), ("route", "r"), ("stream", "false"))
        assert got[("routeway_request_duration_seconds_count", hist)] == 1.0
        assert not dead.path.exists() and (tmp_path / "dead-workers.json").exists()


def test_fresh_dir_empties_earlier_runs_and_removes_a_temporary_one(tmp_path: Path) -> None:
    (tmp_path / "worker-5.json").write_text("{}")
    (tmp_path / "dead-workers.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("not ours")
    with fresh_metrics_dir(tmp_path) as folder:
        assert folder == tmp_path and sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert tmp_path.exists()
    with fresh_metrics_dir(None) as made:
        assert made.is_dir()
    assert not made.exists()
