"""The telemetry store's key names (unchanged on one server, one hash slot on a Redis Cluster), and closing a
client."""

from __future__ import annotations

import asyncio

import pytest
from redis.crc import key_slot
from redis.exceptions import RedisError

from gateway.telemetry import redis_client
from gateway.telemetry.redis_client import store_keys

NAMES = ("replicas", "cooldowns")


def slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


def test_one_server_keeps_the_plain_names() -> None:
    assert store_keys("routeway:telemetry:v1", NAMES, cluster=False) == [
        "routeway:telemetry:v1:replicas",
        "routeway:telemetry:v1:cooldowns",
    ]


def test_a_cluster_wraps_a_prefix_without_a_tag_in_one() -> None:
    keys = store_keys("routeway:telemetry:v1", NAMES, cluster=True)
    assert keys == ["{routeway:telemetry:v1}:replicas", "{routeway:telemetry:v1}:cooldowns"]
    assert slots(keys) == {key_slot(b"routeway:telemetry:v1")}


@pytest.mark.parametrize("prefix", ["{routeway}:telemetry:v1", "prod:{rw}:t", "a{b}c{d}"])
def test_a_prefix_with_its_own_tag_is_kept(prefix: str) -> None:
    keys = store_keys(prefix, NAMES, cluster=True)
    assert keys == [f"{prefix}:replicas", f"{prefix}:cooldowns"] and len(slots(keys)) == 1


@pytest.mark.parametrize("prefix", ["x{}y", "open{brace", "plain"])
def test_odd_prefixes_still_land_in_one_slot(prefix: str) -> None:
    # An empty `{}` or an unclosed brace is no tag for Redis: the store adds its own.
    assert len(slots(store_keys(prefix, NAMES, cluster=True))) == 1


@pytest.mark.parametrize("prefix", ["}x", ""])
def test_a_prefix_that_cannot_share_a_slot_is_refused(prefix: str) -> None:
    # Wrapped, "}x" gives "{}x}:replicas": an empty tag, so Redis would hash each whole key apart.
    with pytest.raises(ValueError, match="one cluster slot"):
        store_keys(prefix, NAMES, cluster=True)


class _Stuck:
    """A client whose close never finishes, or fails: what a shutdown must not wait on or die of."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def aclose(self) -> None:
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()


@pytest.mark.parametrize("error", [None, ConnectionError("reset"), RedisError("gone")])
def test_closing_a_client_is_bounded_and_never_raises(
    error: Exception | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_client, "CLOSE_S", 0.01)

    async def go() -> bool:
        close = asyncio.create_task(redis_client.close(_Stuck(error)))  # type: ignore[arg-type]
        done, _ = await asyncio.wait({close}, timeout=5)
        return close in done and close.exception() is None

    assert asyncio.run(go())
