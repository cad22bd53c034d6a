"""An OpenAI chat request as a Bedrock Converse request (the same body serves ConverseStream)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.providers.base import ProviderError

# OpenAI fields that say something about the call, not the model: never sent to Bedrock.
_BOOKKEEPING = frozenset(
    {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "stream_options"}
)
# Fields translated into Converse's own structure.
_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "logprobs",
        "top_logprobs",
    }
)
_DATA_URL = re.compile(r"data:image/(png|jpeg|jpg|gif|webp);base64,([A-Za-z0-9+/=\s]+)\Z", re.DOTALL)


def unsupported(message: str) -> ProviderError:
    """A request this backend cannot express: the caller's 400, said in words."""
    return ProviderError("client", message, status=400)


def converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse body for an OpenAI chat body (system prompts, turns, images, tools and their results,
    tool_choice, stop sequences, sampling; other model fields go in `additionalModelRequestFields`)."""
    _refuse_unsupported(body)
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config = _inference_config(body)
    if config:
        out["inferenceConfig"] = config
    tools = _tool_config(body.get("tools"), body.get("tool_choice"), messages)
    if tools is not None:
        out["toolConfig"] = tools
    extra = {k: v for k, v in body.items() if k not in _TRANSLATED and k not in _BOOKKEEPING}
    if extra:
        out["additionalModelRequestFields"] = extra
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise unsupported("'n' other than 1 is not supported by this backend (Bedrock Converse)")
    if body.get("logprobs") is True:
        raise unsupported("'logprobs' is not supported by this backend (Bedrock Converse)")


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if cap is not None:
        config["maxTokens"] = cap
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = [s for s in stop if isinstance(s, str)]
    return config


def _messages(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, turns): consecutive turns of one role merged (Converse alternates user/assistant),
    tool results sent as the user's `toolResult` blocks."""
    if not isinstance(raw, list):
        raise unsupported("'messages' must be a list")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in raw:
        if not isinstance(message, dict):
            raise unsupported("each message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in _texts(message.get("content"), role)]
        elif role == "user":
            _append(turns, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message)])
        else:
            raise unsupported(f"message role {str(role)[:40]!r} is not supported by this backend")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return  # Converse refuses empty turns and blank text blocks
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _texts(content: Any, role: str) -> list[str]:
    """The non-empty texts of a string or a list of text parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise unsupported(f"a {role} message may hold only text parts for this backend")
            text = part.get("text", part.get("refusal"))
            if isinstance(text, str) and text:
                texts.append(text)
        return texts
    raise unsupported(f"a {role} message's content must be a string or a list of parts")


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"text": t} for t in _texts(content, "user")]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url")))
        else:
            raise unsupported(f"content part type {str(kind)[:40]!r} is not supported by this backend")
    return blocks


def _image(spec: Any) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, dict) else spec
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise unsupported(
            "this backend (Bedrock) takes images as base64 data: URLs (png, jpeg, gif or webp) only"
        )
    fmt = "jpeg" if match.group(1) == "jpg" else match.group(1)
    # The JSON form of a Converse blob is its base64 text: passed on as given, never decoded here.
    return {"image": {"format": fmt, "source": {"bytes": re.sub(r"\s", "", match.group(2))}}}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": t} for t in _texts(message.get("content"), "assistant")]
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise unsupported("'tool_calls' must be a list")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise unsupported("each tool call needs an id and a function")
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call["id"],
                    "name": function.get("name"),
                    "input": _arguments(function.get("arguments")),
                }
            }
        )
    return blocks


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's arguments (a JSON text) as the object Converse wants."""
    if raw is None or raw == "":
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        raise unsupported("a tool call's arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise unsupported("a tool call's arguments must be a JSON object for this backend")
    return value


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise unsupported("a tool message needs its 'tool_call_id'")
    texts = _texts(message.get("content"), "tool")
    return {"toolResult": {"toolUseId": call_id, "content": [{"text": t} for t in texts or [""]]}}


def _tool_config(tools: Any, choice: Any, turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not tools:
        return None
    if not isinstance(tools, list):
        raise unsupported("'tools' must be a list")
    specs = [_tool_spec(tool) for tool in tools]
    if choice == "none":
        # Converse has no "none": leave the tools out unless earlier turns use them (then it needs them).
        used = any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])
        return {"tools": specs} if used else None
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        name = (
            (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        )
        if not isinstance(name, str):
            raise unsupported("'tool_choice' must name a function")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice is not None:
        raise unsupported(f"'tool_choice' {str(choice)[:40]!r} is not supported by this backend")
    return config


def _tool_spec(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise unsupported("only function tools are supported by this backend")
    parameters = function.get("parameters")
    schema = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": function["name"], "inputSchema": {"json": schema}}
    if isinstance(function.get("description"), str) and function["description"]:
        spec["description"] = function["description"]
    return {"toolSpec": spec}
