"""Vertex end to end over real sockets: the openai SDK -> the gateway -> the simulator playing Vertex AI's URL
layout and OAuth token endpoint, with a service account generated here (its own RSA key) whose token_uri is
the simulator. Chat, streams, tools, 429 -> failover, 401 -> a renewed token, tokens renewed before expiry."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from gateway.sim import Profile, SimThread, VertexProfile
from tests.conftest import free_port
from tests.integration.conftest import GatewayThread

PROJECT, LOCATION = "routeway-test", "us-central1"
MODEL_ID = "meta/llama-3.3-70b-instruct-maas"
EMAIL = f"routeway-test@{PROJECT}.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
CHAT_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/openapi/chat/completions"
FIRST = {"provider": {"order": ["vertex-tpu", "other"]}}  # OpenRouter's field: vertex tried first
MSG = [{"role": "user", "content": "Hello"}]


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def account_info(key: rsa.RSAPrivateKey, token_uri: str, email: str = EMAIL) -> dict[str, Any]:
    """A service-account key file as the Cloud console writes one."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def vsims(key: rsa.RSAPrivateKey) -> Iterator[SimThread]:
    vertex = VertexProfile(PROJECT, LOCATION, trusted_keys=((EMAIL, public_pem(key)),))
    profiles = [
        Profile(name="vertex", hardware="google-tpu-v5e", models=[MODEL_ID], ttft_ms=2, tokens_per_s=20000,
                vertex=vertex),
        Profile(name="other", hardware="nvidia-h100", models=["up-other"], ttft_ms=2, tokens_per_s=20000),
    ]  # fmt: skip
    with SimThread(profiles) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def _reset(vsims: SimThread) -> Iterator[None]:
    yield
    vsims.reset()
    tokens(vsims, ttl_s=3600)


def tokens(sims: SimThread, **change: Any) -> dict[str, Any]:
    url = sims.servers["vertex"].root + "/sim/tokens"
    answer = httpx.post(url, json=change, timeout=5) if change else httpx.get(url, timeout=5)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def token_uri(sims: SimThread) -> str:
    return sims.servers["vertex"].root + "/token"


def policy(sims: SimThread) -> dict[str, Any]:
    return {
        "backends": {
            "vertex-tpu": {
                "provider": "vertex",
                "project": PROJECT,
                "location": LOCATION,
                "base_url": sims.servers["vertex"].root,
                "hardware": "google-tpu-v5e",
                "models": {"chat": {"id": MODEL_ID, "input_price": 0.1, "output_price": 0.1}},
            },
            "other": {
                "provider": "openai",
                "base_url": sims.urls["other"],
                "hardware": "nvidia-h100",
                "models": {"chat": {"id": "up-other", "input_price": 1.0, "output_price": 1.0}},
            },
        },
        "routes": [{"name": "r", "objective": "cheapest", "probe_interval_s": 0}],
    }


def gateway(sims: SimThread, key: rsa.RSAPrivateKey, work: Path) -> GatewayThread:
    work.mkdir(parents=True, exist_ok=True)
    account = work / "service-account.json"
    account.write_text(json.dumps(account_info(key, token_uri(sims))))
    return GatewayThread(policy(sims), work, reload_policies=False, google_application_credentials=account)


@pytest.fixture(scope="module")
def gw(
    vsims: SimThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayThread]:
    with gateway(vsims, key, tmp_path_factory.mktemp("vertex")) as g:
        yield g


