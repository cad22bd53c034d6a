"""Fixtures written from AWS's published examples (tests/fixtures/bedrock, tests/fixtures/sagemaker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[3] / "fixtures"


def load(provider: str, name: str) -> Any:
    return orjson.loads((ROOT / provider / name).read_bytes())


def raw(provider: str, name: str) -> bytes:
    return (ROOT / provider / name).read_bytes()


async def no_reads() -> AsyncIterator[bytes]:
    """The chunks of a stream the test feeds by hand (`UpstreamStream.feed`): never read."""
    return
    yield b""
