"""`routeway check` refuses base_urls that would fail every request, naming each problem and value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

POLICY = """
backends:
  creds:
    provider: openai
    base_url: https://user:pw-s3cret@host/v1
    api_key_env: PATH
    models: {m: {id: x}}
  spaced:
    provider: openai
    base_url: "http://h:1 /v1?x"
    models: {m: {id: x}}
  ftp:
    provider: openai
    base_url: ftp://h
    models: {m: {id: x}}
  port:
    provider: openai
    base_url: http://h:99999
    models: {m: {id: x}}
  good:
    provider: openai
    base_url: http://127.0.0.1:9101/v1
    models: {m: {id: x}}
"""


def test_check_names_every_bad_url_and_its_problem(tmp_path: Path) -> None:
    path = tmp_path / "urls.yaml"
    path.write_text(POLICY)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    flagged = [line for line in result.stderr.splitlines() if ".base_url" in line]
    assert len(flagged) == 4 and not any("backends.good." in line for line in flagged), result.stderr
    expected = {
        "creds": ["'https://user:***@host/v1'", "credentials", "api_key_env"],
        "spaced": ["'http://h:1 /v1?***'", "whitespace", "query string"],
        "ftp": ["'ftp://h'", "scheme must be http or https, not 'ftp'"],
        "port": ["'http://h:99999'", "port must be a number from 1 to 65535, not '99999'"],
    }
    for name, fragments in expected.items():
        (line,) = [line for line in flagged if f"backends.{name}.base_url" in line]
        for fragment in fragments:
            assert fragment in line, line
    assert "pw-s3cret" not in result.stderr + result.stdout
    assert "4 problem(s)" in result.stderr
