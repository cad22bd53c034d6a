"""Strict checks of a backend's base_url, so that a URL `check` accepts is one every request can use."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from pydantic_core import PydanticCustomError


def url_problems(url: str) -> list[str]:
    """Everything wrong with `url` as an API root, in words; empty when it is usable."""
    problems: list[str] = []
    if any(c.isspace() or not c.isprintable() for c in url):
        problems.append("contains whitespace or a control character")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        return [*problems, f"is not a URL ({exc})"]
    if parts.scheme not in ("http", "https"):
        problems.append(f"scheme must be http or https, not {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        problems.append(
            "must not carry credentials (user:password@): name the key's env var in api_key_env, "
            "or send it in headers"
        )
    if not parts.hostname:
        problems.append("has no host")
    problems += _port_problem(parts)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        problems.append("must not have a query string or fragment")
    return problems


def _port_problem(parts: SplitResult) -> list[str]:
    try:
        port = parts.port
    except ValueError:
        port = 0
    else:
        if port is None:
            return []
    if 1 <= port <= 65535:
        return []
    raw = parts.netloc.rpartition("@")[2].rpartition(":")[2]
    return [f"port must be a number from 1 to 65535, not {raw!r}"]


def masked(url: str) -> str:
    """The URL with its password and query replaced (either may hold a key), fit to appear in an error."""
    scheme, sep, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}{':***' if colon else ''}@{host}"
    path, query, _ = tail.partition("?")
    return f"{scheme}{sep}{authority}{path}{'?***' if query else ''}"


def check_base_url(url: str) -> str:
    """Pydantic validator: one problem naming the (password-masked) value and every reason found."""
    problems = url_problems(url)
    if problems:
        message = f"{masked(url)!r}: {'; '.join(problems)}"
        raise PydanticCustomError("base_url", "{message}", {"message": message})
    return url
