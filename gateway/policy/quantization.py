"""Serving precision as data: the closed vocabulary a model declares, its order and OpenRouter's names."""

from __future__ import annotations

from typing import Any, Literal, get_args

# The precisions a backend may declare for a model (`quantization:` in a model entry), lower case. `awq` and
# `gptq` are 4-bit weight-only integer methods as served (a GPTQ model served at 8 bits is `int8`).
Quantization = Literal[
    "fp32", "bf16", "fp16", "fp8", "mxfp8", "int8", "fp6", "fp4", "mxfp4", "nvfp4", "int4", "awq", "gptq"
]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)

# Bits per weight: the precision order. Equal bits rank equal (fp8 and int8 are both "8-bit").
BITS: dict[str, int] = {
    "fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "mxfp8": 8, "int8": 8, "fp6": 6,
    "fp4": 4, "mxfp4": 4, "nvfp4": 4, "int4": 4, "awq": 4, "gptq": 4,
}  # fmt: skip

# OpenRouter's `provider.quantizations` values (its documented enum). `unknown` selects backends that
# declare no quantization. Each of ours is one of them: awq and gptq are OpenRouter's int4.
OPENROUTER: tuple[str, ...] = (
    "int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32", "unknown",
)  # fmt: skip
UNDECLARED = "unknown"
_AS_OPENROUTER = {q: ("int4" if q in ("awq", "gptq") else q) for q in QUANTIZATIONS}


def lower(value: Any) -> Any:
    """Accept FP8 as fp8 in YAML; anything that is not a string is left for the schema to reject."""
    return value.lower() if isinstance(value, str) else value


def openrouter_name(quantization: str | None) -> str:
    """The OpenRouter value a declared quantization matches (undeclared: `unknown`)."""
    return _AS_OPENROUTER.get(quantization or "", UNDECLARED)


def quantization_violation(
    quantization: str | None,
    allow: frozenset[str] | None,
    min_precision: str | None,
    requested: frozenset[str] | None,
) -> str | None:
    """Why a backend serving at `quantization` (None: undeclared) may not serve, or None when it may.
    `allow` and `min_precision` are the route's (our vocabulary; `unknown` in `allow` admits undeclared
    backends), `requested` the request's provider.quantizations (OpenRouter's values)."""
    shown = quantization or "undeclared"
    if requested is not None and openrouter_name(quantization) not in requested:
        names = ", ".join(sorted(requested))
        return f"quantization {shown} not in the request's provider.quantizations ({names})"
    if allow is not None and (quantization or UNDECLARED) not in allow:
        return f"quantization {shown} not in the route's quantization.allow ({', '.join(sorted(allow))})"
    if min_precision is not None:
        if quantization is None:
            return f"quantization undeclared; the route's quantization.min_precision is {min_precision}"
        if BITS[quantization] < BITS[min_precision]:
            return f"quantization {quantization} below the route's quantization.min_precision {min_precision}"
    return None
