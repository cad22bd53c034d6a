"""OpenAI's Responses API request -> a chat completions request, through normalized input items.

Input items are first normalized to the shape `GET /v1/responses/{id}/input_items` lists (every item with an
id, message content always a list of parts), so one function turns them into chat messages whether they came
in this request or from a stored conversation (`previous_response_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import BadRequest
from gateway.frontdoors.wire import (
    kind_of,
    label,
    new_id,
    unsupported,
    want_bool,
    want_dict,
    want_int,
    want_list,
    want_number,
    want_str,
)

Item = dict[str, Any]

_ROLES = ("user", "assistant", "system", "developer")
_DETAILS = ("auto", "low", "high")
_TOOL_CHOICES = ("none", "auto", "required")
_METADATA_PAIRS, _METADATA_KEY, _METADATA_VALUE = 16, 64, 512
# Requests for data only built-in tools or reasoning items produce: nothing to add, since those never appear.
_HARMLESS_INCLUDES = frozenset(
    {
        "reasoning.encrypted_content",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "message.input_image.image_url",
    }
)


@dataclass(slots=True)
class ResponsesCall:
    """A validated Responses request: what goes to the backend and what the Response object repeats."""

    model: str
    items: list[Item]  # this request's input items, normalized
    instructions: str | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    chat_fields: dict[str, Any] = field(default_factory=dict)  # sampling, tools, format, user...
    echo: dict[str, Any] = field(default_factory=dict)  # the Response object's copy of the request


def read_request(body: dict[str, Any]) -> ResponsesCall:
    """Validate a `POST /v1/responses` body; every refusal is a 400 naming the field."""
    _refuse_unserved(body)
    model = want_str(body.get("model"), "model")
    assert model is not None
    if not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        items = [_message({"role": "user", "content": raw_input}, "input")]
    elif isinstance(raw_input, list):
        items = [_item(it, f"input[{i}]") for i, it in enumerate(raw_input)]
    elif raw_input is None:
        items = []
    else:
        raise BadRequest(f"'input' must be a string or an array, not {kind_of(raw_input)}", param="input")
    call = ResponsesCall(
        model=model,
        items=items,
        instructions=want_str(body.get("instructions"), "instructions", optional=True),
        stream=bool(want_bool(body.get("stream"), "stream")),
        store=want_bool(body.get("store"), "store") is not False,
        previous_response_id=want_str(
            body.get("previous_response_id"), "previous_response_id", optional=True
        ),
    )
    if not items and call.previous_response_id is None:
        raise BadRequest("'input' is required (a string or a non-empty array)", param="input")
    _sampling(body, call)
    _tools(body, call)
    _text_format(body, call)
    return call


def _refuse_unserved(body: dict[str, Any]) -> None:
    if body.get("background") is True:
        raise unsupported("'background' mode (responses that run after the request returns)", "background")
    for name in ("conversation", "prompt", "context_management"):
        if body.get(name) is not None:
            raise unsupported(f"'{name}'", name)
    if body.get("truncation") not in (None, "disabled"):
        raise unsupported("'truncation: auto' (dropping items that do not fit)", "truncation")
    if body.get("top_logprobs") not in (None, 0):
        raise unsupported("'top_logprobs'", "top_logprobs")
    include = body.get("include")
    if include is not None:
        for i, name in enumerate(want_list(include, "include")):
            if not isinstance(name, str) or name not in _HARMLESS_INCLUDES:
                raise unsupported(f"include value {name!r}", f"include[{i}]")


def _sampling(body: dict[str, Any], call: ResponsesCall) -> None:
    fields, echo = call.chat_fields, call.echo
    max_out = want_int(body.get("max_output_tokens"), "max_output_tokens")
    if max_out is not None:
        fields["max_tokens"] = max_out
    echo["max_output_tokens"] = max_out
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        value = want_number(body.get(name), name, 0.0, high)
        if value is not None:
            fields[name] = value
        echo[name] = value
    user = want_str(body.get("user"), "user", optional=True)
    if user is not None:  # the Response object's `user` is a string or absent, never null
        fields["user"] = echo["user"] = user
    echo["metadata"] = _metadata(body.get("metadata"))
    reasoning = body.get("reasoning")
    if reasoning is not None:
        effort = want_dict(reasoning, "reasoning").get("effort")
        if effort is not None:
            fields["reasoning_effort"] = want_str(effort, "reasoning.effort")
        echo["reasoning"] = {"effort": effort, "summary": None}
    else:
        echo["reasoning"] = None


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    meta = want_dict(raw, "metadata")
    if len(meta) > _METADATA_PAIRS:
        raise BadRequest(f"'metadata' may hold at most {_METADATA_PAIRS} pairs", param="metadata")
    for key, value in meta.items():
        if len(key) > _METADATA_KEY or not isinstance(value, str) or len(value) > _METADATA_VALUE:
            raise BadRequest(
                f"'metadata' keys are strings of at most {_METADATA_KEY} characters and values strings of "
                f"at most {_METADATA_VALUE}",
                param="metadata",
            )
    return dict(meta)


def _tools(body: dict[str, Any], call: ResponsesCall) -> None:
    tools = body.get("tools")
    chat_tools: list[dict[str, Any]] = []
    echo_tools: list[dict[str, Any]] = []
    if tools is not None:
        builtin = []
        for i, tool in enumerate(want_list(tools, "tools")):
            tool = want_dict(tool, f"tools[{i}]")
            if tool.get("type") != "function":
                builtin.append(label(tool.get("type")))
                continue
            fn, echoed = _function_tool(tool, f"tools[{i}]")
            chat_tools.append({"type": "function", "function": fn})
            echo_tools.append(echoed)
        if builtin:
            raise BadRequest(
                "Built-in tools are not supported by this gateway, only function tools (which run in your "
                f"code): {', '.join(sorted(set(builtin)))}",
                param="tools",
                code="unsupported_parameter",
            )
    if chat_tools:
        call.chat_fields["tools"] = chat_tools
    call.echo["tools"] = echo_tools
    choice = body.get("tool_choice")
    call.echo["tool_choice"] = "auto" if choice is None else choice
    if choice is not None:
        call.chat_fields["tool_choice"] = _tool_choice(choice)
    parallel = want_bool(body.get("parallel_tool_calls"), "parallel_tool_calls")
    call.echo["parallel_tool_calls"] = parallel is not False
    if parallel is not None and chat_tools:  # chat refuses the flag without tools
        call.chat_fields["parallel_tool_calls"] = parallel


def _function_tool(tool: dict[str, Any], param: str) -> tuple[dict[str, Any], dict[str, Any]]:
    name = want_str(tool.get("name"), f"{param}.name")
    description = want_str(tool.get("description"), f"{param}.description", optional=True)
    parameters = tool.get("parameters")
    if parameters is not None:
        want_dict(parameters, f"{param}.parameters")
    strict = want_bool(tool.get("strict"), f"{param}.strict")
    fn: dict[str, Any] = {"name": name}
    if description is not None:
        fn["description"] = description
    if parameters is not None:
        fn["parameters"] = parameters
    if strict is not None:
        fn["strict"] = strict
    echoed = {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": parameters,
        "strict": strict,
    }
    return fn, echoed


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise BadRequest(f"'tool_choice' must be one of {', '.join(_TOOL_CHOICES)}", param="tool_choice")
        return choice
    choice = want_dict(choice, "tool_choice")
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": want_str(choice.get("name"), "tool_choice.name")}}
    raise unsupported(f"tool_choice of type {label(choice.get('type'))}", "tool_choice")


def _text_format(body: dict[str, Any], call: ResponsesCall) -> None:
    text = body.get("text")
    fmt: Any = None
    if text is not None:
        fmt = want_dict(text, "text").get("format")
    call.echo["text"] = {"format": {"type": "text"}} if fmt is None else {"format": fmt}
    if isinstance(text, dict) and text.get("verbosity") is not None:
        call.echo["text"]["verbosity"] = text["verbosity"]
    if fmt is None:
        return
    fmt = want_dict(fmt, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        call.chat_fields["response_format"] = {"type": "json_object"}
        return
    if kind != "json_schema":
        raise BadRequest("'text.format.type' must be text, json_object or json_schema", param="text.format")
    schema: dict[str, Any] = {
        "name": want_str(fmt.get("name"), "text.format.name"),
        "schema": want_dict(fmt.get("schema"), "text.format.schema"),
    }
    for key in ("description", "strict"):
        if fmt.get(key) is not None:
            schema[key] = fmt[key]
    call.chat_fields["response_format"] = {"type": "json_schema", "json_schema": schema}


# ---------------------------------------------------------------------------------------------------------
# Input items, normalized
# ---------------------------------------------------------------------------------------------------------


def _item(raw: Any, param: str) -> Item:
    item = want_dict(raw, param)
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, param)
    if kind == "function_call":
        return {
            "id": _given_id(item, "fc"),
            "type": "function_call",
            "call_id": _nonempty(item.get("call_id"), f"{param}.call_id"),
            "name": _nonempty(item.get("name"), f"{param}.name"),
            "arguments": want_str(item.get("arguments"), f"{param}.arguments"),
            "status": "completed",
        }
    if kind == "function_call_output":
        return {
            "id": _given_id(item, "fco"),
            "type": "function_call_output",
            "call_id": _nonempty(item.get("call_id"), f"{param}.call_id"),
            "output": _tool_output(item.get("output"), f"{param}.output"),
            "status": "completed",
        }
    if kind == "item_reference":
        raise unsupported("'item_reference' input items (use previous_response_id)", param)
    raise unsupported(f"input items of type {label(kind)}", f"{param}.type")


def _given_id(item: dict[str, Any], kind: str) -> str:
    """Items passed back from an earlier output keep their id; new ones get one."""
    given = item.get("id")
    if isinstance(given, str) and 0 < len(given) <= 128:
        return given
    return new_id(kind)


def _nonempty(value: Any, param: str) -> str:
    text = want_str(value, param)
    if not text:
        raise BadRequest(f"'{param}' must be a non-empty string", param=param)
    return text


def _message(item: dict[str, Any], param: str) -> Item:
    role = item.get("role")
    if role not in _ROLES:
        raise BadRequest(f"'{param}.role' must be one of {', '.join(_ROLES)}", param=f"{param}.role")
    content = item.get("content")
    if isinstance(content, str):
        parts = [{"type": "input_text", "text": content}]
    else:
        parts = [
            _part(p, f"{param}.content[{j}]") for j, p in enumerate(want_list(content, f"{param}.content"))
        ]
    if role == "assistant":
        return {
            "id": _given_id(item, "msg"),
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [_as_output(p, f"{param}.content") for p in parts],
        }
    if role != "user" and any(p["type"] != "input_text" for p in parts):
        raise BadRequest(f"'{param}': {role} messages hold text only", param=f"{param}.content")
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": parts,
    }


def _part(raw: Any, param: str) -> dict[str, Any]:
    part = want_dict(raw, param)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": kind, "text": want_str(part.get("text"), f"{param}.text")}
    if kind == "refusal":
        return {"type": "refusal", "refusal": want_str(part.get("refusal"), f"{param}.refusal")}
    if kind == "input_image":
        if part.get("file_id") is not None:
            raise unsupported(
                "'input_image' by 'file_id' (there is no Files API here; pass image_url)", param
            )
        url = _nonempty(part.get("image_url"), f"{param}.image_url")
        detail = part.get("detail", "auto")
        if detail not in _DETAILS:
            raise BadRequest(
                f"'{param}.detail' must be one of {', '.join(_DETAILS)}", param=f"{param}.detail"
            )
        return {"type": "input_image", "image_url": url, "detail": detail}
    if kind == "input_file":
        raise unsupported("'input_file' content", f"{param}.type")
    raise BadRequest(f"'{param}.type' {label(kind)} is not a known content type", param=f"{param}.type")


def _as_output(part: dict[str, Any], param: str) -> dict[str, Any]:
    """An assistant message's part as an output part (what the model said earlier)."""
    if part["type"] in ("input_text", "output_text"):
        return {"type": "output_text", "text": part["text"], "annotations": [], "logprobs": []}
    if part["type"] == "refusal":
        return part
    raise BadRequest(f"'{param}': assistant messages hold text only", param=param)


