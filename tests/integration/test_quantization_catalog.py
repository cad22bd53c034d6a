"""Quantization and the shipped catalog, as a user meets them: the official openai SDK's
`extra_body={"provider": {"quantizations": [...]}}` changes which backend serves, a policy that includes a
catalog serves through it, and `routeway check` passes the shipped catalog and refuses an unknown label."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from gateway.sim import SimThread
from tests.integration.conftest import BACKEND_KEY_ENV, GatewayThread, backend
from tests.integration.test_cli import REPO, routeway

MSG = [{"role": "user", "content": "Say hello"}]
CATALOG = REPO / "policies" / "catalog.yaml"


def policy(sims: SimThread) -> dict[str, Any]:
    """`q` on a cheap 4-bit backend and a dearer BF16 one; cheapest first, so the 4-bit one serves."""
    return {
        "include": ["catalog.yaml"],
        "backends": {
            "bf16": backend(
                sims.urls["fast"],
                {"q": {"id": "up-fast", "input_price": 2.0, "output_price": 4.0, "quantization": "BF16"}},
                api_key_env=BACKEND_KEY_ENV,
                hardware="sim-gpu",  # a label the included catalog adds
            ),
            "int4": {
                "offer": "sim-cheap",
                "models": {"q": {"quantization": "awq"}},  # overrides the offer's declared precision
            },
        },
        "routes": [{"name": "default", "objective": "cheapest", "probe_interval_s": 0}],
    }


def catalog(sims: SimThread) -> dict[str, Any]:
    return {
        "hardware": {"sim-gpu": {"joules_per_token": 0.5}},
        "offers": {
            "sim-cheap": {
                "provider": "openai",
                "base_url": sims.urls["cheap"],
                "hardware": "aws-inferentia2",
                "models": {
                    "q": {"id": "up-cheap", "input_price": 0.1, "output_price": 0.2, "quantization": "fp8"}
                },
            }
        },
    }


@pytest.fixture(scope="module")
def gateway(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    workdir = tmp_path_factory.mktemp("quant")
    (workdir / "catalog.yaml").write_text(yaml.safe_dump(catalog(sims)))
    with GatewayThread(policy(sims), workdir, reload_policies=False) as gw:
        yield gw


def served_by(gw: GatewayThread, **extra: Any) -> str:
    raw = gw.client().chat.completions.with_raw_response.create(
        model="q", messages=MSG, max_tokens=3, **extra
    )
    assert raw.parse().choices[0].message.content
    return str(raw.headers["x-routeway-backend"])


def test_the_requested_quantizations_change_which_backend_serves(gateway: GatewayThread) -> None:
    assert served_by(gateway) == "int4"
    assert served_by(gateway, extra_body={"provider": {"quantizations": ["bf16"]}}) == "bf16"
    assert served_by(gateway, extra_body={"provider": {"quantizations": ["int4", "fp8"]}}) == "int4"


def test_a_stream_is_filtered_the_same_way(gateway: GatewayThread) -> None:
    with gateway.client().chat.completions.with_streaming_response.create(
        model="q",
        messages=MSG,
        max_tokens=3,
        stream=True,
        extra_body={"provider": {"quantizations": ["bf16"]}},
    ) as response:
        assert response.headers["x-routeway-backend"] == "bf16"
        assert any(chunk.choices and chunk.choices[0].delta.content for chunk in response.parse())


@pytest.mark.parametrize(
    ("quantizations", "fragment"),
    [(["fp32"], "quantization awq not in the request's provider.quantizations"), (["fp12"], "known: int4")],
)
def test_an_unservable_or_unknown_precision_is_a_400(
    gateway: GatewayThread, quantizations: list[str], fragment: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        served_by(gateway, extra_body={"provider": {"quantizations": quantizations}})
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "provider.quantizations"
    assert fragment in error["message"]


def test_explain_shows_each_backends_quantization_and_why_one_was_dropped(gateway: GatewayThread) -> None:
    body = {"model": "q", "messages": MSG, "provider": {"quantizations": ["bf16"]}}
    doc = httpx.post(gateway.root + "/v1/route/explain", json=body, timeout=10).json()
    assert [(c["backend"], c["quantization"]) for c in doc["candidates"]] == [("bf16", "bf16")]
    assert doc["dropped"] == [
        {"backend": "int4", "reason": "quantization awq not in the request's provider.quantizations (bf16)"}
    ]


def test_check_passes_the_shipped_folder_and_a_policy_naming_every_openai_offer(tmp_path: Path) -> None:
    result = routeway("check", "--config", "policies")
    assert result.returncode == 0, result.stderr
    offers = yaml.safe_load(CATALOG.read_text())["offers"]
    named = {name: {"offer": name} for name, o in offers.items() if o["provider"] == "openai"}
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"include": [str(CATALOG)], "backends": named}))
    env_keys = {
        o["api_key_env"]: "sk-test" for name, o in offers.items() if name in named and "api_key_env" in o
    }
    result = routeway("check", "--config", str(user), env={**os.environ, **env_keys})
    assert result.returncode == 0, result.stderr
    assert f"ok: {len(named)} backends" in result.stdout


def test_check_refuses_an_unknown_hardware_label_with_file_path_and_reason(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    mine = {
        "include": [str(CATALOG)],
        "backends": {"local": {"offer": "vllm-h100", "hardware": "nvidia-h1000"}},
    }
    user.write_text(yaml.safe_dump(mine))
    result = routeway("check", "--config", str(user))
    assert result.returncode != 0
    assert f"error: {user}: backends.local.hardware: unknown hardware label 'nvidia-h1000'" in result.stderr


def test_a_running_gateway_reloads_when_an_included_catalog_changes(sims: SimThread, tmp_path: Path) -> None:
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog(sims)))
    with GatewayThread(policy(sims), tmp_path) as gw:  # hot reload on
        assert served_by(gw) == "int4"
        dearer = catalog(sims)
        dearer["offers"]["sim-cheap"]["models"]["q"].update(input_price=9.0, output_price=9.0)
        (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(dearer))
        deadline = time.monotonic() + 15
        while served_by(gw) != "bf16":  # the included offer is now the dearer one
            assert time.monotonic() < deadline, "the edit to the included file was not applied"
            time.sleep(0.1)
