"""The shadow observer costs nothing per request until a policy has a route with `shadow:` (issue #10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.loader import load_policy
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.unit.policy.test_policy_loader import SECRET, changed, write


@pytest.fixture(autouse=True)
def groq_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)


def _observes_shadow(rt: Runtime) -> bool:
    return any(getattr(hook, "__self__", None) is rt.shadow for hook in rt.router.observers._req_finished)


def test_no_shadow_route_no_observer_and_a_reload_that_adds_one_adds_it_once(tmp_path: Path) -> None:
    plain = load_policy(write(tmp_path / "a.yaml", changed()))
    shadowed = load_policy(write(tmp_path / "b.yaml", changed(("routes|0|shadow", {"backends": ["local"]}))))
    rt = Runtime.create(Settings(keys_db=tmp_path / "keys.db", metrics=False), plain)
    assert rt.shadow is not None and not _observes_shadow(rt)
    rt.swap(shadowed)
    assert _observes_shadow(rt)
    rt.swap(plain)
    rt.swap(shadowed)  # still one: every finished request would otherwise be mirrored twice
    hooks = rt.router.observers._req_finished
    assert sum(getattr(h, "__self__", None) is rt.shadow for h in hooks) == 1
    assert getattr(hooks[-1], "__self__", None) is rt.shadow  # last: after the answer


def test_a_policy_with_a_shadow_route_observes_from_the_start(tmp_path: Path) -> None:
    shadowed = load_policy(write(tmp_path / "b.yaml", changed(("routes|0|shadow", {"backends": ["local"]}))))
    rt = Runtime.create(Settings(keys_db=tmp_path / "keys.db", metrics=False), shadowed)
    assert _observes_shadow(rt)
