"""Default energy per token by hardware label, for the `greenest` objective when a backend declares none."""

from __future__ import annotations

# Rough joules per output token for a 70B-class model at moderate batch size, from public vendor and
# MLPerf-style figures. They order hardware, they do not bill it: set `joules_per_token` on a backend
# to use a measured value instead.
JOULES_PER_TOKEN: dict[str, float] = {
    "nvidia-h100": 0.4,
    "nvidia-h200": 0.33,
    "nvidia-b200": 0.2,
    "nvidia-a100": 0.7,
    "nvidia-l40s": 0.9,
    "google-tpu-v5e": 0.35,
    "google-tpu-v6e": 0.25,
    "aws-inferentia2": 0.3,
    "aws-trainium2": 0.25,
    "groq-lpu": 1.0,
}
UNKNOWN_JOULES_PER_TOKEN = 1.5  # unknown hardware ranks after every known one


def joules_per_token(hardware: str | None, declared: float | None) -> float:
    if declared is not None:
        return declared
    return JOULES_PER_TOKEN.get(hardware or "", UNKNOWN_JOULES_PER_TOKEN)
