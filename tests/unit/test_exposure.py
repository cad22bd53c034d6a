"""The exposure rule: no client keys means loopback only, unless the operator allows an open relay."""

from __future__ import annotations

import pytest

from gateway.exposure import check_keys, decide, is_loopback, verdict_for
from gateway.settings import Settings


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.2", "::ffff:10.0.0.1", "example.com", "128.0.0.1"]
)
def test_other_addresses(host: str) -> None:
    assert not is_loopback(host)


def test_loopback_without_keys_serves_silently() -> None:
    assert decide("127.0.0.1", has_client_keys=False, allow_open=False) == decide("::1", False, True)
    verdict = decide("127.0.0.1", has_client_keys=False, allow_open=False)
    assert verdict.refusal is None and verdict.warning is None


def test_any_address_with_keys_serves_silently() -> None:
    verdict = decide("0.0.0.0", has_client_keys=True, allow_open=False)
    assert verdict.refusal is None and verdict.warning is None


def test_open_non_loopback_is_refused_with_one_line_naming_the_ways_out() -> None:
    verdict = decide("0.0.0.0", has_client_keys=False, allow_open=False)
    assert verdict.refusal is not None and verdict.warning is None
    assert "\n" not in verdict.refusal
    for fragment in ("0.0.0.0", "ROUTEWAY_API_KEYS", "--allow-open", "ROUTEWAY_ALLOW_OPEN"):
        assert fragment in verdict.refusal


def test_allowed_open_non_loopback_serves_with_a_warning() -> None:
    verdict = decide("10.1.2.3", has_client_keys=False, allow_open=True)
    assert verdict.refusal is None
    assert verdict.warning is not None and "10.1.2.3" in verdict.warning


def test_admin_key_must_not_be_a_client_key_and_is_never_quoted() -> None:
    problem = check_keys(frozenset({"rw-a", "rw-secret"}), "rw-secret")
    assert problem is not None and "ROUTEWAY_ADMIN_KEY" in problem and "rw-secret" not in problem
    assert check_keys(frozenset({"rw-a"}), "rw-admin") is None
    assert check_keys(frozenset(), "") is None


@pytest.mark.parametrize(("keys", "admin", "name"), [({"rw-é"}, "", "API_KEYS"), (set(), "a b", "ADMIN_KEY")])
def test_keys_a_header_cannot_carry_are_refused(keys: set[str], admin: str, name: str) -> None:
    problem = check_keys(frozenset(keys), admin)
    assert problem is not None and name in problem


def test_verdict_for_reads_the_settings() -> None:
    assert verdict_for(Settings(host="0.0.0.0")).refusal is not None
    assert verdict_for(Settings(host="0.0.0.0", allow_open=True)).warning is not None
    assert verdict_for(Settings(host="0.0.0.0", api_keys="k1, k2")) == verdict_for(Settings())
    assert verdict_for(Settings(api_keys="k1", admin_key="k1")).refusal is not None
