"""Removing credentials from text that leaves the process: error messages, span attributes, logs."""

from __future__ import annotations

import base64
import functools
import re
from urllib.parse import quote, quote_plus

from gateway.secret import Secret

MAX_TEXT = 512
# Credentials as they show up in URLs, headers and error texts: query parameters, auth schemes, key shapes.
_SECRETS = re.compile(
    r"(?i)(?P<kv>\b(?:api[_-]?key|key|token|access_token|secret|password|sig|signature|auth)=)[^&\s\"',;]+"
    r"|(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{4,}"
    r"|(?P<shape>\b(?:sk|rk|pk|gsk|nvapi|xai|AIza)[-_][A-Za-z0-9_-]{8,}|\bAKIA[0-9A-Z]{16})"
)
REDACTED = "[redacted]"
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=")
# Text beyond the final cut that is still scrubbed, so that a key straddling the cut is seen whole; the
# longest form of a secret (base64 of it) is added per secret.
_SLACK = 1024


def scrub(text: str, *secrets: Secret | str | None, limit: int = MAX_TEXT) -> str:
    """The text without credentials, then shortened to `limit` characters: redact first, cut after, so a
    key that straddles the cut cannot leave a prefix behind. Secrets are also caught in another letter
    case, URL-encoded and base64-encoded (alone or inside `user:key` as in Basic auth)."""
    keys = [s.reveal() if isinstance(s, Secret) else s for s in secrets if s]
    window = limit + _SLACK + 2 * sum(len(s) for s in keys)
    if len(text) > window:  # a long text is cut twice: never scrub megabytes on an error path
        text = text[:window]
    for secret in keys:
        plain, encoded = _secret_patterns(secret)
        text = plain.sub(REDACTED, text)
        if encoded is not None:
            text = _redact_encoded(encoded, text)
    text = _SECRETS.sub(_redact_match, text)
    return text if len(text) <= limit else text[:limit] + "..."


@functools.lru_cache(maxsize=256)
def _secret_patterns(secret: str) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """Regexes for the secret as text (any case, URL-encoded) and base64-encoded, built once per secret."""
    plain = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    caseless = re.compile("(?i:" + "|".join(re.escape(p) for p in sorted(plain, key=len, reverse=True)) + ")")
    cores = _base64_cores(secret.encode())
    return caseless, (re.compile("|".join(re.escape(c) for c in cores)) if cores else None)


def _redact_encoded(pattern: re.Pattern[str], text: str) -> str:
    """Replaces the whole base64 token around each encoded secret: its first and last characters also
    carry neighbouring bytes (`user:` before the key). Expanded by hand, as a regex would backtrack."""
    out: list[str] = []
    end = 0
    for m in pattern.finditer(text):
        start, stop = m.start(), m.end()
        if start < end:
            continue
        while start > end and text[start - 1] in _B64_CHARS:
            start -= 1
        while stop < len(text) and text[stop] in _B64_CHARS:
            stop += 1
        out += (text[end:start], REDACTED)
        end = stop
    if not out:
        return text
    out.append(text[end:])
    return "".join(out)


def _base64_cores(raw: bytes) -> list[str]:
    """The base64 characters that depend on the secret's bytes alone, for each of the three alignments
    the secret can have inside a longer encoded text (`user:key`, `key:`), standard and URL-safe."""
    cores: set[str] = set()
    for offset in range(3):
        skip = 4 if offset else 0  # the first group mixes the preceding bytes with the secret's
        whole_groups = (offset + len(raw)) // 3
        core = base64.b64encode(b"\0" * offset + raw)[skip : whole_groups * 4].decode()
        if len(core) >= 8:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return sorted(cores, key=len, reverse=True)


def _redact_match(m: re.Match[str]) -> str:
    prefix = m.group("kv") or m.group("scheme")
    return (prefix or "") + REDACTED
