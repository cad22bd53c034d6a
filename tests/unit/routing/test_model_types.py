"""A model's `type` restricts its endpoints only when declared; an untyped model serves any endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.endpoints import ENDPOINTS
from gateway.errors import BadRequest
from gateway.policy.model import ModelEntry, Policy
from gateway.routing.candidates import build_catalog

OPS = ("chat", "completions", "embeddings")
SPEC = {spec.operation: spec for spec in ENDPOINTS.values()}


def _policy(*backends: dict[str, dict[str, Any]]) -> Policy:
    return Policy.model_validate(
        {
            "backends": {
                f"b{i}": {
                    "provider": "openai",
                    "base_url": f"http://127.0.0.1:{9000 + i}/v1",
                    "models": models,
                }
                for i, models in enumerate(backends)
            }
        }
    )


def test_type_is_optional_and_absent_by_default() -> None:
    assert ModelEntry(id="x").type is None


def test_an_untyped_model_resolves_for_every_operation() -> None:
    catalog = build_catalog(_policy({"m": {"id": "up-m"}}), {})
    for op in OPS:
        route, targets = catalog.resolve("m", SPEC[op])
        assert [t.model_id for t in targets] == ["up-m"]
    assert [m.type for m in catalog.models] == [None]


@pytest.mark.parametrize(
    ("kind", "refused"), [("chat", ("embeddings",)), ("embedding", ("chat", "completions"))]
)
def test_a_declared_type_refuses_the_other_endpoints(kind: str, refused: tuple[str, ...]) -> None:
    catalog = build_catalog(_policy({"m": {"id": "up-m", "type": kind}}), {})
    for op in OPS:
        if op in refused:
            with pytest.raises(BadRequest) as info:
                catalog.resolve("m", SPEC[op])
            assert info.value.param == "model"
        else:
            catalog.resolve("m", SPEC[op])


@pytest.mark.parametrize("typed_first", [True, False])
def test_one_backend_declaring_the_type_restricts_the_logical_model(typed_first: bool) -> None:
    typed, untyped = {"m": {"id": "up-a", "type": "embedding"}}, {"m": {"id": "up-b"}}
    backends = (typed, untyped) if typed_first else (untyped, typed)
    catalog = build_catalog(_policy(*backends), {})
    assert [m.type for m in catalog.models] == ["embedding"]
    with pytest.raises(BadRequest, match="embedding model"):
        catalog.resolve("m", SPEC["chat"])
    assert len(catalog.resolve("m", SPEC["embeddings"])[1]) == 2
