"""Capped decompression of upstream bodies: a gzip bomb costs at most the body cap, then a typed error."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from gateway.providers.base import ProviderError

# The content-codings we ask for (Accept-Encoding) and can undo; anything else is refused, not passed on.
ACCEPT_ENCODING = "gzip, deflate"
PIECE = 1024 * 1024  # the most one decompress call produces: memory stays flat while a stream is inflated


class Inflater:
    """Undoes gzip or deflate incrementally, never producing more than `cap` bytes in all."""

    __slots__ = ("_d", "_encoding", "_room")

    def __init__(self, encoding: str, cap: int) -> None:
        self._encoding = encoding
        self._room = cap
        self._d: zlib._Decompress | None = None  # made on the first byte: an empty body is no error

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed bytes of one compressed chunk, in pieces of at most PIECE bytes."""
        if not data:
            return
        d = self._d
        if d is None:
            d = self._d = zlib.decompressobj(_wbits(self._encoding, data[0]))
        while True:
            want = min(PIECE, self._room + 1)
            try:
                out = d.decompress(data, want)
            except zlib.error:
                raise ProviderError("protocol", f"the {self._encoding} body is corrupt") from None
            self._room -= len(out)
            if self._room < 0:
                raise ProviderError("protocol", "the decompressed upstream body exceeds the size limit")
            if out:
                yield out
            data = d.unconsumed_tail
            if d.eof or (not data and len(out) < want):
                return

    def finish(self) -> None:
        """Raises when the body ended before its compressed stream did (a cut the bytes alone do not show)."""
        if self._d is not None and not self._d.eof:
            raise ProviderError("protocol", f"the {self._encoding} body was cut short")


def _wbits(encoding: str, first: int) -> int:
    if encoding == "gzip":
        return zlib.MAX_WBITS | 16
    # deflate is zlib-wrapped per the RFC, but some servers send it raw: the first byte tells.
    return zlib.MAX_WBITS if first & 0x0F == 8 else -zlib.MAX_WBITS


def inflater_for(encoding: str | None, cap: int) -> Inflater | None:
    """None for an uncompressed body (the common case costs nothing); a typed error for an unknown coding."""
    if not encoding:
        return None
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return Inflater("gzip", cap)
    if coding == "deflate":
        return Inflater("deflate", cap)
    raise ProviderError("protocol", f"unsupported content-encoding {coding[:32]!r}")
