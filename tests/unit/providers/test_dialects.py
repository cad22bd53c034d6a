"""Each OpenAI-compatible dialect against fixtures written from its provider's documentation
(tests/fixtures/dialects/<name>.json): rate-limit headers, error bodies, request quirks, stream usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.providers.base import StreamEvent
from gateway.providers.dialects import DIALECTS, dialect
from gateway.providers.openai_compat import OpenAICompatAdapter
from gateway.providers.registry import adapter_for, dialects_of
from gateway.telemetry.headroom import Headroom
from tests.unit.targets import target

FIXTURES = Path(__file__).parents[2] / "fixtures" / "dialects"
DOCS = {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}
NOW = 1_733_000_000.0
T = target(model_id="provider-id", api_key="sk-dialect-secret")


def cases(section: str) -> list[Any]:
    return [
        pytest.param(name, case, id=f"{name}-{i}")
        for name, doc in DOCS.items()
        for i, case in enumerate(doc[section])
    ]


def test_every_dialect_has_a_fixture_citing_its_source() -> None:
    assert set(DOCS) == set(DIALECTS)
    for name, doc in DOCS.items():
        assert doc["dialect"] == name and doc["source"].strip()
        assert doc["headroom"] and doc["errors"] and doc["requests"]


@pytest.mark.parametrize(("name", "case"), cases("headroom"))
def test_rate_limit_headers(name: str, case: dict[str, Any]) -> None:
    got = dialect(name).rate_limits.parse(case["headers"], lambda: NOW)
    expected = None if case["expect"] is None else Headroom(**case["expect"])
    if expected is None or got is None:
        assert got == expected
        return
    for field in Headroom.__dataclass_fields__:
        want, have = getattr(expected, field), getattr(got, field)
        assert have == (pytest.approx(want) if isinstance(want, float) else want), field
    assert adapter_for("openai", name).headroom(case["headers"]) is not None


@pytest.mark.parametrize(("name", "case"), cases("errors"))
def test_error_bodies(name: str, case: dict[str, Any]) -> None:
    body = case["body"]
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    err = OpenAICompatAdapter(dialect(name)).parse_error(case["status"], case["headers"], raw, T)
    assert err.kind == case["kind"]
    assert err.status == case["status"] and err.backend == "b"
    assert err.message.startswith(case["message_starts"])
    assert err.retry_after == case.get("retry_after")


@pytest.mark.parametrize(("name", "case"), cases("requests"))
def test_request_quirks(name: str, case: dict[str, Any]) -> None:
    body = case["body"]
    before = orjson.dumps(body)
    req = OpenAICompatAdapter(dialect(name)).build_request(case["op"], body, T)
    assert orjson.loads(req.body) == case["sent"]
    assert orjson.dumps(body) == before  # the caller's body is reused on a retry elsewhere


@pytest.mark.parametrize(("name", "case"), cases("stream_usage"))
def test_stream_usage(name: str, case: dict[str, Any]) -> None:
    tr = OpenAICompatAdapter(dialect(name)).stream_translator("chat", T, show_usage=False)
    tr.translate(StreamEvent(orjson.dumps(case["chunk"])))
    assert tr.usage is not None
    assert [tr.usage.input_tokens, tr.usage.output_tokens] == case["usage"]


def test_the_default_dialect_is_openai_and_unknown_names_are_refused() -> None:
    assert dialect(None) is DIALECTS["openai"]
    assert dialects_of("openai") == sorted(DIALECTS) and dialects_of("bedrock") == []
    with pytest.raises(ValueError, match="unknown dialect 'nope'"):
        dialect("nope")
    with pytest.raises(ValueError, match="has no dialect 'nope'"):
        adapter_for("openai", "nope")


def test_a_dialect_without_stream_options_does_not_forward_the_clients() -> None:
    """TGI rejects no field it does not know, but does not honour stream_options either: not sent, so the
    stream is billed on the gateway's own count (test_stream_usage.py)."""
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    sent = orjson.loads(OpenAICompatAdapter(dialect("tgi")).build_request("chat", body, T).body)
    assert "stream_options" not in sent


def test_a_tgi_error_event_in_a_stream_is_a_typed_error() -> None:
    from gateway.providers.base import ProviderError

    tr = OpenAICompatAdapter(dialect("tgi")).stream_translator("chat", T)
    with pytest.raises(ProviderError) as info:
        tr.translate(
            StreamEvent(b'{"error": "Request failed during generation", "error_type": "generation"}')
        )
    assert info.value.kind == "server" and "failed during generation" in info.value.message


def test_error_texts_are_scrubbed_of_the_key_in_every_dialect() -> None:
    body = orjson.dumps({"error": {"message": "bad key sk-dialect-secret"}, "detail": "sk-dialect-secret"})
    for d in DIALECTS.values():
        err = OpenAICompatAdapter(d).parse_error(401, {}, body, T)
        assert "sk-dialect-secret" not in err.message and err.kind == "auth"
