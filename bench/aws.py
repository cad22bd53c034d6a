"""What the AWS front doors cost the gateway per request and per streamed token, in process: SigV4 signing
with botocore (one per attempt), event-stream decoding (one per ConverseStream frame) and the Converse
translation of one delta, next to the SSE decoder on the same content. Run: `.venv/bin/python -m bench.aws`.
"""

from __future__ import annotations

import timeit

import orjson
from botocore.credentials import ReadOnlyCredentials

from gateway.providers.aws.bedrock import BedrockAdapter
from gateway.providers.aws.eventstream import EventStreamDecoder, event
from gateway.providers.aws.sigv4 import sign
from gateway.providers.base import StreamEvent, Target, UpstreamRequest
from gateway.providers.sse import SSEDecoder

URL = "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.meta.llama3-3-70b-instruct-v1:0/converse"
BODY = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "hello " * 200}]}]})
CREDS = ReadOnlyCredentials("AKIDEXAMPLE0000000001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
DELTA = b'{"contentBlockIndex":0,"delta":{"text":" fox"},"p":"abcdefghijkl"}'
CHUNK = orjson.dumps(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": " fox"}, "finish_reason": None}],
    }
)
FRAMES = 1000


def best_us(fn: object, number: int, per: int = 1) -> float:
    """The best of five runs, in microseconds per item: the least disturbed by other processes."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number / per * 1e6  # type: ignore[arg-type]


def sign_one() -> None:
    headers = {"content-type": "application/json", "accept": "application/json", "traceparent": "00-ab-cd-01"}
    sign(UpstreamRequest("POST", URL, headers, BODY), CREDS, "bedrock", "us-east-1")


def main() -> None:
    frames = event("contentBlockDelta", DELTA) * FRAMES
    sse = (b"data: " + CHUNK + b"\n\n") * FRAMES
    target = Target("b", "bedrock", "http://b", "m", "m", {}, None, 0, 0, None, None, None)
    translator = BedrockAdapter().stream_translator("chat", target)
    translator.translate(StreamEvent(b"{}", "messageStart"))
    delta = StreamEvent(DELTA, "contentBlockDelta")
    rows = [
        ("SigV4 sign (botocore, 1.2 KB body)", best_us(sign_one, 2000), "attempt"),
        (
            "event-stream decode",
            best_us(lambda: EventStreamDecoder(1 << 20).feed(frames), 20, FRAMES),
            "frame",
        ),
        (
            "SSE decode (same chunk, for scale)",
            best_us(lambda: SSEDecoder(1 << 20).feed(sse), 20, FRAMES),
            "event",
        ),
        ("ConverseStream delta -> chunk", best_us(lambda: translator.translate(delta), 20000), "delta"),
    ]
    for what, us, per in rows:
        print(f"{what:<38} {us:8.2f} us per {per}")


if __name__ == "__main__":
    main()
