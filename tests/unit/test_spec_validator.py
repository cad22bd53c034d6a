"""The OpenAI-spec validator is real: spec-perfect bodies pass, and each way of breaking them fails."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    from tests import spec as spec_module
except ModuleNotFoundError:  # pytest's default import mode puts tests/unit, not the repo, on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests import spec as spec_module

SpecValidator = spec_module.SpecValidator

CHAT = "CreateChatCompletionResponse"
CHUNK = "CreateChatCompletionStreamResponse"
COMPLETION = "CreateCompletionResponse"


@pytest.fixture(scope="module")
def spec() -> SpecValidator:
    return spec_module.spec_validator()


def _examples(spec: SpecValidator, schema_name: str) -> list[dict[str, Any]]:
    """The JSON objects in the spec's own `x-oaiMeta.example` for a schema (one per line for streams)."""
    text = spec.schema(schema_name)["x-oaiMeta"]["example"]
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def chat(spec: SpecValidator) -> dict[str, Any]:
    (example,) = _examples(spec, CHAT)
    return example


def _chunk(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "llama-3.3-70b",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": None, "finish_reason": None}],
    }
    body.update(overrides)
    return body


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}


def _fails(spec: SpecValidator, schema_name: str, body: object, *expected: str) -> list[str]:
    errors = spec.errors(schema_name, body)
    assert errors, f"{schema_name} accepted {body!r}"
    for fragment in expected:
        assert any(fragment in e for e in errors), f"{fragment!r} not in {errors}"
    with pytest.raises(AssertionError, match=schema_name):
        spec.validate(schema_name, body)
    return errors


# -- chat completion (non-stream) ---------------------------------------------------------------------------


def test_spec_example_chat_completion_passes(spec: SpecValidator, chat: dict[str, Any]) -> None:
    message = chat["choices"][0]["message"]
    assert "refusal" in message and message["refusal"] is None
    assert "logprobs" in chat["choices"][0] and chat["choices"][0]["logprobs"] is None
    spec.validate(CHAT, chat)
    assert spec.errors(CHAT, chat) == []


def test_minimal_chat_completion_passes(spec: SpecValidator) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    spec.validate(CHAT, body)


def test_message_without_refusal_fails(spec: SpecValidator, chat: dict[str, Any]) -> None:
    del chat["choices"][0]["message"]["refusal"]
    errors = _fails(spec, CHAT, chat, "'refusal' is a required property")
    assert errors[0].startswith("$.choices[0].message:")


def test_choice_without_logprobs_fails(spec: SpecValidator, chat: dict[str, Any]) -> None:
    del chat["choices"][0]["logprobs"]
    _fails(spec, CHAT, chat, "$.choices[0]: 'logprobs' is a required property")


@pytest.mark.parametrize("field", ["id", "object", "created", "model", "choices"])
def test_chat_completion_requires_top_level_field(
    spec: SpecValidator, chat: dict[str, Any], field: str
) -> None:
    del chat[field]
    _fails(spec, CHAT, chat, f"'{field}' is a required property")


@pytest.mark.parametrize("field", ["index", "message", "finish_reason", "logprobs"])
def test_chat_choice_requires_field(spec: SpecValidator, chat: dict[str, Any], field: str) -> None:
    del chat["choices"][0][field]
    _fails(spec, CHAT, chat, f"'{field}' is a required property")


@pytest.mark.parametrize("field", ["role", "content", "refusal"])
def test_chat_message_requires_field(spec: SpecValidator, chat: dict[str, Any], field: str) -> None:
    del chat["choices"][0]["message"][field]
    _fails(spec, CHAT, chat, f"'{field}' is a required property")


def test_every_error_is_listed(spec: SpecValidator, chat: dict[str, Any]) -> None:
    del chat["choices"][0]["message"]["refusal"]
    chat["object"] = "chat.completion.chunk"
    with pytest.raises(AssertionError) as caught:
        spec.validate(CHAT, chat)
    text = str(caught.value)
    assert "(2 error(s))" in text
    assert "$.choices[0].message: 'refusal' is a required property" in text
    assert "$.object: 'chat.completion.chunk' is not one of ['chat.completion']" in text


