"""SigV4: what the provider signs verifies when botocore recomputes it from what was received, a tampered
body or header does not; credentials come from the chain in a thread and are refreshed before expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials, ReadOnlyCredentials

from gateway.providers.aws.sigv4 import SigV4Credentials, sign
from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.settings import aws_credentials
from gateway.sim.profiles import DEMO_AWS_KEYS
from gateway.sim.sigv4 import SignatureError, verify

KEY_ID, SECRET = "AKIDEXAMPLE0000000001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
KEYS = {KEY_ID: SECRET}
URL = "http://127.0.0.1:9104/model/us.meta.llama3-3-70b-instruct-v1:0/converse"


def request(body: bytes = b'{"messages":[]}', url: str = URL) -> UpstreamRequest:
    headers = {"content-type": "application/json", "accept": "application/json", "traceparent": "00-ab-cd-01"}
    return UpstreamRequest("POST", url, headers, body)


def signed(token: str | None = None, **kw: Any) -> UpstreamRequest:
    req = request(**kw)
    sign(req, ReadOnlyCredentials(KEY_ID, SECRET, token), "bedrock", "us-east-1")
    return req


def received(req: UpstreamRequest, **changes: Any) -> dict[str, Any]:
    """What a server sees: the headers sent plus Host, the raw URL, the body bytes."""
    headers = {**req.headers, "Host": "127.0.0.1:9104", "Content-Length": str(len(req.body))}
    return {"method": req.method, "url": req.url, "headers": headers, "body": req.body, **changes}


def test_a_signed_request_verifies_and_names_its_scope() -> None:
    req = signed()
    verify(**received(req), keys=KEYS, service="bedrock")
    auth = req.headers["authorization"]
    assert (
        auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
        and "/us-east-1/bedrock/aws4_request" in auth
    )
    assert "SignedHeaders=accept;content-type;host;x-amz-date," in auth  # botocore leaves traceparent out
    assert SECRET not in repr(req.headers)


def test_a_session_token_is_sent_and_signed() -> None:
    req = signed(token="FwoGZXIvYXdzEXAMPLETOKEN")
    assert req.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
    assert "x-amz-security-token" in req.headers["authorization"]
    verify(**received(req), keys=KEYS, service="bedrock")


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"body": b'{"messages":[1]}'}, "InvalidSignatureException"),
        ({"url": URL.replace("converse", "converse-stream")}, "InvalidSignatureException"),
        ({"method": "PUT"}, "InvalidSignatureException"),
    ],
)
def test_tampering_does_not_verify(change: dict[str, Any], error_type: str) -> None:
    with pytest.raises(SignatureError) as err:
        verify(**received(signed(), **change), keys=KEYS, service="bedrock")
    assert err.value.error_type == error_type


def test_a_tampered_signed_header_does_not_verify() -> None:
    seen = received(signed())
    seen["headers"]["accept"] = "text/html"
    with pytest.raises(SignatureError, match="does not match"):
        verify(**seen, keys=KEYS, service="bedrock")


def test_unknown_keys_other_services_stale_and_unsigned_requests_are_refused() -> None:
    seen = received(signed())
    with pytest.raises(SignatureError) as err:
        verify(**seen, keys={"AKIDOTHER": SECRET}, service="bedrock")
    assert err.value.error_type == "UnrecognizedClientException"
    with pytest.raises(SignatureError, match="scoped to service"):
        verify(**seen, keys=KEYS, service="sagemaker")
    with pytest.raises(SignatureError, match="expired"):
        verify(**seen, keys=KEYS, service="bedrock", now=datetime.now(UTC) + timedelta(minutes=6))
    with pytest.raises(SignatureError) as err:
        verify(**received(request()), keys=KEYS, service="bedrock")
    assert err.value.error_type == "MissingAuthenticationTokenException"


def sync(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Runs an async test on a fresh loop (the suite has no async plugin)."""

    def test() -> None:
        asyncio.run(fn())

    test.__name__ = fn.__name__
    return test


