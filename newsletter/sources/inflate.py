"""Decoding a compressed response without ever holding more than the size cap.

httpx decodes each network chunk whole, so 64 KB of gzip can become 64 MB before a cap is checked.
Here the raw bytes are fed to ``zlib`` with ``max_length``: each step yields a bounded slice of the
output, and decoding stops the moment the body passes the cap. A bomb costs the cap plus one slice.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

#: The encodings asked for (``Accept-Encoding``) and understood.
ACCEPTED = "gzip, deflate"
#: The most output one decompression step produces.
SLICE = 64 * 1024


class BodyTooLarge(Exception):
    """The decoded body passed the cap."""


class UnsupportedEncoding(Exception):
    """The server used a Content-Encoding this reader does not decode."""


def _decompressor(encoding: str) -> zlib._Decompress:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    return zlib.decompressobj(zlib.MAX_WBITS)  # deflate: zlib-wrapped (raw is tried on error)


class BoundedDecoder:
    """Decodes one ``Content-Encoding`` (identity, gzip, deflate) slice by slice."""

    def __init__(self, content_encoding: str | None) -> None:
        codings = [
            part.strip().lower() for part in (content_encoding or "").split(",") if part.strip()
        ]
        codings = [coding for coding in codings if coding != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise UnsupportedEncoding(", ".join(codings))
        self.encoding = codings[0] if codings else None
        self._inflater = _decompressor(self.encoding) if self.encoding else None
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded slices of ``data``, each at most ``SLICE`` bytes (raw data passes through)."""
        if self._inflater is None:
            yield data
            return
        while data:
            try:
                out = self._inflater.decompress(data, SLICE)
            except zlib.error:
                if self.encoding != "deflate" or self._started:
                    raise
                # Some servers send raw deflate for "deflate"; httpx accepts it too.
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                continue
            self._started = True
            if out:
                yield out
            if self._inflater.eof:
                rest = self._inflater.unused_data
                if rest and self.encoding in ("gzip", "x-gzip"):
                    self._inflater = _decompressor(self.encoding)  # the next gzip member
                data = rest if self.encoding in ("gzip", "x-gzip") else b""
            else:
                data = self._inflater.unconsumed_tail

    def flush(self) -> bytes:
        return self._inflater.flush(SLICE) if self._inflater is not None else b""


def read_bounded(chunks: Iterable[bytes], *, content_encoding: str | None, max_bytes: int) -> bytes:
    """The decoded body of ``chunks``; ``BodyTooLarge`` as soon as it (or the raw stream) passes
    ``max_bytes``."""
    decoder = BoundedDecoder(content_encoding)
    body = bytearray()
    raw = 0
    for chunk in chunks:
        raw += len(chunk)
        if raw > max_bytes:
            raise BodyTooLarge
        for piece in decoder.feed(chunk):
            if len(body) + len(piece) > max_bytes:
                raise BodyTooLarge
            body.extend(piece)
    body.extend(decoder.flush())
    if len(body) > max_bytes:
        raise BodyTooLarge
    return bytes(body)
