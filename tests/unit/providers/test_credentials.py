"""Credential providers: the authorize step runs last in every attempt, and a Secret never prints."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import pickle

import pytest

from gateway.events import AttemptRecord, Observer, Observers, RequestRecord
from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.providers.credentials import StaticKey, providers_for
from gateway.redact import REDACTED, scrub
from gateway.routing.router import Router
from gateway.secret import Secret
from tests.mock_transport import MockReply, backend_of, chat_doc, chunk_doc, sse
from tests.unit.routing.router_kit import Kit, body, catalog
from tests.unit.targets import target

KEY = "Zq7Ux3Wm9Kp2Lr5Tn8Vb4Yc6Hd1Jf0G"
SIGNING_KEY = b"test-signing-key"


def signature(req: UpstreamRequest) -> str:
    """What the signer signs: method, URL, every header but its own (sorted) and the body bytes."""
    headers = "\n".join(f"{k}:{v}" for k, v in sorted(req.headers.items()) if k != "x-signature")
    payload = f"{req.method}\n{req.url}\n{headers}\n".encode() + req.body
    return hmac.new(SIGNING_KEY, payload, hashlib.sha256).hexdigest()


class Signer:
    """A SigV4-like provider: always the slow path, signs the final request; counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0
        self.started = self.closed = False

    @property
    def secret(self) -> Secret:
        return Secret(SIGNING_KEY.decode())

    def authorize_now(self, request: UpstreamRequest) -> bool:
        return False

    async def authorize(self, request: UpstreamRequest) -> UpstreamRequest:
        self.calls += 1
        await asyncio.sleep(0)  # a real one would fetch or refresh: the attempt must await it
        if self.fail:
            raise OSError(f"token endpoint refused {KEY}")  # its text must not reach the error
        request.headers["x-signature"] = signature(request)
        return request

    async def start(self) -> None:
        self.started = True

    async def refresh(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


class Traceparent(Observer):
    """Adds a header at attempt_started, as the tracing observer does with `traceparent`."""

    def attempt_started(self, req: RequestRecord, att: AttemptRecord, headers: dict[str, str]) -> None:
        headers["traceparent"] = f"00-{att.number:032x}-{att.number:016x}-01"


def signed_kit(handler: object, signer: Signer, backends: str = "ab") -> Kit:
    kit = Kit(handler, catalog(backends, credentials={"a": signer}))  # type: ignore[arg-type]
    kit.router = Router(kit.transport, Observers([kit.ledger, Traceparent()]))
    return kit


def test_authorize_runs_last_and_signs_the_observers_headers_and_the_final_body() -> None:
    signer = Signer()
    kit = signed_kit(lambda req: MockReply(200, chat_doc()), signer)
    asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    [sent] = kit.transport.requests
    assert "traceparent" in sent.headers  # added by the observer before signing...
    assert sent.headers["x-signature"] == signature(sent)  # ...and covered by the signature
    assert signer.calls == 1 and kit.balanced()


def test_a_stream_is_signed_the_same_way() -> None:
    signer = Signer()
    steps = sse(chunk_doc("hi"), chunk_doc(None, usage=(3, 2)))
    kit = signed_kit(lambda req: MockReply(200, steps=steps), signer)

    async def run() -> None:
        opened = await kit.router.open_stream(kit.plan(body(stream=True)), body(stream=True), kit.req)
        opened.attempt.end_stream(True, None)

    asyncio.run(run())
    [sent] = kit.transport.requests
    assert sent.headers["x-signature"] == signature(sent) and "traceparent" in sent.headers


def test_a_provider_that_fails_fails_over_before_anything_is_sent() -> None:
    signer = Signer(fail=True)
    kit = signed_kit(lambda req: MockReply(200, chat_doc()), signer)
    done = asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    assert done.target.backend == "b"
    assert [backend_of(r) for r in kit.transport.requests] == ["b"]  # `a` was never called unsigned
    first = kit.req.attempts[0]
    assert first.outcome == "auth" and first.error is not None and KEY not in first.error
    assert kit.balanced()


def test_static_key_sets_one_header_on_the_fast_path() -> None:
    key = StaticKey(Secret(KEY))
    req = UpstreamRequest("POST", "http://x/v1/chat/completions", {"content-type": "application/json"}, b"{}")
    assert key.authorize_now(req) is True
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(key) and KEY not in str(key)


def test_the_backend_key_reaches_the_upstream_through_its_provider() -> None:
    cat = catalog("a", credentials=providers_for({"a": Secret(KEY)}))
    kit = Kit(lambda req: MockReply(200, chat_doc()), cat)
    asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    [sent] = kit.transport.requests
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_a_backend_without_a_key_sends_no_authorization() -> None:
    kit = Kit(lambda req: MockReply(200, chat_doc()), catalog("a"))
    asyncio.run(kit.router.complete(kit.plan(body()), body(), kit.req))
    assert "authorization" not in kit.transport.requests[0].headers


def test_providers_for_skips_backends_without_a_key() -> None:
    providers = providers_for({"a": Secret(KEY), "b": None})
    assert list(providers) == ["a"] and providers["a"].secret == Secret(KEY)


def test_secret_never_prints(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(KEY)
    t = target(api_key=KEY)
    assert secret.reveal() == KEY and bool(secret) and not Secret("")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr(t), str(t), repr(t.credential)):
        assert KEY not in text
    with caplog.at_level(logging.INFO):
        logging.getLogger("routeway.test").info("key %s target %r", secret, t, extra={"secret": secret})
    assert KEY not in caplog.text and all(KEY not in str(r.__dict__) for r in caplog.records)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_secrets_compare_by_value_whatever_their_characters() -> None:
    assert Secret("clé-1") == Secret("clé-1")  # compare_digest on str would raise for non-ASCII
    assert Secret("clé-1") != Secret("clé-2") and Secret("k") != "k"


def test_scrub_takes_a_secret() -> None:
    assert scrub(f"upstream said: bad key {KEY}", Secret(KEY)) == f"upstream said: bad key {REDACTED}"
    assert scrub(f"bad key {KEY}", target(api_key=KEY).api_key) == f"bad key {REDACTED}"


def test_provider_errors_from_the_adapter_are_scrubbed_with_the_target_secret() -> None:
    from gateway.providers.openai_compat import OpenAICompatAdapter

    err = OpenAICompatAdapter().parse_error(
        401, {}, f'{{"error": {{"message": "invalid key {KEY}"}}}}'.encode(), target(api_key=KEY)
    )
    assert isinstance(err, ProviderError) and KEY not in err.message and REDACTED in err.message


def test_runtime_lifecycle_starts_and_closes_providers() -> None:
    from gateway.providers.credentials import close_all, start_all

    signers = [Signer(), Signer()]

    async def run() -> None:
        await start_all(signers)
        await close_all(signers)

    asyncio.run(run())
    assert all(s.started and s.closed for s in signers)
