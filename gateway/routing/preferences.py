"""Per-request routing control: the x-routeway-objective header and OpenRouter's `provider` object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest
from gateway.policy.model import Route
from gateway.policy.quantization import OPENROUTER
from gateway.routing.scoring import Constraints

OBJECTIVES: frozenset[str] = frozenset({"cheapest", "fastest", "balanced", "greenest"})
# OpenRouter's provider.sort values, as our objectives.
_SORT = {"price": "cheapest", "throughput": "fastest", "latency": "fastest"}
_KEYS = frozenset({"sort", "order", "only", "ignore", "allow_fallbacks", "max_price", "quantizations"})
_MAX_QUANTIZATIONS = len(OPENROUTER)  # each value at most once


@dataclass(frozen=True, slots=True)
class Preferences:
    objective: str | None = None
    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    max_input_price: float | None = None
    max_output_price: float | None = None
    quantizations: frozenset[str] | None = None  # OpenRouter's values; None: no filter


def take_preferences(body: dict[str, Any], headers: Mapping[str, str]) -> Preferences:
    """Consumes the `provider` object from the body (it is never forwarded upstream) and reads the header."""
    header = headers.get("x-routeway-objective")
    if header is not None and header not in OBJECTIVES:
        raise BadRequest(
            f"x-routeway-objective must be one of {', '.join(sorted(OBJECTIVES))}",
            param="x-routeway-objective",
        )
    raw = body.pop("provider", None)
    if raw is None:  # most requests: none at all, one shared (frozen) value
        return _NO_PREFERENCES if header is None else Preferences(objective=header)
    if not isinstance(raw, dict):
        raise BadRequest("'provider' must be an object", param="provider")
    unknown = set(raw) - _KEYS
    if unknown:
        raise BadRequest(f"unknown key(s) in 'provider': {', '.join(sorted(unknown))}", param="provider")
    sort = raw.get("sort")
    if sort is not None and sort not in _SORT:
        raise BadRequest("'provider.sort' must be one of price, throughput, latency", param="provider.sort")
    fallbacks = raw.get("allow_fallbacks", True)
    if not isinstance(fallbacks, bool):
        raise BadRequest("'provider.allow_fallbacks' must be a boolean", param="provider.allow_fallbacks")
    prompt, completion = _max_price(raw.get("max_price"))
    only = _names(raw, "only")
    return Preferences(
        objective=header or (_SORT[sort] if sort else None),
        order=tuple(_names(raw, "order") or ()),
        only=frozenset(only) if only is not None else None,
        ignore=frozenset(_names(raw, "ignore") or ()),
        allow_fallbacks=fallbacks,
        max_input_price=prompt,
        max_output_price=completion,
        quantizations=_quantizations(raw.get("quantizations")),
    )


def _names(raw: dict[str, Any], key: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'provider.{key}' must be an array of backend names", param=f"provider.{key}")
    return value


def _quantizations(value: Any) -> frozenset[str] | None:
    """OpenRouter's `provider.quantizations`: an array of its precision names; empty or absent: no filter."""
    param = "provider.quantizations"
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > _MAX_QUANTIZATIONS:
        raise BadRequest(f"'{param}' must be an array of at most {_MAX_QUANTIZATIONS} strings", param=param)
    names: set[str] = set()
    for item in value:
        if not isinstance(item, str) or item.lower() not in OPENROUTER:
            shown = repr(item)[:40] if isinstance(item, str) else f"a {type(item).__name__}"
            raise BadRequest(f"'{param}' has {shown}; known: {', '.join(OPENROUTER)}", param=param)
        names.add(item.lower())
    return frozenset(names) or None


def _max_price(value: Any) -> tuple[float | None, float | None]:
    """OpenRouter's max_price is USD per 1M tokens: {"prompt": x, "completion": y}."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise BadRequest("'provider.max_price' must be an object", param="provider.max_price")
    out: list[float | None] = []
    for key in ("prompt", "completion"):
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
            raise BadRequest(
                f"'provider.max_price.{key}' must be a number >= 0", param=f"provider.max_price.{key}"
            )
        out.append(float(v) if v is not None else None)
    return out[0], out[1]


_NO_PREFERENCES = Preferences()


def route_constraints(route: Route) -> Constraints:
    """The route's own hard constraints; the catalog builds them once per route (it owns their lifetime)."""
    return _build(route, _NO_PREFERENCES)


def constraints_for(route: Route, prefs: Preferences, base: Constraints | None = None) -> Constraints:
    """The route's hard constraints tightened by the request's preferences; `base` (the route's own, built
    once by its catalog) is returned as is when the request has none."""
    if (
        prefs.only is None
        and not prefs.ignore
        and prefs.max_input_price is None
        and prefs.max_output_price is None
        and prefs.quantizations is None
    ):
        return base if base is not None else _build(route, _NO_PREFERENCES)
    return _build(route, prefs)


def _build(route: Route, prefs: Preferences) -> Constraints:
    precision = route.quantization
    return Constraints(
        max_ttft_ms=route.max_ttft_ms,
        min_tokens_per_s=route.min_tokens_per_s,
        max_input_price=_tighter(route.max_input_price, prefs.max_input_price),
        max_output_price=_tighter(route.max_output_price, prefs.max_output_price),
        hardware_allow=frozenset(route.hardware.allow) if route.hardware.allow is not None else None,
        hardware_deny=frozenset(route.hardware.deny),
        min_context_window=route.min_context_window,
        only=prefs.only,
        ignore=prefs.ignore,
        quantization_allow=frozenset(precision.allow) if precision.allow is not None else None,
        min_precision=precision.min_precision,
        quantizations=prefs.quantizations,
    )


def _tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
