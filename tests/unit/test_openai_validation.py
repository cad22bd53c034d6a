"""The chat validator's sampling checks: every malformed field is a 400 naming it, every good one passes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.endpoints.openai import validate_chat
from gateway.errors import BadRequest

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", True),
        ("max_tokens", 1.5),
        ("max_tokens", "16"),
        ("max_completion_tokens", -1),
        ("n", False),
        ("temperature", 2.5),
        ("temperature", True),
        ("top_p", -0.1),
        ("top_p", "1"),
        ("stream", "yes"),
        ("stream", 1),
    ],
)
def test_a_malformed_sampling_field_is_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(BadRequest) as info:
        validate_chat({"model": "m", "messages": MSG, field: value})
    assert info.value.param == field


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", 1), ("n", 3), ("temperature", 0), ("temperature", 2.0), ("top_p", 1), ("stream", False)],
)
def test_a_wellformed_sampling_field_passes(field: str, value: Any) -> None:
    validate_chat({"model": "m", "messages": MSG, field: value})
