"""The `--synthetic` spec: a comma-separated list of `key=value` items (grammar in `parse_spec`)."""

from __future__ import annotations

import re
from dataclasses import dataclass


class SpecError(ValueError):
    """A spec that does not follow the grammar; the message says which item and why."""


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive range of token counts, drawn uniformly."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    prompt: Span
    output: Span
    seed: int = 0


_ITEM = re.compile(r"\s*([a-z_]+)\s*=\s*(\d{1,9})(?:\s*-\s*(\d{1,9}))?\s*")
_KEYS = ("prompt", "output", "seed")
MAX_TOKENS = 1_000_000  # a larger prompt or output is a typo, not a workload


def parse_spec(text: str) -> SyntheticSpec:
    """Parses `prompt=A[-B],output=C[-D][,seed=N]`: token counts, a range drawn uniformly or one value.

    Both `prompt` and `output` are required, each once; counts are 1..1,000,000 and `low <= high`;
    `seed` (default 0) makes the mix reproducible."""
    found: dict[str, tuple[int, int]] = {}
    for raw in text.split(","):
        match = _ITEM.fullmatch(raw)
        if match is None:
            raise SpecError(f"{raw.strip()!r} is not key=N or key=N-M")
        key, low, high = match.group(1), int(match.group(2)), match.group(3)
        if key not in _KEYS:
            raise SpecError(f"unknown key {key!r}; known: {', '.join(_KEYS)}")
        if key in found:
            raise SpecError(f"{key!r} is given twice")
        found[key] = (low, int(high) if high is not None else low)
    for key in ("prompt", "output"):
        if key not in found:
            raise SpecError(f"{key!r} is missing (e.g. prompt=200-2000,output=50-500)")
    seed = found.pop("seed", (0, 0))
    if seed[0] != seed[1]:
        raise SpecError("'seed' takes one value, not a range")
    return SyntheticSpec(_span("prompt", *found["prompt"]), _span("output", *found["output"]), seed[0])


def _span(key: str, low: int, high: int) -> Span:
    if not 1 <= low <= high <= MAX_TOKENS:
        raise SpecError(f"{key}={low}-{high}: need 1 <= low <= high <= {MAX_TOKENS:,}")
    return Span(low, high)
