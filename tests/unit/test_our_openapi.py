"""Our openapi.yaml parses, documents every endpoint we serve, is valid OpenAPI 3.1 and its examples hold."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

try:
    from tests import spec as spec_module
except ModuleNotFoundError:  # pytest's default import mode puts tests/unit, not the repo, on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests import spec as spec_module

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
OUR_URI = "urn:routeway-openapi"

EXPECTED_OPERATIONS = [
    ("post", "/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("post", "/v1/embeddings"),
    ("post", "/v1/responses"),
    ("get", "/v1/responses/{response_id}"),
    ("delete", "/v1/responses/{response_id}"),
    ("get", "/v1/responses/{response_id}/input_items"),
    ("post", "/v1/messages"),
    ("post", "/v1/messages/count_tokens"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{model}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/v1/route/explain"),
    ("post", "/admin/reload"),
    ("get", "/admin/state"),
    ("get", "/admin/decisions/{id}"),
    ("get", "/dashboard"),
    ("get", "/admin/keys"),
    ("post", "/admin/keys"),
    ("get", "/admin/keys/{id}"),
    ("post", "/admin/keys/{id}/revoke"),
    ("post", "/admin/keys/{id}/rotate"),
    ("get", "/admin/usage"),
    ("get", "/v1/usage"),
]
COMPLETION_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
ROUTE_HEADERS = [
    "x-routeway-backend",
    "x-routeway-model",
    "x-routeway-attempts",
    "x-routeway-cost-usd",
    "x-request-id",
]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    with OPENAPI_PATH.open("rb") as fh:
        loaded = yaml.safe_load(fh)
    assert isinstance(loaded, dict)
    return loaded


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema`, a `{"$ref": "#/..."}` into the document (every schema here is one)."""
    assert set(schema) == {"$ref"} and schema["$ref"].startswith("#/"), schema
    registry: Registry[Any] = Registry().with_resource(OUR_URI, DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": OUR_URI + schema["$ref"]}, registry=registry)


def test_is_openapi_3_1(doc: dict[str, Any]) -> None:
    assert str(doc["openapi"]).startswith("3.1")
    assert doc["servers"][0]["url"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize(("method", "path"), EXPECTED_OPERATIONS)
def test_every_endpoint_is_documented(doc: dict[str, Any], method: str, path: str) -> None:
    assert path in doc["paths"], f"{path} missing from openapi.yaml"
    assert method in doc["paths"][path], f"{method.upper()} {path} missing from openapi.yaml"


@pytest.mark.parametrize("path", COMPLETION_PATHS)
def test_completion_endpoints_document_headers_and_errors(doc: dict[str, Any], path: str) -> None:
    responses = doc["paths"][path]["post"]["responses"]
    assert set(ROUTE_HEADERS) <= set(responses["200"]["headers"])
    assert {"400", "401", "404", "429", "502", "503"} <= set(responses)
    rate_limited = _resolve(doc, responses["429"])
    assert "retry-after" in rate_limited["headers"]


def test_streaming_endpoints_offer_sse(doc: dict[str, Any]) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"):
        assert "text/event-stream" in doc["paths"][path]["post"]["responses"]["200"]["content"]


def test_requests_let_unknown_fields_through(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):
        assert schemas[name]["additionalProperties"] is True, name


def test_probes_need_no_key(doc: dict[str, Any]) -> None:
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/readyz"]["get"]["security"] == []
    assert {"bearerAuth": []} in doc["security"] and {} in doc["security"]


def test_is_valid_openapi(doc: dict[str, Any]) -> None:
    if importlib.util.find_spec("openapi_spec_validator") is None:
        pytest.skip("openapi-spec-validator is not installed")
    from openapi_spec_validator import validate

    validate(doc)


def _examples(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for each JSON example beside a schema in the document."""
    for name, schema in doc["components"]["schemas"].items():
        for i, example in enumerate(schema.get("examples", [])):
            if schema.get("type") != "string":  # SSE streams are text, checked against OpenAI's spec
                yield f"schemas/{name}/examples/{i}", {"$ref": f"#/components/schemas/{name}"}, example
    for name, response in doc["components"]["responses"].items():
        media = response.get("content", {}).get("application/json", {})
        if "example" in media:
            yield f"responses/{name}/example", media["schema"], media["example"]
        for key, example in media.get("examples", {}).items():
            yield f"responses/{name}/examples/{key}", media["schema"], example["value"]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get("application/json", {})
                if "example" in media:
                    yield f"{method.upper()} {path} {status}", media["schema"], media["example"]


def test_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    checked = 0
    for where, schema, example in _examples(doc):
        errors = [f"{e.json_path}: {e.message}" for e in _schema_validator(doc, schema).iter_errors(example)]
        assert not errors, f"{where}: {errors}"
        checked += 1
    assert checked >= 8


def test_named_openai_schemas_exist_and_error_examples_match_them(doc: dict[str, Any]) -> None:
    spec = spec_module.spec_validator()
    for schema in doc["components"]["schemas"].values():
        if "x-openai-schema" in schema:
            spec.schema(schema["x-openai-schema"])  # KeyError when OpenAI's spec has no such schema
    for where, schema, example in _examples(doc):
        if _resolve(doc, schema).get("x-openai-schema") == "ErrorResponse":
            assert spec.errors("ErrorResponse", example) == [], where


def test_sse_example_chunks_match_openai(doc: dict[str, Any]) -> None:
    spec = spec_module.spec_validator()
    (stream,) = doc["components"]["schemas"]["ChatCompletionEventStream"]["examples"]
    events = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for data in events[:-1]:
        spec.validate("CreateChatCompletionStreamResponse", json.loads(data))
