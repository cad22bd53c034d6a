"""A credential held in memory: its repr and str never show it, only `reveal()` does."""

from __future__ import annotations

import hmac
from typing import NoReturn


class Secret:
    """Wraps a key so that a log line, a traceback's locals, a repr or an f-string cannot print it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain value, for the one place that must send it (a header) or scrub it from a text."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        # As bytes: compare_digest refuses str with non-ASCII characters, and a key may hold them.
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled")  # nor shipped to another process by accident
