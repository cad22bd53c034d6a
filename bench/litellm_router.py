"""LiteLLM's latency-based `Router` behind a minimal OpenAI-shaped HTTP endpoint, for `bench.scenarios`.

Runs in bench/.venv (where litellm is installed), not in the project's venv: it imports only litellm and
aiohttp (a litellm dependency). One argument, a JSON object: `port`, `deployments` (name, api_base, model),
`timeout_s` and `stream_timeout_s` (the scenario's `total_s` and `first_token_s`: LiteLLM's own default is
600 s, which no scenario could wait out). Everything else is the Router's default. The chosen deployment is
named in `x-routeway-backend`, as Routeway does, so the client counts traffic and cost the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aiohttp import web
from litellm import Router

GROUP = "chat"


def make_router(conf: dict[str, Any]) -> Router:
    model_list = [
        {
            "model_name": GROUP,
            "litellm_params": {
                "model": f"openai/{d['model']}",
                "api_base": d["api_base"],
                "api_key": "sk-bench",
            },
            "model_info": {"id": d["name"]},
        }
        for d in conf["deployments"]
    ]
    return Router(
        model_list=model_list,
        routing_strategy="latency-based-routing",
        timeout=conf["timeout_s"],
        stream_timeout=conf["stream_timeout_s"],
    )


def backend_of(response: Any) -> str:
    hidden = getattr(response, "_hidden_params", None) or {}
    return str(hidden.get("model_id") or "")


async def completions(request: web.Request) -> web.StreamResponse:
    router: Router = request.app["router"]
    body = await request.json()
    body["model"] = GROUP
    try:
        response = await router.acompletion(**body)
    except Exception as exc:  # noqa: BLE001 (litellm raises many types): after its retries, a 502
        return web.json_response({"error": {"message": type(exc).__name__}}, status=502)
    headers = {"x-routeway-backend": backend_of(response)}
    if not body.get("stream"):
        return web.Response(body=response.model_dump_json(), headers=headers, content_type="application/json")
    out = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
    await out.prepare(request)
    try:
        async for chunk in response:
            await out.write(b"data: " + chunk.model_dump_json().encode() + b"\n\n")
    except Exception:  # noqa: BLE001 the stream broke after its first byte: the client sees no [DONE]
        return out
    await out.write(b"data: [DONE]\n\n")
    return out


def main() -> None:
    conf = json.loads(sys.argv[1])
    app = web.Application()
    app["router"] = make_router(conf)
    app.router.add_post("/v1/chat/completions", completions)
    web.run_app(app, host="127.0.0.1", port=conf["port"], access_log=None, print=None, shutdown_timeout=1)


if __name__ == "__main__":
    main()
