"""The vertex adapter through the router and the in-memory transport: URLs, the OpenAI body it sends,
answers and streams it reads, and Vertex's error bodies mapped to failure kinds (tests/fixtures/vertex/)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.endpoints import ENDPOINTS
from gateway.errors import UpstreamRejected
from gateway.events import Observers, RequestRecord
from gateway.policy.model import Policy, Resilience
from gateway.providers.base import UpstreamRequest
from gateway.providers.credentials import CredentialProvider, StaticKey
from gateway.providers.google.vertex import VertexAdapter, api_root
from gateway.resilience.health import Health
from gateway.routing.candidates import Catalog, build_catalog
from gateway.routing.router import Completed, OpenStream, Router
from gateway.secret import Secret
from tests.mock_transport import MockReply, MockTransport, chat_doc

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vertex"
TOKEN = "ya29.unit-test-token"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def policy(
    vertex: dict[str, Any] | None = None, model_id: str = "meta/llama-3.3-70b-instruct-maas"
) -> Policy:
    """`vx` (vertex, cheapest, so tried first) and `fallback` (OpenAI-compatible) both serve `m`."""
    keys = vertex or {"project": "my-project", "location": "us-central1"}
    return Policy.model_validate(
        {
            "backends": {
                "vx": {"provider": "vertex", **keys, "models": {"m": {"id": model_id, "input_price": 1}}},
                "fallback": {
                    "provider": "openai",
                    "base_url": "http://fallback/v1",
                    "models": {"m": {"id": "up-f", "input_price": 9}},
                },
            },
            "routes": [{"name": "r", "objective": "cheapest", "probe_interval_s": 0}],
        }
    )


class Rig:
    def __init__(self, handler: Any, cred: CredentialProvider | None = None, **vertex: Any) -> None:
        self.catalog: Catalog = build_catalog(
            policy(vertex or None), {"vx": cred or StaticKey(Secret(TOKEN))}
        )
        self.transport = MockTransport(handler)
        self.health = Health(Resilience())
        self.router = Router(self.transport, Observers([self.health]), self.health)
        self.req = RequestRecord("r1", "chat", "/v1/chat/completions")

    async def complete(self, body: dict[str, Any]) -> Completed:
        plan = self.router.plan(self.catalog, ENDPOINTS["/v1/chat/completions"], body, req=self.req)
        return await self.router.complete(plan, body, self.req)

    async def stream(self, body: dict[str, Any]) -> tuple[list[bytes], OpenStream]:
        plan = self.router.plan(self.catalog, ENDPOINTS["/v1/chat/completions"], body, req=self.req)
        opened = await self.router.open_stream(plan, body, self.req)
        chunks = list(opened.first)
        while not opened.upstream.done:
            chunks += await opened.upstream.read()
        opened.attempt.end_stream(True, opened.upstream.translator.usage)
        return chunks, opened


def vx_first(reply: MockReply) -> Any:
    def handler(req: UpstreamRequest) -> MockReply:
        return reply if "aiplatform" in req.url or "/v1/projects/" in req.url else MockReply(body=chat_doc())

    return handler


@pytest.mark.parametrize("case", fixture("urls.json"), ids=lambda c: c["name"])
def test_the_request_goes_to_the_endpoint_the_keys_name(case: dict[str, Any]) -> None:
    keys = {k: case[k] for k in ("project", "location", "endpoint", "base_url") if k in case}
    rig = Rig(lambda req: MockReply(body=chat_doc()), **keys)
    done = asyncio.run(rig.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert done.target.backend == "vx"
    assert [r.url for r in rig.transport.requests] == [case["url"]]
    expected_root = case["url"].removesuffix("/chat/completions")
    assert api_root(
        keys["project"], keys["location"], keys.get("endpoint", "openapi"), keys.get("base_url")
    ) == (expected_root)


def test_the_chat_body_is_openais_with_the_model_id_and_the_token() -> None:
    chat = fixture("chat.json")
    rig = Rig(lambda req: MockReply(body=chat["response"]))
    client_body = {**chat["request"], "model": "m"}
    done = asyncio.run(rig.complete(client_body))
    (sent,) = rig.transport.requests
    assert sent.method == "POST" and sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["content-type"] == "application/json"
    body = orjson.loads(sent.body)
    assert body == {**chat["request"], "model": chat["model_id"]}  # tools, tool_choice, sampling: as given
    answer = orjson.loads(done.parsed.body)
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_current_weather", "arguments": '{"location":"Boston, MA"}'}
    assert (done.parsed.usage.input_tokens, done.parsed.usage.output_tokens) == (205, 21)  # type: ignore[union-attr]


def test_a_stream_is_read_to_done_and_billed() -> None:
    chat = fixture("chat.json")
    steps = [s.encode() for s in chat["stream"]]
    rig = Rig(lambda req: MockReply(steps=steps))
    client_body = {"model": "m", "messages": chat["request"]["messages"], "stream": True}
    chunks, opened = asyncio.run(rig.stream(client_body))
    sent = orjson.loads(rig.transport.requests[0].body)
    assert sent["stream_options"] == {"include_usage": True}  # every stream is billed
    docs = [orjson.loads(c) for c in chunks]
    text = "".join(d["choices"][0]["delta"].get("content") or "" for d in docs if d["choices"])
    assert text == chat["stream_text"]
    usage = opened.upstream.translator.usage
    assert usage is not None and [usage.input_tokens, usage.output_tokens] == chat["stream_usage"]
    assert all("usage" not in d for d in docs)  # the client did not ask for it


@pytest.mark.parametrize("case", fixture("errors.json"), ids=lambda c: c["name"])
def test_vertex_errors_are_typed_and_fail_over_unless_the_clients(case: dict[str, Any]) -> None:
    raw = case["body_text"].encode() if "body_text" in case else orjson.dumps(case["body"])
    reply = MockReply(case["status"], raw, headers=case.get("headers"))
    rig = Rig(vx_first(reply), cred=StaticKey(Secret("ya29.sim-FIXTURE-TOKEN-do-not-leak")))
    client_body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if case["kind"] == "client":
        with pytest.raises(UpstreamRejected) as caught:
            asyncio.run(rig.complete(client_body))
        err = caught.value
        assert err.status == case["status"] and case["message"] in err.message
        assert err.param == case.get("param") and err.code == case.get("code")
    else:
        done = asyncio.run(rig.complete(client_body))
        assert done.target.backend == "fallback"
    first = rig.req.attempts[0]
    assert (first.target.backend, first.outcome, first.status) == ("vx", case["kind"], case["status"])
    assert first.retry_after == case["retry_after"]
    assert first.error is not None and case["message"] in first.error
    if "absent" in case:
        assert case["absent"] not in first.error


def test_parse_error_reads_only_the_bounded_details() -> None:
    details = [{"@type": "x"}] * 100 + [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}
    ]
    body = orjson.dumps(
        {"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED", "details": details}}
    )
    target = build_catalog(policy(), {}).targets["m"][0]
    err = VertexAdapter().parse_error(429, {}, body, target)
    assert err.kind == "rate_limited" and err.retry_after is None  # past the first 16 entries: not read


class Renewing:
    """A renewable credential (an OAuth token) that records each 401 it is told about."""

    def __init__(self) -> None:
        self.rejections = 0

    @property
    def secret(self) -> Secret:
        return Secret(TOKEN)

    def authorize_now(self, request: UpstreamRequest) -> bool:
        request.headers["authorization"] = f"Bearer {TOKEN}"
        return True

    async def authorize(self, request: UpstreamRequest) -> UpstreamRequest:
        self.authorize_now(request)
        return request

    async def start(self) -> None: ...

    async def refresh(self) -> None: ...

    async def close(self) -> None: ...

    def rejected(self) -> None:
        self.rejections += 1


def _status_reply(status: int, name: str) -> MockReply:
    return MockReply(status, {"error": {"code": status, "message": "no", "status": name}})


def test_a_401_renews_the_token_and_does_not_cool_the_backend_down() -> None:
    cred = Renewing()
    rig = Rig(vx_first(_status_reply(401, "UNAUTHENTICATED")), cred=cred)
    done = asyncio.run(rig.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert done.target.backend == "fallback" and cred.rejections == 1
    vx = rig.catalog.targets["m"][0]
    assert rig.health.blocked(vx) is None  # one failure on the breaker, not the long auth cooldown


def test_a_403_cools_the_backend_down_and_renews_nothing() -> None:
    cred = Renewing()
    rig = Rig(vx_first(_status_reply(403, "PERMISSION_DENIED")), cred=cred)
    asyncio.run(rig.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert cred.rejections == 0
    blocked = rig.health.blocked(rig.catalog.targets["m"][0])
    assert blocked is not None and "circuit open" in blocked[0]


def test_a_401_with_a_static_key_still_cools_the_backend_down() -> None:
    rig = Rig(vx_first(_status_reply(401, "UNAUTHENTICATED")))
    asyncio.run(rig.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert rig.health.blocked(rig.catalog.targets["m"][0]) is not None


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)
status_names = st.sampled_from(
    ["RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "INVALID_ARGUMENT", "NOT_FOUND", "X"]
)
details = st.lists(
    st.fixed_dictionaries(
        {
            "@type": st.sampled_from(
                ["type.googleapis.com/google.rpc.RetryInfo", "type.googleapis.com/google.rpc.BadRequest"]
            )
        },
        optional={"retryDelay": json_values | st.text(max_size=8), "fieldViolations": json_values},
    )
    | json_values,
    max_size=5,
)
google_errors = st.fixed_dictionaries(
    {},
    optional={
        "code": json_values,
        "message": json_values,
        "status": status_names | json_values,
        "details": details | json_values,
    },
)
error_docs = st.fixed_dictionaries({"error": google_errors})


@PROPS
@given(
    st.one_of(json_values, error_docs, st.lists(error_docs, max_size=2)).map(orjson.dumps)
    | st.binary(max_size=200),
    st.sampled_from([400, 401, 403, 404, 429, 500, 503, 504]),
)
def test_any_error_body_is_a_typed_error_with_a_bounded_message(body: bytes, status: int) -> None:
    target = build_catalog(policy(), {"vx": StaticKey(Secret(TOKEN))}).targets["m"][0]
    err = VertexAdapter().parse_error(status, {}, body, target)
    assert err.kind in ("rate_limited", "auth", "client", "context_length", "server", "timeout")
    assert len(err.message) <= 503 and TOKEN not in err.message
    assert err.retry_after is None or err.retry_after >= 0
    if status == 429:
        assert err.kind == "rate_limited"
