"""The README's "Configure it" policy, copied literally (only its base_urls pointed at simulators), passes
`routeway check` and serves chat and embeddings through the openai SDK with the env vars it names set."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.sim import Profile, SimThread
from tests.integration.conftest import GatewayThread

README = Path(__file__).resolve().parents[2] / "README.md"
KEYS = {"GROQ_API_KEY": "gsk-readme-test-1b2c", "OPENAI_API_KEY": "sk-readme-test-9d8e"}
UPSTREAMS = {  # the README's base_url → the simulator standing in for it, and the key it demands
    "https://api.groq.com/openai/v1": Profile(
        name="groq", hardware="groq-lpu", models=["llama-3.3-70b-versatile"], ttft_ms=2,
        tokens_per_s=20000, api_key=KEYS["GROQ_API_KEY"],
    ),
    "https://api.openai.com/v1": Profile(
        name="openai", hardware="nvidia-h100", models=["text-embedding-3-small"], ttft_ms=2,
        tokens_per_s=20000, api_key=KEYS["OPENAI_API_KEY"],
    ),
}  # fmt: skip


def configure_it_yaml() -> str:
    """The first ```yaml block of the README's "## Configure it" section, as written."""
    section = README.read_text().split("\n## Configure it\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "the README's 'Configure it' section has no yaml block"
    return match.group(1)


@pytest.fixture(scope="module")
def readme_sims() -> Iterator[SimThread]:
    with SimThread(list(UPSTREAMS.values())) as fleet:
        yield fleet


@pytest.fixture
def policy_text(readme_sims: SimThread, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, key in KEYS.items():
        monkeypatch.setenv(name, key)
    text = configure_it_yaml()
    for url, profile in UPSTREAMS.items():
        assert text.count(f"base_url: {url}\n") == 1, f"the README example no longer uses {url}"
        text = text.replace(f"base_url: {url}\n", f"base_url: {readme_sims.urls[profile.name]}\n")
    return text


def test_the_readme_example_passes_check(policy_text: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(path)],
        capture_output=True, text=True, timeout=60,  # the keys come from the env set by `policy_text`
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_example_serves_chat_and_embeddings(
    policy_text: str, readme_sims: SimThread, tmp_path: Path
) -> None:
    with GatewayThread(yaml.safe_load(policy_text), tmp_path, reload_policies=False) as gw:
        client = gw.client(api_key="unused")
        chat = client.chat.completions.with_raw_response.create(
            model="llama-3.3-70b", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert chat.headers["x-routeway-backend"] == "groq"
        assert chat.parse().choices[0].message.content
        assert chat.parse().model == "llama-3.3-70b-versatile"
        emb = client.embeddings.create(model="embed-small", input="hello")
        assert len(emb.data[0].embedding) == 8 and emb.model == "text-embedding-3-small"
        assert sorted(m.id for m in client.models.list()) == ["embed-small", "llama-3.3-70b"]
    assert readme_sims.stats("groq")["last_headers"]["authorization"] == f"Bearer {KEYS['GROQ_API_KEY']}"
    assert readme_sims.stats("openai")["last_headers"]["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