class FakeChain:
    """What botocore's chain returns: Credentials, refreshable ones with an `_expiry_time`."""

    def __init__(self, expiry_in_s: float | None = None) -> None:
        self.calls = 0
        self.fetches = 0
        self.expiry_in_s = expiry_in_s

    def load(self) -> Any:
        self.calls += 1
        return self

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        self.fetches += 1
        return ReadOnlyCredentials(KEY_ID, SECRET + str(self.fetches), None)

    @property
    def _expiry_time(self) -> datetime | None:
        if self.expiry_in_s is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.expiry_in_s)


@sync
async def test_keys_without_expiry_are_fetched_once_and_sign_on_the_fast_path() -> None:
    chain = FakeChain()
    cred = SigV4Credentials("bedrock", "us-east-1", chain.load)
    assert not cred.authorize_now(request())  # nothing fetched yet: the slow path
    await cred.start()
    try:
        req = request()
        assert cred.authorize_now(req) and "authorization" in req.headers
        assert chain.calls == 1 and chain.fetches == 1 and cred.next_refresh_in() is None
        assert cred.secret is not None and cred.secret.reveal() == SECRET + "1"
        assert SECRET not in repr(cred)
    finally:
        await cred.close()


@sync
async def test_expiring_credentials_are_refreshed_ahead_and_stale_ones_take_the_slow_path() -> None:
    now = [1_000_000.0]
    chain = FakeChain(expiry_in_s=3600)
    cred = SigV4Credentials("sagemaker", "us-west-2", chain.load, clock=lambda: now[0])
    await cred.refresh()
    expiry = chain._expiry_time
    assert expiry is not None
    # Refresh 14 minutes before expiry; the fast path stops 5 minutes before it.
    assert cred.next_refresh_in() == pytest.approx(expiry.timestamp() - 14 * 60 - now[0], abs=2)
    now[0] = expiry.timestamp() - 4 * 60
    assert not cred.authorize_now(request())
    req = await cred.authorize(request())
    assert chain.fetches == 2 and "Credential=" in req.headers["authorization"]


@sync
async def test_the_background_task_refreshes_before_expiry() -> None:
    chain = FakeChain(expiry_in_s=14 * 60 + 0.05)  # due almost at once
    cred = SigV4Credentials("bedrock", "us-east-1", chain.load)
    await cred.start()
    try:
        for _ in range(100):
            if chain.fetches >= 2:
                break
            await asyncio.sleep(0.02)
        assert chain.fetches >= 2
    finally:
        await cred.close()


@sync
async def test_no_credentials_in_the_chain_is_an_auth_failure() -> None:
    cred = SigV4Credentials("bedrock", "us-east-1", lambda: None)
    await cred.start()
    try:
        with pytest.raises(ProviderError) as err:
            await cred.authorize(request())
        assert err.value.kind == "auth"
    finally:
        await cred.close()


def test_real_botocore_credentials_sign_too() -> None:
    req = request()
    sign(req, Credentials(KEY_ID, SECRET).get_frozen_credentials(), "sagemaker", "eu-west-1")
    verify(**received(req), keys=KEYS, service="sagemaker")


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment where the chain finds nothing: no keys, no files, no metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return tmp_path


def test_the_standard_chain_reads_the_environment_then_a_shared_profile(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws_credentials() is None
    (no_aws / "credentials").write_text(
        f"[team-a]\naws_access_key_id = AKIDPROFILE000000001\naws_secret_access_key = {SECRET}\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "team-a")
    assert aws_credentials().get_frozen_credentials().access_key == "AKIDPROFILE000000001"
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TOKEN")
    frozen = aws_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (KEY_ID, SECRET, "TOKEN")


@sync
async def test_the_provider_signs_with_what_the_chain_found() -> None:
    cred = SigV4Credentials("bedrock", "us-east-1")  # the real chain: the suite's demo keys are in the env
    await cred.start()
    try:
        req = request()
        assert cred.authorize_now(req)
        verify(**received(req), keys=dict([DEMO_AWS_KEYS]), service="bedrock")
    finally:
        await cred.close()
