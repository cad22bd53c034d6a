"""Test helpers for the front doors' streams: named SSE events parsed back, checked against schemas."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from tests.spec import SpecValidator


def named_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON payload) of every event; fails on any other framing than `event:` + one `data:`."""
    out = []
    assert data.endswith(b"\n\n") or not data, data[-80:]
    for block in data.split(b"\n\n"):
        if not block:
            continue
        lines = block.split(b"\n")
        assert len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
        out.append((lines[0][7:].decode(), orjson.loads(lines[1][6:])))
    return out


@functools.cache
def _schema_by_type(spec: SpecValidator) -> dict[str, str]:
    """Responses stream event type -> the name of its schema (read from ResponseStreamEvent's branches)."""
    table = {}
    for branch in spec.schema("ResponseStreamEvent")["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[1]
        table[spec.schema(name)["properties"]["type"]["enum"][0]] = name
    return table


def validate_responses_events(spec: SpecValidator, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Each event against its own schema (not the union, which a wrong event could slip through),
    named as its type, numbered 0, 1, 2, ... and all about one response id."""
    table = _schema_by_type(spec)
    ids = set()
    for seq, (name, doc) in enumerate(events):
        assert name == doc["type"], (name, doc)
        assert doc["sequence_number"] == seq, (seq, doc)
        spec.validate(table[doc["type"]], doc)
        if "response" in doc:
            ids.add(doc["response"]["id"])
    assert len(ids) <= 1, ids
