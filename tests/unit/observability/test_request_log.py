"""The sampled request log: shapes only by default, its sample rate, and its size-bounded rotation."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from gateway.events import RequestRecord
from gateway.observability.requestlog import RequestLog, request_log_from
from gateway.settings import Settings


def _record(i: int) -> RequestRecord:
    req = RequestRecord(f"r{i}", "chat", "/v1/chat/completions", model="m", input_tokens=40, output_tokens=7)
    req.body = {"model": "m", "messages": [{"role": "user", "content": "secret words"}], "max_tokens": 7,
                "tools": [{"type": "function"}], "user": "alice"}  # fmt: skip
    return req


def test_shapes_without_text_at_the_sample_rate(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "r.jsonl", 0.1, 10_000_000, 1)
    log._random = random.Random(5).random  # deterministic draws, same rate
    for i in range(2000):
        log.request_finished(_record(i))
    log.close()
    lines = (tmp_path / "r.jsonl").read_bytes().splitlines()
    assert 140 <= len(lines) <= 260  # 10% of 2000, with a wide margin for the draw
    doc = orjson.loads(lines[0])
    assert doc["message_count"] == 1 and doc["input_tokens"] == 40 and doc["max_tokens"] == 7
    assert b"secret" not in b"".join(lines) and "tools" not in doc and "user" not in doc


def test_prompts_only_when_enabled(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "r.jsonl", 1.0, 10_000_000, 1, prompts=True)
    record = _record(0)
    log.request_finished(record)
    log.close()
    assert record.body is None  # finished records may be kept (dashboard): their bodies are not
    assert orjson.loads((tmp_path / "r.jsonl").read_bytes())["messages"][0]["content"] == "secret words"


def test_rotation_bounds_the_files(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "r.jsonl", 1.0, 2000, 2)
    for i in range(200):
        log.request_finished(_record(i))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)


def test_off_unless_a_path_is_set(tmp_path: Path) -> None:
    assert request_log_from(Settings()) is None
    assert request_log_from(Settings(request_log=tmp_path / "x.jsonl", request_log_sample=0)) is None
    log = request_log_from(Settings(request_log=tmp_path / "x.jsonl"))
    assert log is not None
    log.close()
