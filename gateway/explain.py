"""`routeway explain`: plan a request from a policy file, or ask a running gateway's /v1/route/explain."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from gateway.policy.loader import LoadedPolicy

TIMEOUT_S = 10.0


class ExplainError(Exception):
    """The request could not be planned or the gateway could not answer; the message is for the user."""


def request_body(model: str, prompt: str, max_tokens: int | None, input_text: str | None) -> dict[str, Any]:
    """The body explained: an embeddings request when `input_text` is given, else a one-message chat."""
    if input_text is not None:
        return {"model": model, "input": input_text}
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    return body


def explain_local(loaded: LoadedPolicy, body: dict[str, Any], objective: str | None) -> dict[str, Any]:
    """The plan from the policy alone: declared speeds and prices, no telemetry, nothing called."""
    from gateway.api.admin import explain_endpoint, explain_plan
    from gateway.errors import GatewayError
    from gateway.routing.candidates import build_catalog
    from gateway.routing.preferences import take_preferences
    from gateway.routing.router import Router
    from gateway.upstream import AiohttpTransport

    catalog = build_catalog(loaded.policy, {}, loaded.fingerprint)  # ranks only: no credential needed
    if "messages" in body and _is_embedding_model(catalog.models, body["model"]):
        # An embedding model has no chat plan: explain it as the embeddings request it can serve.
        body = {"model": body["model"], "input": body["messages"][0]["content"]}
    try:
        prefs = take_preferences(body, {"x-routeway-objective": objective} if objective else {})
        endpoint, canonical = explain_endpoint(body)
        plan = Router(AiohttpTransport()).plan(catalog, endpoint, canonical, prefs, probe=False)
    except GatewayError as err:
        raise ExplainError(err.message) from None
    return explain_plan(plan)


def _is_embedding_model(models: list[Any], name: str) -> bool:
    return any(m.name == name and m.type == "embedding" for m in models)


def explain_remote(
    url: str, body: dict[str, Any], objective: str | None, api_key: str | None
) -> dict[str, Any]:
    """The running gateway's plan, with the live telemetry it routes on."""
    endpoint = gateway_root(url) + "/v1/route/explain"
    headers = {"content-type": "application/json"}
    if objective:
        headers["x-routeway-objective"] = objective
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    try:
        response = httpx.post(endpoint, content=orjson.dumps(body), headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise ExplainError(f"cannot reach {endpoint}: {exc}") from None
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        doc = None
    if response.status_code != 200 or not isinstance(doc, dict):
        raise ExplainError(f"{endpoint} answered {response.status_code}: {_error_message(doc, response)}")
    return doc


def gateway_root(url: str) -> str:
    """Accept the gateway's root or its OpenAI base URL (`.../v1`), as users have either at hand."""
    root = url.rstrip("/")
    return root.removesuffix("/v1")


def _error_message(doc: Any, response: httpx.Response) -> str:
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return response.text[:200] or response.reason_phrase
