"""require_admin: the admin key when set; otherwise loopback callers of an open gateway only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gateway.api.dashboard import require_admin
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.settings import Settings

KEY = "adm-123"


def rt(admin_key: str = "", client_keys: frozenset[str] = frozenset()) -> Any:
    return SimpleNamespace(settings=Settings(admin_key=admin_key), client_keys=client_keys)


@pytest.mark.parametrize("client", ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"])
def test_open_gateway_admits_loopback(client: str) -> None:
    require_admin(rt(), {}, client)


@pytest.mark.parametrize("client", ["10.0.0.7", "192.168.1.2", "::ffff:10.0.0.7", "", None, "testclient"])
def test_open_gateway_refuses_everyone_else(client: str | None) -> None:
    with pytest.raises(PermissionDenied, match="ROUTEWAY_ADMIN_KEY") as err:
        require_admin(rt(), {}, client)
    assert err.value.status == 403 and err.value.code == "permission_denied"


def test_client_keys_without_admin_key_refuse_even_loopback() -> None:
    with pytest.raises(PermissionDenied):
        require_admin(rt(client_keys=frozenset({"c"})), {"authorization": "Bearer c"}, "127.0.0.1")


def test_admin_key_is_the_only_way_in_once_set() -> None:
    require_admin(rt(KEY), {"authorization": f"Bearer {KEY}"}, "10.0.0.7")
    require_admin(rt(KEY), {"authorization": f"bearer  {KEY} "}, "10.0.0.7")
    for value in ("", f"Basic {KEY}", f"Bearer {KEY}4", "Bearer", "Bearer é-ключ"):
        with pytest.raises(AuthenticationFailed):
            require_admin(rt(KEY), {"authorization": value}, "127.0.0.1")  # loopback is not enough
