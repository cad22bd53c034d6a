"""Client and admin key checks: status, error type and constant-time comparison inputs."""

from __future__ import annotations

import pytest

from gateway.access.principal import ADMIN, ANONYMOUS, Keys, Principal, bearer
from gateway.access.principal import admin as check_admin
from gateway.access.principal import client as check_client
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.settings import Settings

CLIENT = Keys.from_settings(Settings(api_keys="rw-c1,rw-c2", admin_key="rw-admin"))


def auth(value: str) -> dict[str, str]:
    return {"authorization": value}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic rw-c1",
        "Bearer rw-c1x",
        "Bearer rw-c\xe9",  # a non-ASCII byte, as the server decodes it (latin-1)
        "Bearer rw-\x00c1",
        "Bearer \u2603",
    ],
)
def test_odd_or_wrong_client_headers_are_401(value: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        check_client(CLIENT, auth(value))
    assert info.value.status == 401 and info.value.code == "invalid_api_key"


def test_client_keys_accepted_any_case_scheme_and_padding() -> None:
    check_client(CLIENT, auth("Bearer rw-c1"))
    check_client(CLIENT, auth("bearer   rw-c2 "))
    with pytest.raises(AuthenticationFailed):
        check_client(CLIENT, auth("Bearer rw-admin"))  # the admin key is not a client key


def test_no_client_keys_means_no_client_check() -> None:
    check_client(Keys.from_settings(Settings()), {})


def test_bearer_returns_bytes_only_for_printable_ascii() -> None:
    assert bearer(auth("Bearer abc")) == b"abc"
    assert bearer(auth("Bearer ab\xffc")) is None
    assert bearer({}) is None


def test_admin_key_passes_and_client_key_is_403() -> None:
    check_admin(CLIENT, auth("Bearer rw-admin"))
    with pytest.raises(PermissionDenied) as info:
        check_admin(CLIENT, auth("Bearer rw-c2"))
    assert info.value.status == 403 and info.value.code == "permission_denied"
    for value in ("", "Bearer nope", "Bearer rw-adm\xefn"):
        with pytest.raises(AuthenticationFailed):
            check_admin(CLIENT, auth(value))


def test_without_admin_key_admin_is_open_only_on_open_loopback() -> None:
    check_admin(Keys.from_settings(Settings(host="127.0.0.1")), {})
    check_admin(Keys.from_settings(Settings(host="::1")), {})
    for settings in (Settings(api_keys="rw-c1"), Settings(host="0.0.0.0", allow_open=True)):
        keys = Keys.from_settings(settings)
        with pytest.raises(PermissionDenied) as info:
            check_admin(keys, auth("Bearer rw-c1"))
        assert "ROUTEWAY_ADMIN_KEY" in info.value.message


def test_admin_key_without_client_keys_is_still_required() -> None:
    keys = Keys.from_settings(Settings(admin_key="rw-admin"))
    check_client(keys, {})
    with pytest.raises(AuthenticationFailed):
        check_admin(keys, {})
    check_admin(keys, auth("Bearer rw-admin"))


def test_a_client_key_resolves_to_its_position_never_to_the_key() -> None:
    keys = Keys.from_settings(Settings(api_keys=" rw-c2 , rw-c1,rw-c2", admin_key="rw-admin"))
    assert check_client(keys, auth("Bearer rw-c2")) == Principal("client", "key-1")
    assert check_client(keys, auth("Bearer rw-c1")) == Principal("client", "key-2")
    assert all("rw-" not in p.label for p in keys.principals) and len(keys.principals) == 2
    assert "rw-" not in repr(keys)


def test_open_gateway_is_anonymous_and_the_admin_key_is_admin() -> None:
    assert check_client(Keys.from_settings(Settings()), {}) is ANONYMOUS
    assert check_admin(Keys.from_settings(Settings(host="127.0.0.1")), {}) is ANONYMOUS
    assert check_admin(CLIENT, auth("Bearer rw-admin")) is ADMIN


def test_a_client_key_may_come_in_x_api_key() -> None:
    """Anthropic's SDKs send the key as `x-api-key`; Authorization wins when both are present."""
    keys = Keys.from_settings(Settings(api_keys="one,two"))
    assert check_client(keys, {"x-api-key": "two"}).label == "key-2"
    assert check_client(keys, {"authorization": "Bearer one", "x-api-key": "two"}).label == "key-1"
    with pytest.raises(AuthenticationFailed):
        check_client(keys, {"x-api-key": "three"})
    with pytest.raises(AuthenticationFailed):  # the admin key only ever in Authorization
        check_admin(Keys.from_settings(Settings(api_keys="one", admin_key="adm")), {"x-api-key": "adm"})
