"""Whether the gateway may serve on its address: without client keys, only on loopback unless allowed open."""

from __future__ import annotations

import ipaddress
import logging
import sys
from dataclasses import dataclass

from gateway.settings import Settings

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also as ::ffff:127.x) and localhost; names are not resolved."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


@dataclass(frozen=True, slots=True)
class Verdict:
    """`refusal`: the one line explaining why the process must not serve; `warning`: serve, but say so."""

    refusal: str | None = None
    warning: str | None = None


def decide(host: str, has_client_keys: bool, allow_open: bool) -> Verdict:
    """The exposure rule: keys, or loopback, or the operator's explicit consent to an open relay."""
    if has_client_keys or is_loopback(host):
        return Verdict()
    if allow_open:
        return Verdict(
            warning=f"serving on {host} with no client keys: anyone who reaches this port can spend the "
            "backends' keys (ROUTEWAY_ALLOW_OPEN / --allow-open is set)"
        )
    return Verdict(
        refusal=f"refusing to serve on {host} with no client keys: set ROUTEWAY_API_KEYS, listen on "
        "127.0.0.1, or pass --allow-open (ROUTEWAY_ALLOW_OPEN=true) to run an open relay"
    )


def check_keys(client_keys: frozenset[str], admin_key: str) -> str | None:
    """A reason the configured keys cannot work, or None; never quotes a key."""
    for name, keys in (("ROUTEWAY_API_KEYS", client_keys), ("ROUTEWAY_ADMIN_KEY", {admin_key.strip()})):
        if any(k and not (k.isascii() and k.isprintable() and " " not in k) for k in keys):
            return f"{name}: keys must be printable ASCII without spaces (they travel in a header)"
    if admin_key.strip() in client_keys:
        return "ROUTEWAY_ADMIN_KEY must not also be a client key (ROUTEWAY_API_KEYS)"
    return None


def verdict_for(settings: Settings) -> Verdict:
    keys = settings.client_keys()
    problem = check_keys(keys, settings.admin_key)
    if problem is not None:
        return Verdict(refusal=problem)
    return decide(settings.host, bool(keys) or settings.require_keys, settings.allow_open)


def enforce(settings: Settings, log: logging.Logger) -> None:
    """Ends the process with exit code 2 and one line on stderr, or logs the warning of an open address."""
    verdict = verdict_for(settings)
    if verdict.refusal is not None:
        sys.stderr.write(f"routeway: {verdict.refusal}\n")
        sys.stderr.flush()
        raise SystemExit(2)
    if verdict.warning is not None:
        log.warning(verdict.warning)
