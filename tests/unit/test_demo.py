"""gateway.demo's pure parts: the fleet's ports, moving the policy's simulator URLs, the port check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from gateway.demo import DemoError, check_ports_free, policy_for_ports, rewrite_base_urls, sim_ports
from gateway.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]


def test_sim_ports_default_to_the_profiles_and_follow_a_first_port() -> None:
    assert sim_ports(None) == [9101, 9102, 9103, 9104]
    assert sim_ports(20000) == [20000, 20001, 20002, 20003]


def test_only_local_urls_on_moved_ports_change() -> None:
    data = {
        "backends": {
            "a": {"base_url": "http://127.0.0.1:9101/v1"},
            "b": {"base_url": "http://localhost:9102/v1/"},
            "c": {"base_url": "https://api.groq.com:9101/openai/v1"},
            "d": {"base_url": "http://127.0.0.1:8000/v1"},
            "e": {"models": {}},
        }
    }
    out = rewrite_base_urls(data, {9101: 30001, 9102: 30002})
    assert [b.get("base_url") for b in out["backends"].values()] == [
        "http://127.0.0.1:30001/v1",
        "http://localhost:30002/v1/",
        "https://api.groq.com:9101/openai/v1",
        "http://127.0.0.1:8000/v1",
        None,
    ]
    assert rewrite_base_urls({"routes": []}, {9101: 1}) == {"routes": []}


def test_the_shipped_policy_copy_loads_and_points_at_the_new_ports(tmp_path: Path) -> None:
    moved = dict(zip(sim_ports(None), sim_ports(40000), strict=True))
    copy = policy_for_ports(REPO / "policies", moved, tmp_path)
    urls = {name: b.base_url for name, b in load_policy(copy).policy.backends.items()}
    assert urls["h100-nim"] == "http://127.0.0.1:40000/v1" and urls["inferentia2"] == "http://127.0.0.1:40003"
    assert urls["vertex-tpu"] == "http://127.0.0.1:40002"  # Vertex's layout, on the TPU simulator's port
    original = yaml.safe_load((REPO / "policies" / "demo.yaml").read_text())
    assert original["backends"]["h100-nim"]["base_url"] == "http://127.0.0.1:9101/v1"  # left as it was


def test_a_taken_port_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DemoError, match=f"^port {port} on 127.0.0.1 is already in use"):
            check_ports_free([("127.0.0.1", port)])
    check_ports_free([("127.0.0.1", port)])  # free again once closed