def test_finish_reason_null_fails_outside_a_stream(spec: SpecValidator, chat: dict[str, Any]) -> None:
    # The spec gives the non-stream finish_reason no `nullable`: a finished completion always has a reason.
    assert (
        spec.schema(CHAT)["properties"]["choices"]["items"]["properties"]["finish_reason"]["type"] == "string"
    )
    chat["choices"][0]["finish_reason"] = None
    _fails(spec, CHAT, chat, "$.choices[0].finish_reason: None is not of type 'string'")


def test_unknown_finish_reason_fails(spec: SpecValidator, chat: dict[str, Any]) -> None:
    chat["choices"][0]["finish_reason"] = "eos"
    _fails(spec, CHAT, chat, "$.choices[0].finish_reason: 'eos' is not one of")


def test_system_fingerprint_null_is_rejected_but_service_tier_null_accepted(
    spec: SpecValidator, chat: dict[str, Any]
) -> None:
    # system_fingerprint is `type: string` (deprecated, not nullable): omit it rather than send null.
    spec.validate(CHAT, {**chat, "service_tier": None})
    _fails(
        spec, CHAT, {**chat, "system_fingerprint": None}, "$.system_fingerprint: None is not of type 'string'"
    )
    without = {k: v for k, v in chat.items() if k not in ("system_fingerprint", "service_tier", "usage")}
    spec.validate(CHAT, without)


def test_usage_null_fails_outside_a_stream(spec: SpecValidator, chat: dict[str, Any]) -> None:
    _fails(spec, CHAT, {**chat, "usage": None}, "$.usage: None is not of type 'object'")


def test_usage_requires_the_three_counts(spec: SpecValidator, chat: dict[str, Any]) -> None:
    chat["usage"] = {"prompt_tokens": 1, "completion_tokens": 2}
    _fails(spec, CHAT, chat, "$.usage: 'total_tokens' is a required property")


def test_unknown_top_level_fields_are_allowed(spec: SpecValidator, chat: dict[str, Any]) -> None:
    spec.validate(CHAT, {**chat, "x_routeway": {"backend": "groq"}})


def test_tool_call_message_passes_and_broken_tool_call_fails(
    spec: SpecValidator, chat: dict[str, Any]
) -> None:
    message = chat["choices"][0]["message"]
    message["content"] = None
    message["tool_calls"] = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    chat["choices"][0]["finish_reason"] = "tool_calls"
    spec.validate(CHAT, chat)
    del message["tool_calls"][0]["function"]["arguments"]
    _fails(spec, CHAT, chat, "'arguments' is a required property")


# -- chat completion chunks ---------------------------------------------------------------------------------


def test_spec_example_chunks_pass(spec: SpecValidator) -> None:
    chunks = _examples(spec, CHUNK)
    assert len(chunks) >= 2
    for chunk in chunks:
        spec.validate(CHUNK, chunk)


def test_finish_reason_null_passes_in_a_chunk(spec: SpecValidator) -> None:
    # The stream schema marks finish_reason `nullable: true`; the translation must admit None in its enum too.
    finish_reason = spec.schema(CHUNK)["properties"]["choices"]["items"]["properties"]["finish_reason"]
    assert "null" in finish_reason["type"] and None in finish_reason["enum"]
    spec.validate(CHUNK, _chunk())
    spec.validate(CHUNK, _chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))


def test_chunk_choice_requires_delta_index_finish_reason(spec: SpecValidator) -> None:
    for field in ("delta", "index", "finish_reason"):
        body = _chunk()
        del body["choices"][0][field]
        _fails(spec, CHUNK, body, f"'{field}' is a required property")
    body = _chunk()
    del body["choices"][0]["logprobs"]
    spec.validate(CHUNK, body)  # optional in a chunk, unlike in a completion


def test_stream_usage_chunk_passes(spec: SpecValidator) -> None:
    spec.validate(CHUNK, _chunk(choices=[], usage=_usage()))
    spec.validate(CHUNK, _chunk(usage=None))  # the chunks before the last carry `usage: null`


