"""The nesting depth of a parsed JSON request body, checked without recursion and only when it can matter."""

from __future__ import annotations

from typing import Any

# Well under the 254 levels orjson can write back (it reads 1024): a body we accepted can always be sent on.
MAX_JSON_DEPTH = 128


def too_deep(raw: bytes | bytearray, doc: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `doc` (parsed from `raw`) nests containers more than `limit` levels deep."""
    # Fewer brackets than the limit cannot nest deeper than it: the common case is two C-speed scans.
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    # Level by level, exact types (orjson makes only dict and list): ~0.5 us per value, no recursion.
    level: list[Any] = [doc]
    for _ in range(limit):
        deeper: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return True
