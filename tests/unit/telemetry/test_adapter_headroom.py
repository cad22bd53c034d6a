"""Rate-limit headroom comes from the adapter that knows its provider's headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from gateway.events import AttemptRecord, RequestRecord
from gateway.providers import registry
from gateway.providers.openai_compat import OpenAICompatAdapter
from gateway.resilience.cooldown import MAX_WAIT_S
from gateway.telemetry import MemoryStore, TelemetryRecorder
from gateway.telemetry.headroom import Headroom
from tests.unit.targets import target


class OwnHeaders(OpenAICompatAdapter):
    """A provider that reports its limits in headers of its own (as Bedrock does)."""

    def headroom(self, headers: Mapping[str, str] | None) -> Headroom | None:
        left = (headers or {}).get("x-own-requests-left")
        return Headroom(requests_remaining=int(left)) if left is not None else None


def test_openai_compat_adapter_parses_x_ratelimit() -> None:
    room = OpenAICompatAdapter().headroom(
        {"x-ratelimit-remaining-requests": "7", "x-ratelimit-limit-requests": "10", "retry-after": "2"}
    )
    assert room == Headroom(requests_remaining=7, requests_limit=10, retry_after_s=2.0)
    assert OpenAICompatAdapter().headroom({"content-type": "application/json"}) is None


def test_the_recorder_asks_the_targets_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._KINDS, "own", registry.Kind(OwnHeaders()))
    store = MemoryStore()
    recorder = TelemetryRecorder(store)
    req = RequestRecord("r", "chat", "/x")
    own = replace(target(backend="own"), provider="own")
    headers = {"x-own-requests-left": "3", "x-ratelimit-remaining-requests": "99"}
    recorder.attempt_finished(req, AttemptRecord(own, 1, outcome="ok", headers=headers))
    stats = store.snapshot()[("own", own.model_id)]
    assert stats.headroom == Headroom(requests_remaining=3)  # its own header, not x-ratelimit-*


def test_an_upstreams_retry_after_is_bounded_by_the_cooldown_rule() -> None:
    """Regression: a Retry-After of a billion seconds made the store (and, through Redis, every replica)
    treat the backend as saturated for thirty years; the recorder now follows `cooldown.wait_s`."""
    store = MemoryStore(clock=lambda: 100.0)
    recorder = TelemetryRecorder(store)
    req = RequestRecord("r", "chat", "/x")
    t = target(backend="a")
    att = AttemptRecord(t, 1, outcome="rate_limited", status=429, headers={"retry-after": "1000000000"})
    recorder.attempt_finished(req, att)
    retry_at = store.snapshot()[("a", t.model_id)].retry_at
    assert retry_at is not None and retry_at <= 100.0 + MAX_WAIT_S