def _tool_output(raw: Any, param: str) -> str:
    """A function's result as text (chat's tool messages hold text); a list of text parts is joined."""
    if isinstance(raw, str):
        return raw
    texts = []
    for j, part in enumerate(want_list(raw, param)):
        part = want_dict(part, f"{param}[{j}]")
        if part.get("type") != "input_text":
            raise unsupported(
                f"function_call_output parts of type {label(part.get('type'))}", f"{param}[{j}]"
            )
        texts.append(want_str(part.get("text"), f"{param}[{j}].text"))
    return "".join(t for t in texts if t is not None)


# ---------------------------------------------------------------------------------------------------------
# Normalized items -> chat
# ---------------------------------------------------------------------------------------------------------


def chat_body(call: ResponsesCall, history: list[Item]) -> dict[str, Any]:
    """The canonical chat request: instructions, the stored conversation, this request's items."""
    messages: list[dict[str, Any]] = []
    if call.instructions:
        messages.append({"role": "system", "content": call.instructions})
    messages.extend(to_messages([*history, *call.items]))
    if not messages:
        raise BadRequest("the request has no input to answer", param="input")
    body: dict[str, Any] = {"model": call.model, "messages": messages, **call.chat_fields}
    if call.stream:  # the Response object always reports usage: have the translator relay it
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    return body


