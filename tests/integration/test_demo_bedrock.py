"""The demo policy routes llama-3.3-70b over its simulated Bedrock (Inferentia) backend, over the real
Converse format and SigV4, with the dummy keys the demo gives its gateway (the suite's conftest sets them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from gateway.demo import policy_for_ports, sim_ports
from gateway.sim import DEMO_FLEET, SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_sims() -> Iterator[SimThread]:
    with SimThread(list(DEMO_FLEET.values()), ports=[0] * len(DEMO_FLEET)) as fleet:
        yield fleet


def test_the_demo_routes_one_model_over_bedrock_inferentia(demo_sims: SimThread, tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    moved = dict(zip(sim_ports(None), [demo_sims.ports[name] for name in DEMO_FLEET], strict=True))
    policy = yaml.safe_load(
        policy_for_ports(REPO / "policies", moved, tmp_path / "p").joinpath("demo.yaml").read_text()
    )
    for profile in DEMO_FLEET:
        demo_sims.control(profile, ttft_ms=1, tokens_per_s=5000)
    with GatewayThread(policy, tmp_path / "gw", reload_policies=False) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)
        for stream in (False, True):
            raw = client.chat.completions.with_raw_response.create(
                model="llama-3.3-70b",
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=4,
                stream=stream,
                extra_body={"provider": {"order": ["inferentia2"], "allow_fallbacks": False}},
            )
            assert raw.headers["x-routeway-backend"] == "inferentia2"
    arrivals = demo_sims.stats("inferentia2")["arrivals"]
    assert [a["path"] for a in arrivals] == [
        "/model/meta.llama3-3-70b-instruct-v1:0/converse",
        "/model/meta.llama3-3-70b-instruct-v1:0/converse-stream",
    ]
    assert [a["status"] for a in arrivals] == [200, 200]
