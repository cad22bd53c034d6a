"""The ASGI front's pure parts: a body read under a limit, headers, request ids (scripted receive)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.api.bodies import BodyBudget, BodyReader
from gateway.api.front import _headers
from gateway.api.relay import ClientGone
from gateway.errors import PayloadTooLarge
from gateway.events import RequestIds

Message = dict[str, object]


def receiver(messages: list[Message]) -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        return messages.pop(0)

    return receive


def read(messages: list[Message], limit: int = 100, declared: str | None = None) -> bytes | bytearray:
    headers = {"content-length": declared} if declared is not None else {}
    reader = BodyReader(receiver(messages), headers, limit, BodyBudget(limit))  # type: ignore[arg-type]
    return asyncio.run(reader.read())


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


def test_one_message_body() -> None:
    assert read([body(b'{"a": 1}')]) == b'{"a": 1}'


def test_body_in_many_messages_is_joined() -> None:
    assert read([body(b"ab", True), body(b"", True), body(b"cd")]) == b"abcd"


def test_declared_length_over_the_limit_is_refused_unread() -> None:
    messages = [body(b"x")]
    with pytest.raises(PayloadTooLarge):
        read(messages, limit=10, declared="11")
    assert messages == [body(b"x")]  # nothing was received


def test_streamed_body_over_the_limit_is_refused_while_reading() -> None:
    with pytest.raises(PayloadTooLarge):
        read([body(b"x" * 6, True), body(b"x" * 6, True), body(b"never read")], limit=10)
    with pytest.raises(PayloadTooLarge):
        read([body(b"x" * 11)], limit=10)


def test_disconnect_before_the_body_ended() -> None:
    with pytest.raises(ClientGone):
        read([body(b"ab", True), {"type": "http.disconnect"}])
    with pytest.raises(ClientGone):
        read([{"type": "http.disconnect"}])


def test_headers_decoded_and_the_first_of_repeated_names_wins() -> None:
    scope = {
        "headers": [(b"x-request-id", b"one"), (b"authorization", b"Bearer k"), (b"x-request-id", b"two")]
    }
    assert _headers(scope) == {"x-request-id": "one", "authorization": "Bearer k"}


def test_request_id_from_the_client_when_printable_else_generated_and_unique() -> None:
    request_id = RequestIds().take  # the runtime's source (was a module-level counter in api/relay.py)
    assert request_id({"x-request-id": "abc-1"}) == "abc-1"
    assert request_id({"x-request-id": "x" * 500}) == "x" * 128
    made = {request_id({"x-request-id": "bad\nid"}) for _ in range(1000)} | {
        request_id({}) for _ in range(1000)
    }
    assert len(made) == 2000
    assert all(len(r) == 24 and int(r, 16) >= 0 for r in made)
