"""The --synthetic grammar: every string parses to a valid spec or fails with a SpecError, never else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.workbench.spec import MAX_TOKENS, Span, SpecError, SyntheticSpec, parse_spec
from gateway.workbench.workload import CHARS_PER_TOKEN, synthetic


def test_the_documented_examples() -> None:
    assert parse_spec("prompt=200-2000,output=50-500") == SyntheticSpec(Span(200, 2000), Span(50, 500))
    assert parse_spec(" output = 7 , prompt=3-3 , seed=9") == SyntheticSpec(Span(3, 3), Span(7, 7), 9)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is not key=N"),
        ("prompt=10", "'output' is missing"),
        ("prompt=10,output=5,prompt=3", "given twice"),
        ("prompt=10-5,output=5", "low <= high"),
        ("prompt=0,output=5", "low <= high"),
        ("prompt=10,output=5,temp=3", "unknown key 'temp'"),
        ("prompt=10,output=5,seed=1-2", "one value"),
        ("prompt=ten,output=5", "is not key=N"),
        (f"prompt={MAX_TOKENS + 1},output=5", "low <= high"),
    ],
)
def test_errors_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason):
        parse_spec(text)


@given(st.text(max_size=80))
def test_any_string_parses_or_fails_cleanly(text: str) -> None:
    try:
        spec = parse_spec(text)
    except SpecError as err:
        assert str(err)
        return
    for span in (spec.prompt, spec.output):
        assert 1 <= span.low <= span.high <= MAX_TOKENS


items = st.tuples(st.integers(1, 5000), st.integers(0, 5000))


@given(items, items, st.integers(0, 99))
def test_well_formed_specs_round_trip(prompt: tuple[int, int], output: tuple[int, int], seed: int) -> None:
    p_lo, p_hi = prompt[0], prompt[0] + prompt[1]
    o_lo, o_hi = output[0], output[0] + output[1]
    spec = parse_spec(f"prompt={p_lo}-{p_hi},output={o_lo}-{o_hi},seed={seed}")
    assert spec == SyntheticSpec(Span(p_lo, p_hi), Span(o_lo, o_hi), seed)


def test_synthetic_requests_have_the_drawn_sizes() -> None:
    spec = parse_spec("prompt=50-80,output=10-20,seed=4")
    made = synthetic(spec, 30)
    assert made == synthetic(spec, 30)  # the seed makes the mix reproducible
    for item in made:
        assert 50 <= item.input_tokens <= 80 and 10 <= item.output_tokens <= 20
        chars = len(item.messages[0]["content"])
        assert chars == item.input_tokens * CHARS_PER_TOKEN
        assert item.body("m")["max_tokens"] == item.output_tokens
