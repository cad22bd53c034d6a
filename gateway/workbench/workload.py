"""What a bench replays: a JSONL file (chat requests or the sampled request log) or a synthetic mix."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.workbench.spec import SyntheticSpec

CHARS_PER_TOKEN = 4  # the gateway's own estimate (routing/router.py), so predicted and logged sizes agree
DEFAULT_OUTPUT_TOKENS = 256
# Request parameters replayed as they were; anything else (tools, response_format...) is left out.
REPLAYED = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")
_WORDS = ("route", "token", "latency", "budget", "silicon", "prompt", "cache", "model")


class WorkloadError(ValueError):
    """A workload file that cannot be read; the message names the line."""


@dataclass(frozen=True, slots=True)
class Item:
    """One request to replay: the chat body (model set per backend later) and its expected sizes."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]
    input_tokens: int
    output_tokens: int

    def body(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "messages": self.messages,
            **self.params,
            "max_tokens": self.output_tokens,
            "stream": True,
        }


def filler(tokens: int, salt: int = 0) -> str:
    """Exactly `tokens` x 4 characters of words, for logged shapes whose text was not kept."""
    size = tokens * CHARS_PER_TOKEN
    words = [_WORDS[(salt + i) % len(_WORDS)] for i in range(size // 4 + 1)]
    return " ".join(words)[:size]


def synthetic(spec: SyntheticSpec, count: int) -> list[Item]:
    rng = random.Random(spec.seed)
    items = []
    for i in range(count):
        prompt = rng.randint(spec.prompt.low, spec.prompt.high)
        output = rng.randint(spec.output.low, spec.output.high)
        messages = [{"role": "user", "content": filler(prompt, i)}]
        items.append(Item(messages, {}, prompt, output))
    return items


def load_jsonl(path: Path) -> list[Item]:
    """Each line is an OpenAI chat request (`messages`) or a request-log shape (`message_count`,
    `input_tokens`); blank lines are skipped."""
    items: list[Item] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise WorkloadError(f"{path}: {err.strerror or err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise WorkloadError(f"{path}:{number}: not JSON ({err})") from None
        if not isinstance(doc, dict):
            raise WorkloadError(f"{path}:{number}: each line must be a JSON object")
        items.append(_item(doc, f"{path}:{number}", number))
    if not items:
        raise WorkloadError(f"{path}: no requests")
    return items


def _item(doc: dict[str, Any], where: str, salt: int) -> Item:
    params = {k: doc[k] for k in REPLAYED if k in doc and doc[k] is not None}
    output = _positive(doc.get("max_tokens") or doc.get("max_completion_tokens") or doc.get("output_tokens"))
    messages = doc.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        chars = sum(len(c) for m in messages if isinstance(c := m.get("content"), str))
        return Item(messages, params, max(1, chars // CHARS_PER_TOKEN), output or DEFAULT_OUTPUT_TOKENS)
    logged = _positive(doc.get("input_tokens"))
    if logged is None:
        raise WorkloadError(f"{where}: needs `messages` or `input_tokens`")
    tokens = logged
    count = _positive(doc.get("message_count")) or 1
    return Item(_shaped(tokens, min(count, 64), salt), params, tokens, output or DEFAULT_OUTPUT_TOKENS)


def _shaped(tokens: int, count: int, salt: int) -> list[dict[str, Any]]:
    """`count` messages sharing `tokens`: a system prompt first when there are several, the user's last."""
    share = max(1, tokens // count)
    roles = ["system", *(["user", "assistant"] * count)][: count - 1] if count > 1 else []
    messages = [{"role": role, "content": filler(share, salt + i)} for i, role in enumerate(roles)]
    messages.append({"role": "user", "content": filler(tokens - share * (count - 1), salt)})
    return messages


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def cycle(items: list[Item]) -> Iterator[Item]:
    """The workload repeated, for runs bounded by time rather than by its length."""
    while True:
        yield from items
