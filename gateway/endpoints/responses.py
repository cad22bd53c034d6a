"""POST /v1/responses: OpenAI's Responses API, served by any chat backend through gateway/frontdoors/.

Stateful: `begin` loads the conversation a `previous_response_id` names (its owner only) and binds this
call's translations to it; `commit` stores the answer (when `store` is not false) before its last bytes
go out, so the next turn, on any backend or replica, finds it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from gateway.endpoints.openai import estimate_chat
from gateway.endpoints.spec import Body, EndpointSpec
from gateway.errors import GatewayError
from gateway.frontdoors.conversations import Conversations, StoredResponse
from gateway.frontdoors.responses_output import ResponsesStreamEncoder, from_chat
from gateway.frontdoors.responses_request import Item, ResponsesCall, chat_body, read_request
from gateway.frontdoors.wire import secret_id

if TYPE_CHECKING:
    from gateway.access.principal import Principal
    from gateway.runtime import Runtime

log = logging.getLogger("routeway.responses")


def _validate(body: Body) -> None:
    read_request(body)


# Without `begin` (explaining a route): the call alone, no stored conversation, nothing stored.
def _to_backend(body: Body) -> Body:
    return chat_body(read_request(body), [])


def _from_backend(body: bytes, request: Body) -> bytes:
    answer = from_chat(read_request(request), secret_id("resp"), int(time.time()), orjson.loads(body))
    return orjson.dumps(answer)


def _encoder(request: Body) -> ResponsesStreamEncoder:
    return ResponsesStreamEncoder(read_request(request))


@dataclass(slots=True)
class _Call:
    """One call's state: the request read once, the conversation before it, the answer to store."""

    call: ResponsesCall
    history: list[Item]
    owner: str
    conversations: Conversations
    rid: str = field(default_factory=lambda: secret_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    response: dict[str, Any] | None = None
    encoder: ResponsesStreamEncoder | None = None

    def to_backend(self, body: Body) -> Body:
        return chat_body(self.call, self.history)

    def from_backend(self, body: bytes, request: Body) -> bytes:
        self.response = from_chat(self.call, self.rid, self.created_at, orjson.loads(body))
        return orjson.dumps(self.response)

    def stream_encoder(self, request: Body) -> ResponsesStreamEncoder:
        self.encoder = ResponsesStreamEncoder(self.call, self.rid, self.created_at)
        return self.encoder

    async def commit(self) -> None:
        response = self.response if self.encoder is None else self.encoder.response
        if response is None:
            return
        record = StoredResponse(self.owner, response, self.call.items, self.history)
        try:
            await self.conversations.save(record)
        except GatewayError as err:  # answered and billed: the client keeps its answer, the log says why
            log.warning("response %s not stored: %s", self.rid, err.message)


async def _begin(rt: Runtime, principal: Principal, body: Body) -> EndpointSpec:
    call = read_request(body)
    conversations = rt.conversations
    history: list[Item] = []
    if call.previous_response_id is not None:
        history = (await conversations.load(principal.label, call.previous_response_id)).context()
    if call.store:
        conversations.check_size(history, call.items)
    state = _Call(call, history, principal.label, conversations)
    return replace(
        RESPONSES,
        begin=None,
        to_backend=state.to_backend,
        from_backend=state.from_backend,
        stream_encoder=state.stream_encoder,
        commit=state.commit if call.store else None,
    )


RESPONSES = EndpointSpec(
    path="/v1/responses",
    operation="chat",
    genai_operation="chat",
    model_type="chat",
    validate=_validate,
    estimate=estimate_chat,
    to_backend=_to_backend,
    from_backend=_from_backend,
    stream_encoder=_encoder,
    begin=_begin,
)