def test_chat_and_stream_go_over_vertex_with_one_token(gw: GatewayThread, vsims: SimThread) -> None:
    issued = tokens(vsims)["issued"]
    client = gw.client()
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
    assert raw.headers["x-routeway-backend"] == "vertex-tpu"
    assert raw.parse().choices[0].message.content
    stream = client.chat.completions.create(model="chat", messages=MSG, max_tokens=5, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    seen = vsims.stats("vertex")
    assert [a["path"] for a in seen["arrivals"]] == [CHAT_PATH, CHAT_PATH]
    assert seen["last_body"]["model"] == MODEL_ID
    assert seen["last_headers"]["authorization"].startswith("Bearer ya29.sim-")
    assert tokens(vsims)["issued"] == issued  # fetched at start, never per request
    assert not any(k.startswith("x-ratelimit") for k in seen["last_headers"])


def test_tools_pass_through_unchanged(gw: GatewayThread, vsims: SimThread) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]
                },
            },
        }
    ]  # fmt: skip
    choice = {"type": "function", "function": {"name": "get_current_weather"}}
    answer = gw.client().chat.completions.create(
        model="chat",
        messages=MSG,
        tools=tools,
        tool_choice=choice,  # type: ignore[arg-type]
    )
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "get_current_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments), dict)  # type: ignore[union-attr]
    sent = vsims.stats("vertex")["last_body"]
    assert (sent["tools"], sent["tool_choice"]) == (tools, choice)


def test_a_429_fails_over_and_its_retry_info_cools_the_backend(
    vsims: SimThread, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    vsims.control("vertex", rate_limit_rate=1.0, retry_after_s=30)
    with gateway(vsims, key, tmp_path) as g:
        client = g.client()
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, extra_body=FIRST)  # type: ignore[arg-type]
        assert raw.headers["x-routeway-backend"] == "other"
        assert vsims.stats("vertex")["status_counts"] == {"429": 1}
        # The wait came from the body's google.rpc.RetryInfo (Vertex sends no Retry-After): 30 s. Without it
        # the cooldown would be the default 1 s and the next request would try vertex again.
        time.sleep(1.5)
        again = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, extra_body=FIRST)  # type: ignore[arg-type]
        assert again.headers["x-routeway-backend"] == "other"
        assert vsims.stats("vertex")["total_requests"] == 1


def test_a_401_renews_the_token_and_vertex_serves_again(
    vsims: SimThread, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    with gateway(vsims, key, tmp_path) as g:
        client = g.client()
        first = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, extra_body=FIRST)  # type: ignore[arg-type]
        assert first.headers["x-routeway-backend"] == "vertex-tpu"
        issued = tokens(vsims, revoke=True)["issued"]
        time.sleep(1.1)  # past the provider's MIN_RENEW_S since its fetch: a 401 now is about this token
        refused = client.chat.completions.with_raw_response.create(
            model="chat", messages=MSG, extra_body=FIRST
        )  # type: ignore[arg-type]
        assert refused.headers["x-routeway-backend"] == "other"  # the client never saw the 401
        deadline = time.monotonic() + 10
        while tokens(vsims)["issued"] == issued:
            assert time.monotonic() < deadline, "no token fetched after the 401"
            time.sleep(0.05)
        again = client.chat.completions.with_raw_response.create(model="chat", messages=MSG, extra_body=FIRST)  # type: ignore[arg-type]
        assert again.headers["x-routeway-backend"] == "vertex-tpu"
        assert vsims.stats("vertex")["status_counts"] == {"200": 2, "401": 1}


