"""An upstream stream read through its adapter: bytes -> decoder -> translator -> canonical chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.providers.base import ProviderError, StreamDecoder, StreamTranslator, Usage


class UpstreamStream:
    """Each `read` takes one upstream read and returns the canonical chunks it made (maybe none). Once the
    translator saw the clean end, or the bytes ran out, the translator is flushed once; bytes that run out
    before a clean end are a ProviderError("protocol"). Nothing is read after the clean end."""

    __slots__ = ("chunks", "decoder", "translator", "done")

    def __init__(self, chunks: AsyncIterator[bytes], decoder: StreamDecoder, translator: StreamTranslator):
        self.chunks = chunks
        self.decoder = decoder
        self.translator = translator
        self.done = False  # ended cleanly and flushed: nothing more to read

    @property
    def usage(self) -> Usage | None:
        return self.translator.usage

    async def read(self) -> list[bytes]:
        try:
            chunk = await anext(self.chunks)
        except StopAsyncIteration:
            return self.end()
        return self.feed(chunk)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The chunks one upstream read made (the relay calls this itself: one coroutine less per read)."""
        events = self.decoder.feed(chunk)
        translator = self.translator
        if len(events) == 1:  # the usual read: one event, its chunks as the translator made them
            out = translator.translate(events[0])
        else:
            out = []
            for event in events:
                out += translator.translate(event)
                if translator.ended:
                    break
        if translator.ended:
            return out + self._flush()
        return out

    def end(self) -> list[bytes]:
        """The upstream's bytes ended: what the flush gives, or ProviderError("protocol") if unfinished."""
        out = self._flush()
        if not self.done:
            raise ProviderError("protocol", "upstream closed the stream before it finished")
        return out

    def _flush(self) -> list[bytes]:
        out = self.translator.flush()
        self.done = self.translator.ended
        return out
