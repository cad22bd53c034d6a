"""Completing OpenAI-format bodies that upstreams leave incomplete."""

from __future__ import annotations

from typing import Any

from gateway.providers import conform


def full_chat() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def test_complete_chat_is_untouched() -> None:
    doc = full_chat()
    assert conform.chat_completion(doc, "m") is False
    assert doc == full_chat()


def test_missing_fields_are_filled() -> None:
    doc: dict[str, Any] = {
        "choices": [{"message": {"content": "x"}, "finish_reason": "eos"}],
        "system_fingerprint": None,
    }
    assert conform.chat_completion(doc, "model-id") is True
    assert doc["object"] == "chat.completion" and doc["model"] == "model-id"
    assert doc["id"].startswith("chatcmpl-") and isinstance(doc["created"], int)
    assert "system_fingerprint" not in doc
    choice = doc["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "stop"
    assert choice["message"] == {"content": "x", "role": "assistant", "refusal": None}


def test_chunk_keeps_null_finish_reason_and_usage() -> None:
    doc: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}],
        "usage": None,
    }
    assert conform.chat_chunk(doc, "m") is False
    doc2: dict[str, Any] = {"id": "c", "created": 1, "model": "m", "choices": [{"delta": {}}]}
    assert conform.chat_chunk(doc2, "m") is True
    assert doc2["object"] == "chat.completion.chunk"
    assert doc2["choices"][0] == {"delta": {}, "index": 0, "finish_reason": None}


def test_null_usage_dropped_from_whole_response() -> None:
    doc = full_chat()
    doc["usage"] = None
    assert conform.chat_completion(doc, "m") is True
    assert "usage" not in doc


def test_text_completion_and_embeddings() -> None:
    doc: dict[str, Any] = {"choices": [{"text": "a", "finish_reason": "length"}]}
    assert conform.text_completion(doc, "m")
    assert doc["choices"][0] == {"text": "a", "finish_reason": "length", "index": 0, "logprobs": None}
    emb: dict[str, Any] = {"data": [{"embedding": [0.1]}], "model": "e"}
    assert conform.embeddings(emb, "e")
    assert emb["object"] == "list" and emb["data"][0]["object"] == "embedding"
    assert emb["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
