"""SageMaker: the invoke routes and body, the container's answer, and its SSE bytes reassembled from
PayloadPart messages cut anywhere (as SageMaker cuts them), with stream exceptions."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.aws.eventstream import encode_message, exception
from gateway.providers.aws.sagemaker import SageMakerAdapter
from gateway.providers.base import ProviderError
from gateway.providers.stream import UpstreamStream
from tests.unit.providers.aws.fixtures import load, no_reads, raw
from tests.unit.targets import target

A = SageMakerAdapter()
T = target(
    provider="sagemaker",
    base_url="https://runtime.sagemaker.us-west-2.amazonaws.com",
    model_id="my-llama-8b-inf2",
)
PART = {":event-type": "PayloadPart", ":content-type": "application/octet-stream", ":message-type": "event"}
SSE = raw("sagemaker", "stream.sse")


def test_invoke_routes_and_the_container_body() -> None:
    body = {"model": "llama-8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    req = A.build_request("chat", body, T)
    assert (
        req.url == "https://runtime.sagemaker.us-west-2.amazonaws.com/endpoints/my-llama-8b-inf2/invocations"
    )
    assert orjson.loads(req.body) == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    stream = A.build_request("chat", {**body, "stream": True}, T)
    assert stream.url.endswith("/endpoints/my-llama-8b-inf2/invocations-response-stream")
    assert orjson.loads(stream.body)["stream_options"] == {"include_usage": True}  # every stream is billed
    with pytest.raises(ProviderError, match="chat only"):
        A.build_request("embeddings", {"input": "x"}, T)


def test_the_containers_answer_is_passed_on() -> None:
    case = load("sagemaker", "invoke_response.json")
    parsed = A.parse_response("chat", orjson.dumps(case["body"]), T)
    doc = orjson.loads(parsed.body)
    assert doc["choices"][0]["message"]["content"] == case["content"]
    assert (
        parsed.usage is not None and [parsed.usage.input_tokens, parsed.usage.output_tokens] == case["usage"]
    )


def parts(data: bytes, cuts: list[int]) -> bytes:
    bounds = [0, *cuts, len(data)]
    return b"".join(
        encode_message(PART, data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a
    )


def read(wire: bytes, show_usage: bool = True) -> tuple[str, UpstreamStream]:
    stream = UpstreamStream(
        no_reads(),
        A.stream_decoder("chat", T, max_event_bytes=1 << 20),
        A.stream_translator("chat", T, show_usage=show_usage),
    )
    chunks = stream.feed(wire)
    if not stream.done:
        chunks += stream.end()
    text = "".join(
        c["delta"].get("content") or "" for chunk in chunks for c in orjson.loads(chunk)["choices"]
    )
    return text, stream


def test_sse_cut_across_payload_parts_at_every_byte_is_read_whole() -> None:
    for cut in range(1, len(SSE)):
        text, stream = read(parts(SSE, [cut]))
        assert text == "Deep learning is neat." and stream.done
        assert stream.usage is not None and stream.usage.output_tokens == 4


def test_many_small_parts_fed_one_byte_at_a_time() -> None:
    wire = parts(SSE, list(range(5, len(SSE), 5)))
    stream = UpstreamStream(
        no_reads(), A.stream_decoder("chat", T, max_event_bytes=1 << 20), A.stream_translator("chat", T)
    )
    out: list[bytes] = []
    for i in range(len(wire)):
        if not stream.done:
            out += stream.feed(wire[i : i + 1])
    assert stream.done and len(out) == 4


@pytest.mark.parametrize(
    ("name", "kind"), [("ModelStreamError", "server"), ("InternalStreamFailure", "server")]
)
def test_stream_exceptions_fail_the_stream(name: str, kind: str) -> None:
    wire = parts(SSE[:200], []) + exception(name, b'{"Message":"the container stopped","ErrorCode":"500"}')
    with pytest.raises(ProviderError) as err:
        read(wire)
    assert err.value.kind == kind and "the container stopped" in err.value.message