def test_short_lived_tokens_are_renewed_before_they_expire(
    vsims: SimThread, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    tokens(vsims, ttl_s=3)
    with gateway(vsims, key, tmp_path) as g:
        client = g.client()
        issued = tokens(vsims)["issued"]
        used: set[str] = set()
        end = time.monotonic() + 7.5  # two and a half lifetimes
        while time.monotonic() < end:
            raw = client.chat.completions.with_raw_response.create(
                model="chat",
                messages=MSG,
                max_tokens=2,
                extra_body=FIRST,  # type: ignore[arg-type]
            )
            assert raw.headers["x-routeway-backend"] == "vertex-tpu"
            used.add(vsims.stats("vertex")["last_headers"]["authorization"])
            time.sleep(0.2)
        assert "401" not in vsims.stats("vertex")["status_counts"]  # no request ever carried an expired one
        assert tokens(vsims)["issued"] - issued >= 2 and len(used) >= 3


def _google_credentials(info: dict[str, Any]) -> service_account.Credentials:
    creds: service_account.Credentials = service_account.Credentials.from_service_account_info(
        info, scopes=[CLOUD_PLATFORM]
    )
    return creds


def test_the_token_endpoint_takes_only_jwts_signed_by_a_trusted_key(
    vsims: SimThread, key: rsa.RSAPrivateKey
) -> None:
    request = google.auth.transport.requests.Request()
    good = _google_credentials(account_info(key, token_uri(vsims)))
    good.refresh(request)
    chat = httpx.post(
        vsims.servers["vertex"].root + CHAT_PATH,
        json={"model": MODEL_ID, "messages": MSG, "max_tokens": 2},
        headers={"authorization": f"Bearer {good.token}"},
        timeout=5,
    )
    assert chat.status_code == 200, chat.text
    rejected = tokens(vsims)["rejected_grants"]
    stranger = f"stranger@{PROJECT}.iam.gserviceaccount.com"
    for info in (
        account_info(new_key(), token_uri(vsims)),  # the right email, another key
        account_info(new_key(), token_uri(vsims), email=stranger),  # an account it does not trust
    ):
        with pytest.raises(google.auth.exceptions.RefreshError):
            _google_credentials(info).refresh(request)
    # A payload changed after signing: the signature no longer verifies.
    signed = good._make_authorization_grant_assertion()
    head, claims, sig = (signed.decode() if isinstance(signed, bytes) else signed).split(".")
    doc = orjson.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    doc["scope"] = CLOUD_PLATFORM + " https://www.googleapis.com/auth/admin"
    forged = base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": f"{head}.{forged}.{sig}",
    }
    answer = httpx.post(token_uri(vsims), data=grant, timeout=5)
    assert answer.status_code == 400 and answer.json()["error_description"] == "Invalid JWT Signature."
    assert tokens(vsims)["rejected_grants"] == rejected + 3


def test_vertex_errors_are_googles_shape(vsims: SimThread) -> None:
    no_token = httpx.post(vsims.servers["vertex"].root + CHAT_PATH, json={"model": MODEL_ID, "messages": MSG})
    assert no_token.status_code == 401
    assert no_token.json()["error"]["status"] == "UNAUTHENTICATED"


def test_a_minted_service_account_works_with_google_auth(vsims: SimThread) -> None:
    info = httpx.post(vsims.servers["vertex"].root + "/sim/service-account", timeout=10).json()
    assert info["token_uri"] == token_uri(vsims) and info["client_email"].endswith(".iam.gserviceaccount.com")
    creds = _google_credentials(info)
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token and creds.token.startswith("ya29.sim-")


def test_the_sim_command_writes_a_service_account_its_vertex_side_trusts(tmp_path: Path) -> None:
    """What the compose stack does: `routeway sim --service-account FILE` for a gateway elsewhere."""
    port, account = free_port(), tmp_path / "vertex-sa.json"
    args = ["sim", "--profile", "tpu-v5e", "--port", str(port), "--service-account", str(account)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args, "--token-host", "localhost"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not account.exists():  # written whole, then renamed into place
            assert proc.poll() is None and time.monotonic() < deadline, "no service account written"
            time.sleep(0.05)
        assert account.stat().st_mode & 0o077 == 0  # a private key: the owner's only
        info = json.loads(account.read_text())
        assert info["token_uri"] == f"http://localhost:{port}/token"
        creds = _google_credentials(info)
        creds.refresh(google.auth.transport.requests.Request())
        demo_path = "/v1/projects/routeway-demo/locations/us-central1/endpoints/openapi/chat/completions"
        chat = httpx.post(
            f"http://127.0.0.1:{port}{demo_path}",
            json={"model": "meta/llama-3.3-70b-instruct-maas", "messages": MSG, "max_tokens": 2},
            headers={"authorization": f"Bearer {creds.token}"},
            timeout=10,
        )
        assert chat.status_code == 200, chat.text
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=15)
    assert f"vertex service account in {account}" in stdout