def test_stream_usage_chunk_needs_the_envelope(spec: SpecValidator) -> None:
    _fails(spec, CHUNK, {"choices": [], "usage": _usage()}, "'id' is a required property", "'model' is a")


def test_chunk_object_must_be_chunk(spec: SpecValidator) -> None:
    _fails(spec, CHUNK, _chunk(object="chat.completion"), "$.object: 'chat.completion' is not one of")


def test_chunk_system_fingerprint_null_rejected_service_tier_null_accepted(spec: SpecValidator) -> None:
    spec.validate(CHUNK, _chunk(service_tier=None))
    _fails(spec, CHUNK, _chunk(system_fingerprint=None), "$.system_fingerprint: None is not of type 'string'")


def test_chunk_delta_role_must_be_known(spec: SpecValidator) -> None:
    body = _chunk(choices=[{"index": 0, "delta": {"role": "robot"}, "finish_reason": None}])
    _fails(spec, CHUNK, body, "$.choices[0].delta.role: 'robot' is not one of")


# -- errors -------------------------------------------------------------------------------------------------


def test_error_response_with_null_param_and_code_passes(spec: SpecValidator) -> None:
    body = {
        "error": {"message": "no such model", "type": "invalid_request_error", "param": None, "code": None}
    }
    spec.validate("ErrorResponse", body)
    spec.validate("ErrorResponse", {"error": {**body["error"], "param": "model", "code": "model_not_found"}})


def test_error_response_without_code_fails(spec: SpecValidator) -> None:
    body = {"error": {"message": "boom", "type": "server_error", "param": None}}
    _fails(spec, "ErrorResponse", body, "$.error: 'code' is a required property")


def test_error_response_needs_the_error_envelope(spec: SpecValidator) -> None:
    flat = {"message": "boom", "type": "server_error", "param": None, "code": None}
    _fails(spec, "ErrorResponse", flat, "'error' is a required property")


# -- models -------------------------------------------------------------------------------------------------


def test_model_list_passes(spec: SpecValidator) -> None:
    model = {"id": "llama-3.3-70b", "object": "model", "created": 1700000000, "owned_by": "routeway"}
    spec.validate("Model", model)
    spec.validate("ListModelsResponse", {"object": "list", "data": [model]})
    spec.validate("ListModelsResponse", {"object": "list", "data": []})
    (example,) = _examples(spec, "Model")
    spec.validate("Model", example)


def test_model_requires_owned_by_and_created(spec: SpecValidator) -> None:
    _fails(
        spec, "Model", {"id": "m", "object": "model"}, "'owned_by' is a required", "'created' is a required"
    )


def test_model_list_rejects_bad_items_and_object(spec: SpecValidator) -> None:
    body = {
        "object": "models",
        "data": [{"id": "m", "object": "model", "created": "yesterday", "owned_by": "x"}],
    }
    _fails(spec, "ListModelsResponse", body, "$.object: 'models' is not one of", "$.data[0].created")


def test_format_is_not_enforced(spec: SpecValidator) -> None:
    model = {"id": "m", "object": "model", "created": 1, "owned_by": "x", "shutdown_date": "not a date"}
    spec.validate("Model", model)


# -- embeddings ---------------------------------------------------------------------------------------------


def _embeddings() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.009327292, 0.015797347]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


def test_embedding_response_passes(spec: SpecValidator) -> None:
    spec.validate("CreateEmbeddingResponse", _embeddings())


def test_embedding_response_failures(spec: SpecValidator) -> None:
    body = _embeddings()
    del body["usage"]
    _fails(spec, "CreateEmbeddingResponse", body, "'usage' is a required property")
    body = _embeddings()
    body["data"][0]["embedding"] = ["0.1"]
    _fails(spec, "CreateEmbeddingResponse", body, "$.data[0].embedding[0]: '0.1' is not of type 'number'")
    body = _embeddings()
    del body["data"][0]["object"]
    _fails(spec, "CreateEmbeddingResponse", body, "$.data[0]: 'object' is a required property")