def to_messages(items: list[Item]) -> list[dict[str, Any]]:
    """Chat messages for normalized items; function calls join the assistant message before them."""
    out: list[dict[str, Any]] = []
    calls: set[str] = set()
    for item in items:
        kind = item["type"]
        if kind == "message":
            out.append(_chat_message(item))
        elif kind == "function_call":
            calls.add(item["call_id"])
            tool_call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                if not last.get("content"):
                    last["content"] = None
                last.setdefault("tool_calls", []).append(tool_call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})
        else:
            if item["call_id"] not in calls:
                raise BadRequest(
                    f"No function call found for function_call_output with call_id {item['call_id']!r}",
                    param="input",
                )
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return out


def _chat_message(item: Item) -> dict[str, Any]:
    parts = item["content"]
    if item["role"] == "assistant":
        text = "".join(p["text"] if p["type"] == "output_text" else p["refusal"] for p in parts)
        return {"role": "assistant", "content": text}
    role = "system" if item["role"] == "developer" else item["role"]  # not every backend knows developer
    if all(p["type"] == "input_text" for p in parts):
        return {"role": role, "content": "\n".join(p["text"] for p in parts)}
    content = [
        {"type": "text", "text": p["text"]}
        if p["type"] == "input_text"
        else {"type": "image_url", "image_url": {"url": p["image_url"], "detail": p["detail"]}}
        for p in parts
    ]
    return {"role": role, "content": content}
