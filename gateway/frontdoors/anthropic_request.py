"""Anthropic's Messages API request -> a chat completions request.

Content blocks map to chat: text and images to message content, `tool_use` to the assistant's `tool_calls`,
`tool_result` to `tool` messages placed before the rest of their user turn. What chat cannot carry is
refused with a 400 naming it (server tools, documents), except hints that change no answer's meaning
(`cache_control`, `top_k`, `thinking`, earlier turns' thinking blocks), which are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import BadRequest
from gateway.frontdoors.wire import (
    label,
    unsupported,
    want_bool,
    want_dict,
    want_int,
    want_list,
    want_number,
    want_str,
)

_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_IMAGE_CHARS = 6400  # an image counted as ~1,600 tokens, about what a large one costs on vision models


@dataclass(slots=True)
class MessagesCall:
    """A validated Messages request: the chat body for the backends and what the answer repeats."""

    model: str
    chat: dict[str, Any]
    stream: bool = False
    stop_sequences: list[str] = field(default_factory=list)


def read_request(body: dict[str, Any], *, count_only: bool = False) -> MessagesCall:
    """Validate a `POST /v1/messages` body (`count_only`: `/v1/messages/count_tokens`, no max_tokens)."""
    model = want_str(body.get("model"), "model")
    assert model is not None
    if not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    for name in ("mcp_servers", "container"):
        if body.get(name):
            raise unsupported(f"'{name}'", name)
    messages: list[dict[str, Any]] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    raw = want_list(body.get("messages"), "messages")
    if not raw:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for i, msg in enumerate(raw):
        messages.extend(_message(msg, f"messages.{i}"))
    chat: dict[str, Any] = {"model": model, "messages": messages}
    max_tokens = want_int(body.get("max_tokens"), "max_tokens")
    if max_tokens is None and not count_only:
        raise BadRequest("'max_tokens' is required (an integer >= 1)", param="max_tokens")
    if max_tokens is not None:
        chat["max_tokens"] = max_tokens
    call = MessagesCall(model, chat, stream=bool(want_bool(body.get("stream"), "stream")))
    _sampling(body, call)
    _tools(body, chat)
    if call.stream:  # message_delta always reports usage: have the translator relay it
        chat["stream"], chat["stream_options"] = True, {"include_usage": True}
    return call


def _sampling(body: dict[str, Any], call: MessagesCall) -> None:
    chat = call.chat
    for name, high in (("temperature", 1.0), ("top_p", 1.0)):
        value = want_number(body.get(name), name, 0.0, high)
        if value is not None:
            chat[name] = value
    want_int(body.get("top_k"), "top_k", minimum=0)  # checked, then dropped: chat has no top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        call.stop_sequences = [
            s for i, s in enumerate(want_list(stops, "stop_sequences")) if want_str(s, f"stop_sequences.{i}")
        ]
        if call.stop_sequences:
            chat["stop"] = call.stop_sequences
    metadata = body.get("metadata")
    if metadata is not None:
        user = want_dict(metadata, "metadata").get("user_id")
        if want_str(user, "metadata.user_id", optional=True):
            chat["user"] = user


def _system(raw: Any) -> str:
    if raw is None or isinstance(raw, str):
        return raw or ""
    texts = []
    for i, block in enumerate(want_list(raw, "system")):
        block = want_dict(block, f"system.{i}")
        if block.get("type") != "text":
            raise BadRequest("'system' blocks must be text blocks", param=f"system.{i}.type")
        texts.append(want_str(block.get("text"), f"system.{i}.text"))
    return "\n".join(t for t in texts if t)


def _message(raw: Any, param: str) -> list[dict[str, Any]]:
    msg = want_dict(raw, param)
    role = msg.get("role")
    if role not in ("user", "assistant"):
        raise BadRequest(f"'{param}.role' must be user or assistant", param=f"{param}.role")
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = [
        want_dict(b, f"{param}.content.{j}") for j, b in enumerate(want_list(content, f"{param}.content"))
    ]
    if role == "assistant":
        return [_assistant(blocks, f"{param}.content")]
    return _user(blocks, f"{param}.content")


def _assistant(blocks: list[dict[str, Any]], param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            texts.append(want_str(block.get("text"), f"{param}.{j}.text") or "")
        elif kind == "tool_use":
            tool_input = block.get("input", {})
            calls.append(
                {
                    "id": want_str(block.get("id"), f"{param}.{j}.id"),
                    "type": "function",
                    "function": {
                        "name": want_str(block.get("name"), f"{param}.{j}.name"),
                        "arguments": _json(want_dict(tool_input, f"{param}.{j}.input"), f"{param}.{j}.input"),
                    },
                }
            )
        elif not (isinstance(kind, str) and kind in _DROPPED_BLOCKS):
            raise unsupported(f"assistant content blocks of type {label(kind)}", f"{param}.{j}.type")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    elif out["content"] is None:
        out["content"] = ""
    return out


def _json(value: dict[str, Any], param: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # integers past 64 bits, nesting past orjson's writing depth
        raise BadRequest(f"'{param}' cannot be encoded as JSON arguments", param=param) from None


def _user(blocks: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """Tool results first (chat wants them right after the assistant's calls), then the rest of the turn."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": want_str(block.get("text"), f"{param}.{j}.text")})
        elif kind == "image":
            parts.append(_image(block, f"{param}.{j}"))
        elif kind == "tool_result":
            text, images = _tool_result(block, f"{param}.{j}")
            tools.append(
                {
                    "role": "tool",
                    "tool_call_id": want_str(block.get("tool_use_id"), f"{param}.{j}.tool_use_id"),
                    "content": text,
                }
            )
            parts.extend(images)  # chat's tool messages hold text: the images follow in the user turn
        else:
            raise unsupported(f"user content blocks of type {label(kind)}", f"{param}.{j}.type")
    out = list(tools)
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _image(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = want_dict(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media = want_str(source.get("media_type"), f"{param}.source.media_type")
        data = want_str(source.get("data"), f"{param}.source.data")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = want_str(source.get("url"), f"{param}.source.url") or ""
    else:
        raise unsupported(f"image sources of type {label(kind)}", f"{param}.source.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], param: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
        images: list[dict[str, Any]] = []
    else:
        texts, images = [], []
        for k, inner in enumerate(want_list(content, f"{param}.content")):
            inner = want_dict(inner, f"{param}.content.{k}")
            if inner.get("type") == "text":
                texts.append(want_str(inner.get("text"), f"{param}.content.{k}.text") or "")
            elif inner.get("type") == "image":
                images.append(_image(inner, f"{param}.content.{k}"))
            else:
                raise unsupported(
                    f"tool_result content of type {label(inner.get('type'))}", f"{param}.content.{k}.type"
                )
        text = "\n".join(texts)
    if want_bool(block.get("is_error"), f"{param}.is_error"):
        text = f"Error: {text}"  # chat has no error flag on tool results: the model reads it in the text
    return text, images


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        chat_tools, server = [], []
        for i, tool in enumerate(want_list(tools, "tools")):
            tool = want_dict(tool, f"tools.{i}")
            if tool.get("type") not in (None, "custom"):
                server.append(label(tool.get("type")))
                continue
            fn: dict[str, Any] = {
                "name": want_str(tool.get("name"), f"tools.{i}.name"),
                "parameters": want_dict(tool.get("input_schema"), f"tools.{i}.input_schema"),
            }
            description = want_str(tool.get("description"), f"tools.{i}.description", optional=True)
            if description:
                fn["description"] = description
            chat_tools.append({"type": "function", "function": fn})
        if server:
            raise BadRequest(
                "Server tools are not supported by this gateway, only client tools (with an input_schema): "
                + ", ".join(sorted(set(server))),
                param="tools",
                code="unsupported_parameter",
            )
        if chat_tools:
            chat["tools"] = chat_tools
    choice = body.get("tool_choice")
    if choice is None:
        return
    choice = want_dict(choice, "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        chat["tool_choice"] = {
            "type": "function",
            "function": {"name": want_str(choice.get("name"), "tool_choice.name")},
        }
    elif isinstance(kind, str) and kind in _TOOL_CHOICE:
        chat["tool_choice"] = _TOOL_CHOICE[kind]
    else:
        raise BadRequest("'tool_choice.type' must be auto, any, tool or none", param="tool_choice.type")
    if (
        want_bool(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")
        and "tools" in chat
    ):
        chat["parallel_tool_calls"] = False


def count_tokens(call: MessagesCall) -> int:
    """The prompt's tokens as the gateway estimates them (~4 characters a token), tools included."""
    chars = 0
    for msg in call.chat["messages"]:
        chars += 16 + _chars(msg.get("content"))
        for tc in msg.get("tool_calls") or ():
            chars += len(tc["function"]["name"]) + len(tc["function"]["arguments"])
    if "tools" in call.chat:
        chars += len(orjson.dumps(call.chat["tools"]))
    return max(1, chars // 4)


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) if p.get("type") == "text" else _IMAGE_CHARS for p in content)
    return 0
