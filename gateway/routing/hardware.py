"""The hardware catalog: energy per output token by hardware label, from the shipped policies/catalog.yaml.

One table, kept with its sources in the catalog's `hardware:` section (gateway/policy/catalog.yaml is a link
to it, so the wheel carries it). A policy may add labels or override a figure in its own `hardware:`
section, and a backend may declare `joules_per_token`; both win over this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import yaml

from gateway.policy.model import HardwareSpec

SHIPPED_CATALOG = Path(__file__).resolve().parent.parent / "policy" / "catalog.yaml"
UNKNOWN_JOULES_PER_TOKEN = 1.5  # unknown hardware ranks after every known one


def _load(path: Path) -> Mapping[str, float]:
    """The `hardware:` section of the shipped catalog, as label -> joules per output token."""
    section = (yaml.safe_load(path.read_bytes()) or {}).get("hardware") or {}
    return MappingProxyType(
        {label: HardwareSpec.model_validate(spec).joules_per_token for label, spec in section.items()}
    )


# A constant table, read once: the shipped file is part of the installed package.
JOULES_PER_TOKEN: Mapping[str, float] = _load(SHIPPED_CATALOG)


def joules_per_token(hardware: str | None, declared: float | None) -> float:
    if declared is not None:
        return declared
    return JOULES_PER_TOKEN.get(hardware or "", UNKNOWN_JOULES_PER_TOKEN)
