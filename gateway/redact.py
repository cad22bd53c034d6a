"""Removing credentials from text that leaves the process: error messages, span attributes, logs."""

from __future__ import annotations

import re

_MAX_TEXT = 512
# Credentials as they show up in URLs, headers and error texts: query parameters, auth schemes, key shapes.
_SECRETS = re.compile(
    r"(?i)(?P<kv>\b(?:api[_-]?key|key|token|access_token|secret|password|sig|signature|auth)=)[^&\s\"',;]+"
    r"|(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{4,}"
    r"|(?P<shape>\b(?:sk|rk|pk|gsk|nvapi|xai|AIza)[-_][A-Za-z0-9_-]{8,}|\bAKIA[0-9A-Z]{16})"
)
REDACTED = "[redacted]"


def scrub(text: str, *secrets: str | None) -> str:
    """The text without credentials: the exact secrets given, then anything shaped like a key; shortened."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _SECRETS.sub(_redact_match, text)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _redact_match(m: re.Match[str]) -> str:
    prefix = m.group("kv") or m.group("scheme")
    return (prefix or "") + REDACTED