def test_base64_embedding_is_outside_the_spec(spec: SpecValidator) -> None:
    # `encoding_format: base64` returns a string, but the spec types `embedding` as an array of numbers only.
    body = _embeddings()
    body["data"][0]["embedding"] = "AAAA"
    _fails(spec, "CreateEmbeddingResponse", body, "$.data[0].embedding: 'AAAA' is not of type 'array'")


# -- legacy completions -------------------------------------------------------------------------------------


def test_spec_example_completion_passes(spec: SpecValidator) -> None:
    (example,) = _examples(spec, COMPLETION)
    spec.validate(COMPLETION, example)


def test_completion_failures(spec: SpecValidator) -> None:
    (example,) = _examples(spec, COMPLETION)
    body = copy.deepcopy(example)
    del body["choices"][0]["logprobs"]
    _fails(spec, COMPLETION, body, "$.choices[0]: 'logprobs' is a required property")
    body = copy.deepcopy(example)
    body["object"] = "chat.completion"
    _fails(spec, COMPLETION, body, "$.object: 'chat.completion' is not one of ['text_completion']")
    body = copy.deepcopy(example)
    body["choices"][0]["finish_reason"] = "tool_calls"
    _fails(spec, COMPLETION, body, "$.choices[0].finish_reason: 'tool_calls' is not one of")


def test_completion_nulls(spec: SpecValidator) -> None:
    (example,) = _examples(spec, COMPLETION)
    # The spec says streamed and non-streamed completions share this shape, yet finish_reason is not
    # nullable: an in-progress legacy stream chunk (`finish_reason: null`, as OpenAI sends) fails it.
    body = copy.deepcopy(example)
    body["choices"][0]["finish_reason"] = None
    _fails(spec, COMPLETION, body, "$.choices[0].finish_reason: None is not of type 'string'")
    _fails(spec, COMPLETION, {**example, "system_fingerprint": None}, "None is not of type 'string'")


# -- the validator itself -----------------------------------------------------------------------------------


def test_unknown_schema_name_is_a_key_error(spec: SpecValidator) -> None:
    with pytest.raises(KeyError, match="CreateChatCompletionResponze"):
        spec.validate("CreateChatCompletionResponze", {})


def test_no_nullable_keyword_survives_translation(spec: SpecValidator) -> None:
    def walk(node: object) -> int:
        if isinstance(node, dict):
            own = 1 if isinstance(node.get("nullable"), bool) else 0
            return own + sum(walk(v) for v in node.values())
        if isinstance(node, list):
            return sum(walk(v) for v in node)
        return 0

    assert walk(spec.spec["components"]) == 0


def test_fails_loudly_when_the_spec_is_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "reference" / "openai-openapi.yaml"
    monkeypatch.setattr(spec_module, "SPEC_PATH", missing)
    assert not spec_module.spec_available()
    with pytest.raises(pytest.fail.Exception, match="OpenAI spec not found at .*restore it from git"):
        spec_module.spec_validator()


def test_spec_is_vendored_in_the_repo_with_its_licence() -> None:
    """A clone alone runs every spec test: nothing is read from a folder beside the repo."""
    repo = Path(spec_module.__file__).resolve().parents[1]
    assert spec_module.SPEC_PATH == repo / "tests" / "reference" / "openai-openapi.yaml"
    assert spec_module.SPEC_PATH.is_file()
    notice = (repo / "tests" / "reference" / "README.md").read_text()
    assert "MIT" in notice and "github.com/openai/openai-openapi" in notice
    this = Path(__file__).resolve()
    for path in [repo / "README.md", *repo.glob("docs/*.md"), *repo.glob("tests/**/*.py")]:
        if path.resolve() != this:
            assert "../shared" not in path.read_text(), f"{path} still points outside the repo"


# -- the translation, on small schemas (no spec needed) -----------------------------------------------------


def _translated_schema(schema: dict[str, Any]) -> dict[str, Any]:
    doc = spec_module.translate_spec({"components": {"schemas": {"S": schema, "T": {"type": "integer"}}}})
    result: dict[str, Any] = doc["components"]["schemas"]["S"]
    return result


