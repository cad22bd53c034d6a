"""GoogleCredentials on google-auth-like credentials: one fetch at a time off the loop, the token read from
memory while fresh, renewed when it is not or when a 401 says so; the token never printed."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

from gateway.providers.base import ProviderError, UpstreamRequest
from gateway.providers.credentials import Renewable, providers_for
from gateway.providers.google import credentials as gc
from gateway.providers.google.credentials import GoogleCredentials, refresh_in, usable_for
from gateway.secret import Secret


class FakeCreds:
    """google.auth.credentials.Credentials as GoogleCredentials uses them: refresh(request) sets token and
    expiry (naive UTC). `gate`, when set, holds each refresh until released (fetches in flight)."""

    def __init__(self, lifetime_s: float = 3600, quota: str | None = None, fail: bool = False) -> None:
        self.lifetime_s = lifetime_s
        self.quota_project_id = quota
        self.fail = fail
        self.calls = 0
        self.gate: threading.Event | None = None
        self.token: str | None = None
        self.expiry: datetime | None = None

    def refresh(self, request: Any) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls += 1
        if self.fail:
            raise OSError("token endpoint down")
        self.token = f"ya29.token-{self.calls}"
        self.expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=self.lifetime_s)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(creds: FakeCreds, clock: Clock, **kw: Any) -> GoogleCredentials:
    return GoogleCredentials("vx", lambda: creds, clock=clock, **kw)  # type: ignore[arg-type, return-value]


def request() -> UpstreamRequest:
    return UpstreamRequest("POST", "https://x/chat/completions", {}, b"{}")


@pytest.mark.parametrize(
    ("lifetime", "renew_at", "usable"),
    [(3600, 3300, 3570), (600, 450, 570), (4, 3, 3.6), (0, 0, 0)],
)
def test_renewal_comes_before_the_token_stops_being_sent(
    lifetime: float, renew_at: float, usable: float
) -> None:
    assert refresh_in(lifetime) == pytest.approx(renew_at)
    assert usable_for(lifetime) == pytest.approx(usable)
    assert refresh_in(lifetime) <= usable_for(lifetime)


def test_start_fetches_and_requests_read_the_token_from_memory() -> None:
    creds, clock = FakeCreds(quota="billing-project"), Clock()

    async def run() -> None:
        cred = provider(creds, clock)
        await cred.start()
        try:
            for _ in range(3):
                req = request()
                assert cred.authorize_now(req)
                assert req.headers == {
                    "authorization": "Bearer ya29.token-1",
                    "x-goog-user-project": "billing-project",
                }
            assert creds.calls == 1 and cred.fetches == 1
            secret = cred.secret
            assert secret is not None and secret.reveal() == "ya29.token-1"
            assert "ya29" not in repr(cred) and "ya29" not in f"{secret}"
        finally:
            await cred.close()

    asyncio.run(run())


def test_a_stale_token_is_renewed_once_for_every_waiting_request() -> None:
    creds, clock = FakeCreds(lifetime_s=100), Clock()

    async def run() -> None:
        cred = provider(creds, clock)
        await cred.start()
        clock.now += usable_for(100)  # no longer sent
        assert not cred.authorize_now(request())
        creds.gate = threading.Event()
        waiting = [asyncio.ensure_future(cred.authorize(request())) for _ in range(5)]
        for _ in range(10):  # every waiter reaches the fetch in flight
            await asyncio.sleep(0)
        creds.gate.set()
        done = await asyncio.gather(*waiting)
        assert {r.headers["authorization"] for r in done} == {"Bearer ya29.token-2"}
        assert creds.calls == 2  # one fetch for all five
        await cred.close()

    asyncio.run(run())


def test_a_401_drops_the_token_and_renews_it_unless_it_is_brand_new() -> None:
    creds, clock = FakeCreds(), Clock()

    async def run() -> None:
        cred = provider(creds, clock, min_renew_s=1.0)
        assert isinstance(cred, Renewable)
        await cred.start()
        cred.rejected()  # fetched just now: the 401 was for an older token
        assert cred.authorize_now(request())
        clock.now += 5
        cred.rejected()
        assert not cred.authorize_now(request())  # the refused token is not sent again
        req = await cred.authorize(request())
        assert req.headers["authorization"] == "Bearer ya29.token-2"
        assert creds.calls == 2
        await cred.close()

    asyncio.run(run())


def test_a_failing_fetch_never_raises_from_start_and_fails_requests_fast() -> None:
    creds, clock = FakeCreds(fail=True), Clock()

    async def run() -> None:
        cred = provider(creds, clock)
        await cred.start()  # serving begins; the loop retries
        calls = creds.calls
        with pytest.raises(ProviderError) as caught:
            await cred.authorize(request())
        assert caught.value.kind == "auth" and creds.calls == calls  # within the backoff: no new fetch
        clock.now += 60
        creds.fail = False
        req = await cred.authorize(request())
        assert req.headers["authorization"].startswith("Bearer ya29.token-")
        await cred.close()

    asyncio.run(run())


def test_the_loader_runs_once_in_the_worker_thread() -> None:
    creds, loads, threads = FakeCreds(), [], []

    def load() -> FakeCreds:
        loads.append(1)
        threads.append(threading.current_thread())
        return creds

    async def run() -> None:
        cred = GoogleCredentials("vx", load, clock=Clock())  # type: ignore[arg-type]
        await cred.start()
        await cred.refresh()
        await cred.close()

    asyncio.run(run())
    assert len(loads) == 1 and threads[0] is not threading.main_thread()
    assert creds.calls == 2


def test_each_backend_gets_its_kinds_credential(tmp_path: Any) -> None:
    from gateway.policy.model import Policy

    policy = Policy.model_validate(
        {
            "backends": {
                "vx": {"provider": "vertex", "project": "my-project", "location": "global",
                       "models": {"m": {"id": "x"}}},
                "o": {"provider": "openai", "base_url": "http://o/v1", "models": {"m": {"id": "y"}}},
                "ok": {"provider": "openai", "base_url": "http://o/v1", "api_key_env": "K",
                       "models": {"m": {"id": "y"}}},
                "br": {"provider": "bedrock", "region": "us-east-1", "models": {"m": {"id": "z"}}},
            }
        }
    )  # fmt: skip
    secrets = {"vx": None, "o": None, "ok": Secret("sk-test"), "br": None}
    built = providers_for(secrets, policy.backends, google_credentials=tmp_path / "sa.json")
    kinds = {name: type(provider).__name__ for name, provider in built.items()}
    assert kinds == {"vx": "GoogleCredentials", "ok": "StaticKey", "br": "SigV4Credentials"}
    assert isinstance(built["vx"], GoogleCredentials)


class _Adapter(requests.adapters.BaseAdapter):
    """Answers every request with `body` (gzip-encoded when asked), without a socket."""

    def __init__(self, body: bytes, gzip: bool = False) -> None:
        super().__init__()
        self.body, self.gzip = body, gzip

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        import gzip as gz

        data = gz.compress(self.body) if self.gzip else self.body
        headers = {"content-encoding": "gzip"} if self.gzip else {}
        raw = urllib3.HTTPResponse(io.BytesIO(data), headers=headers, status=200, preload_content=False)
        response = requests.Response()
        response.status_code, response.raw, response.url = 200, raw, request.url or ""
        response.request = request
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        return response

    def close(self) -> None: ...


@pytest.mark.parametrize("gzip", [False, True])
def test_token_endpoint_answers_are_bounded_even_decompressed(gzip: bool) -> None:
    session = gc._BoundedSession()
    assert session.trust_env is False
    session.mount("http://", _Adapter(b'{"access_token": "t", "expires_in": 3600}', gzip))
    assert session.post("http://token").json() == {"access_token": "t", "expires_in": 3600}
    session.mount("http://", _Adapter(b" " * (gc.MAX_TOKEN_RESPONSE_BYTES + 1), gzip))
    with pytest.raises(requests.exceptions.ContentDecodingError):
        session.post("http://token")


def test_a_service_account_file_loads_by_its_own_loader_without_a_call(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {"type": "service_account", "project_id": "p", "private_key_id": "k", "private_key": pem,
            "client_email": "a@p.iam.gserviceaccount.com", "token_uri": "http://127.0.0.1:1/t"}  # fmt: skip
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not google-auth's deprecated generic file loader
        creds = gc.adc_loader(path)()
    assert creds.token is None and creds.requires_scopes is False  # scoped, and nothing fetched yet
    assert getattr(creds, "service_account_email", None) == "a@p.iam.gserviceaccount.com"
    path.write_bytes(b" " * (gc.MAX_CREDENTIALS_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="larger than a credentials file"):
        gc.adc_loader(path)()


def test_token_endpoint_redirects_are_not_followed() -> None:
    sent: list[str] = []

    class Redirecting(_Adapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            sent.append(request.url or "")
            response = super().send(request, **kwargs)
            response.status_code, response.headers["location"] = 302, "http://elsewhere/steal"
            return response

    session = gc._BoundedSession()
    session.mount("http://", Redirecting(b"moved"))
    assert session.post("http://token", data={"assertion": "jwt"}).status_code == 302
    assert sent == ["http://token/"]
