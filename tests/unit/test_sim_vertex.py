"""The simulator's JWT check for its token endpoint: what google-auth signs passes, each broken claim or
signature is named, and no input makes it raise."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sim.vertex import CLOUD_PLATFORM, GOOGLE_TOKEN_URI, check_assertion

EMAIL = "svc@routeway-test.iam.gserviceaccount.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = time.time()


def signed(key: rsa.RSAPrivateKey = KEY, **claims: Any) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    payload = {
        "iss": EMAIL,
        "aud": GOOGLE_TOKEN_URI,
        "scope": CLOUD_PLATFORM,
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }
    payload.update(claims)
    token: bytes = jwt.encode(
        crypt.RSASigner.from_string(pem.decode(), "kid"), payload
    )  # google-auth's signer
    return token.decode()


TRUSTED = {EMAIL: KEY.public_key()}
AUD = {GOOGLE_TOKEN_URI}


@pytest.mark.parametrize(
    ("jwt_text", "trusted", "problem"),
    [
        (signed(), TRUSTED, None),
        (signed(), {}, None),  # trusting no key: shape and issuer only
        (signed(OTHER), TRUSTED, "Invalid JWT Signature."),
        (signed(iss="stranger@routeway-test.iam.gserviceaccount.com"), TRUSTED, "account not found"),
        (signed(iss="someone@example.com"), {}, "not a service account"),
        (signed(aud="https://elsewhere/token"), TRUSTED, "short-lived"),
        (signed(exp=int(NOW) - 10, iat=int(NOW) - 100), TRUSTED, "short-lived"),
        (signed(exp=int(NOW) + 7200), TRUSTED, "short-lived"),
        (signed(scope="https://www.googleapis.com/auth/devstorage.read_only"), TRUSTED, "no scope"),
        ("a.b", TRUSTED, "not three segments"),
        ("e30.e30.", TRUSTED, "malformed"),
    ],
)
def test_the_token_endpoint_check(jwt_text: str, trusted: dict[str, Any], problem: str | None) -> None:
    found = check_assertion(jwt_text, trusted, AUD, NOW)
    assert found == problem if problem is None else (found is not None and problem in found)


def _segment(doc: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=300)
    | st.tuples(json_values, json_values, st.text(max_size=20)).map(
        lambda t: f"{_segment(t[0])}.{_segment(t[1])}.{t[2]}"
    )
)
def test_no_assertion_makes_it_raise(text: str) -> None:
    found = check_assertion(text, TRUSTED, AUD, NOW)
    assert found is None or isinstance(found, str)
    assert found is not None  # nothing random is signed by the trusted key