@pytest.mark.parametrize(
    ("schema", "translated"),
    [
        ({"type": "string", "nullable": True}, {"type": ["string", "null"]}),
        ({"type": "string", "nullable": False}, {"type": "string"}),
        (
            {"type": "string", "enum": ["a"], "nullable": True},
            {"type": ["string", "null"], "enum": ["a", None]},
        ),
        (
            {"$ref": "#/components/schemas/T", "nullable": True},
            {"anyOf": [{"$ref": "#/components/schemas/T"}, {"type": "null"}]},
        ),
        (
            {"type": "object", "allOf": [{"$ref": "#/components/schemas/T"}], "nullable": True},
            {"anyOf": [{"type": "object", "allOf": [{"$ref": "#/components/schemas/T"}]}, {"type": "null"}]},
        ),
        ({"enum": [1, 2], "nullable": True}, {"anyOf": [{"enum": [1, 2]}, {"type": "null"}]}),
        (
            {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            {"type": "number", "exclusiveMinimum": 0},
        ),
        ({"type": "number", "maximum": 1, "exclusiveMaximum": False}, {"type": "number", "maximum": 1}),
        (
            {"properties": {"nullable": {"type": "boolean"}}},
            {"properties": {"nullable": {"type": "boolean"}}},
        ),
        (
            {"$recursiveAnchor": True, "items": {"$recursiveRef": "#"}},
            {"items": {"$ref": "#/components/schemas/S"}},
        ),
    ],
)
def test_translation(schema: dict[str, Any], translated: dict[str, Any]) -> None:
    assert _translated_schema(schema) == translated


# -- the pickle cache ---------------------------------------------------------------------------------------


def _tiny_spec() -> dict[str, Any]:
    return {"openapi": "3.1.0", "components": {"schemas": {"S": {"type": "string", "nullable": True}}}}


def test_cache_is_written_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_file = tmp_path / "openai-openapi.yaml"
    spec_file.write_text(yaml.safe_dump(_tiny_spec()))
    cache = tmp_path / "cache"

    first = spec_module.load_translated_spec(spec_file, cache_dir=cache)
    assert first["components"]["schemas"]["S"] == {"type": ["string", "null"]}
    (pickled,) = cache.glob("openai-spec-*.pickle")

    def no_parsing(*args: object, **kwargs: object) -> object:
        raise AssertionError("the cached spec should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(spec_module.yaml, "load", no_parsing)
        assert spec_module.load_translated_spec(spec_file, cache_dir=cache) == first

    changed = _tiny_spec()
    changed["components"]["schemas"]["S"]["type"] = "integer"
    spec_file.write_text(yaml.safe_dump(changed) + "\n\n")  # a different size, whatever the mtime resolution
    second = spec_module.load_translated_spec(spec_file, cache_dir=cache)
    assert second["components"]["schemas"]["S"] == {"type": ["integer", "null"]}
    assert list(cache.glob("openai-spec-*.pickle")) != [pickled]  # replaced, the stale one removed
    assert len(list(cache.glob("openai-spec-*.pickle"))) == 1


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    spec_file = tmp_path / "openai-openapi.yaml"
    spec_file.write_text(yaml.safe_dump(_tiny_spec()))
    cache = tmp_path / "cache"
    spec_module.load_translated_spec(spec_file, cache_dir=cache)
    (pickled,) = cache.glob("openai-spec-*.pickle")
    pickled.write_bytes(b"\x80\x05not a pickle")
    again = spec_module.load_translated_spec(spec_file, cache_dir=cache)
    assert again["components"]["schemas"]["S"] == {"type": ["string", "null"]}


def test_validator_over_a_tiny_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "openai-openapi.yaml"
    tiny = _tiny_spec()
    tiny["components"]["schemas"]["Box"] = {
        "type": "object",
        "properties": {"s": {"$ref": "#/components/schemas/S"}},
        "required": ["s"],
    }
    spec_file.write_text(yaml.safe_dump(tiny))
    validator = SpecValidator(spec_file, use_cache=False)
    validator.validate("Box", {"s": None})
    validator.validate("Box", {"s": "x"})
    assert validator.errors("Box", {"s": 1}) == ["$.s: 1 is not of type 'string', 'null'"]
    assert validator.errors("Box", {}) == ["$: 's' is a required property"]
