"""A backend's dialect over real sockets: the same upstream answer means what its host means by it."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import GatewayThread, default_policy

MSG = [{"role": "user", "content": "Say hello"}]
# TGI's answer when generation fails on the server (router/src/server.rs: 424, error_type "generation").
TGI_GENERATION_ERROR = {
    "status": 424,
    "body": {
        "error": "Request failed during generation: Server error: CUDA out of memory",
        "error_type": "generation",
    },
}


def test_a_tgi_generation_error_fails_over_only_in_the_tgi_dialect(sims: SimThread, tmp_path: Path) -> None:
    sims.control("cheap", bad_status_body=TGI_GENERATION_ERROR)
    tgi = default_policy(sims)
    tgi["backends"]["cheap"]["dialect"] = "tgi"
    with GatewayThread(tgi, tmp_path / "tgi", reload_policies=False) as gw:
        raw = gw.client().chat.completions.with_raw_response.create(model="chat", messages=MSG, max_tokens=2)
        assert raw.headers["x-routeway-backend"] == "fast"  # the server's fault: the next backend serves
        assert raw.headers["x-routeway-attempts"] == "2"
    with GatewayThread(default_policy(sims), tmp_path / "plain", reload_policies=False) as gw:
        with pytest.raises(openai.APIStatusError) as info:  # a 4xx, to an OpenAI-dialect eye: not retried
            gw.client().chat.completions.create(model="chat", messages=MSG, max_tokens=2)
        assert 400 <= info.value.status_code < 500


def test_the_tgi_dialect_sends_max_tokens_and_no_stream_options(sims: SimThread, tmp_path: Path) -> None:
    policy = default_policy(sims)
    policy["backends"]["cheap"]["dialect"] = "tgi"
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        stream = gw.client().chat.completions.create(
            model="chat",
            messages=MSG,
            max_completion_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    sent = sims.stats("cheap")["last_body"]
    assert (
        text
        and sent["max_tokens"] == 3
        and "max_completion_tokens" not in sent
        and "stream_options" not in sent
    )
