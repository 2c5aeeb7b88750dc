"""Request bodies read and decoded by us, bounded in bytes on the wire, bytes decoded and time.

The listeners run with aiohttp's own decompression off, so every handler that takes a body reads the
raw bytes through ``read_body`` and inflates them here. Three bounds hold while the body streams in,
never after the fact:

* ``max_wire``: bytes as sent (a declared ``Content-Length`` is refused before any byte is read);
* ``max_decoded``: bytes once decoded, checked while inflating: zlib is asked for at most the room
  left plus one byte, so a body costs at most ``max_decoded`` bytes of memory and is answered 413 as
  soon as it passes the bound;
* the ratio: once a stream has produced ``RATIO_FLOOR`` (1 MiB), output more than ``MAX_RATIO`` (100)
  times the compressed input it consumed is a bomb (real JSON and logs compress 5-20:1), answered
  413 after about 1 MiB of output instead of after ``max_decoded``;
* ``deadline``: the whole body must be in within this many seconds (a client trickling one byte a
  second gets 408, and the handler's slot is freed).

Inflating yields to the event loop every ``STEP`` bytes of output, so even a body that inflates to
the limit never holds the loop for more than a fraction of a millisecond at a time. A body that does
not decode as its ``Content-Encoding`` says, or whose compressed stream is cut short, is 400 with the
reason; a coding we do not speak is 415.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterator
from typing import Final, Protocol

READ_CHUNK: Final = 64 * 1024
STEP: Final = 256 * 1024
"""Largest piece of output produced by one inflate call (about 0.2 ms of CPU)."""

CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate"})
MAX_RATIO: Final = 100
"""Past ``RATIO_FLOOR`` bytes of output, a stream inflating more than 100:1 is refused as a bomb."""
RATIO_FLOOR: Final = 1024 * 1024


class BodyError(Exception):
    """A body we refuse: ``status`` (400, 408, 413, 415) and a reason the client can act on."""

    def __init__(self, status: int, detail: str, limit: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.limit = limit  # the byte bound that was passed, for a 413


class RawStream(Protocol):
    """What ``read_body`` needs from ``request.content`` (a ``StreamReader`` without decoding)."""

    async def read(self, n: int = -1, /) -> bytes: ...


def parse_codings(header: str) -> list[str]:
    """``Content-Encoding`` as the list of codings to undo, outermost first; 415 for unknown ones."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    unknown = [c for c in codings if c != "identity" and c not in CODINGS]
    if unknown:
        raise BodyError(415, f"Content-Encoding {unknown[0]!r} is not supported: use gzip or deflate")
    return [c for c in reversed(codings) if c != "identity"]


class Inflater:
    """One coding undone incrementally: ``feed`` returns output pieces of at most ``STEP`` bytes.

    ``limit`` is the total output this stream may produce; past it ``BodyError(413)`` is raised before
    more than ``limit + 1`` bytes were ever produced.
    """

    def __init__(self, coding: str, limit: int, too_large: str) -> None:
        self.coding = coding
        self.limit = limit
        self.produced = 0
        self.consumed = 0
        self._too_large = too_large
        self._obj: zlib._Decompress | None = None  # created on the first byte (deflate sniffs it)

    def _new(self, first: int) -> zlib._Decompress:
        if self.coding == "deflate":
            # RFC 9110 says zlib (RFC 1950); some clients send raw deflate. A zlib stream's first byte
            # has compression method 8 in its low nibble.
            return zlib.decompressobj(15 if first & 0x0F == 8 else -15)
        return zlib.decompressobj(31)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Inflate ``data``, yielding output pieces; raises ``BodyError`` on bad data or the bound."""
        while data:
            if self._obj is None or self._obj.eof:
                if self._obj is not None and self.coding == "deflate":
                    raise BodyError(400, "the body has data after the end of its deflate stream")
                self._obj = self._new(data[0])
            room = self.limit + 1 - self.produced
            try:
                out = self._obj.decompress(data, min(STEP, room))
            except zlib.error:
                raise BodyError(400, f"the body is not valid {self.coding} data") from None
            fed = len(data)
            # After the end of a stream: the next gzip member, or trailing garbage.
            data = self._obj.unused_data if self._obj.eof else self._obj.unconsumed_tail
            self.produced += len(out)
            self.consumed += fed - len(data)
            if self.produced > self.limit:
                raise BodyError(413, self._too_large, self.limit)
            if self.produced > RATIO_FLOOR and self.produced > MAX_RATIO * self.consumed:
                raise BodyError(
                    413,
                    f"the {self.coding} body inflates more than {MAX_RATIO}:1 past {RATIO_FLOOR} bytes: "
                    "refused as a decompression bomb",
                    self.limit,
                )
            if out:
                yield out

    def finish(self) -> None:
        """At the end of the body: a compressed stream that did not end is a truncated body."""
        if self._obj is not None and not self._obj.eof:
            raise BodyError(400, f"the {self.coding} body is truncated")
        if self._obj is None:
            raise BodyError(400, f"the body is empty but labelled {self.coding}")


class BodyReader:
    """Streams a raw body through its decoders, bounding wire bytes, decoded bytes and time."""

    def __init__(
        self,
        content_encoding: str,
        *,
        max_wire: int,
        max_decoded: int,
        wire_setting: str,
        decoded_setting: str,
    ) -> None:
        self.max_wire = max_wire
        self.max_decoded = max_decoded
        self._wire_msg = f"the body is larger than {max_wire} bytes ({wire_setting})"
        self._decoded_msg = f"the decompressed body is larger than {max_decoded} bytes ({decoded_setting})"
        self.codings = parse_codings(content_encoding)
        self.inflaters = [Inflater(c, max_decoded, self._decoded_msg) for c in self.codings]
        self.wire = 0
        self.decoded = 0
        self.parts: list[bytes] = []

    def check_declared(self, content_length: int | None) -> None:
        if content_length is not None and content_length > self.max_wire:
            raise BodyError(413, self._wire_msg, self.max_wire)

    def _through(self, data: bytes, stage: int) -> Iterator[bytes]:
        if stage == len(self.inflaters):
            yield data
            return
        for piece in self.inflaters[stage].feed(data):
            yield from self._through(piece, stage + 1)

    def pieces(self, raw: bytes) -> Iterator[bytes]:
        """Decoded pieces of one raw chunk (each at most ``STEP`` bytes when compressed)."""
        self.wire += len(raw)
        if self.wire > self.max_wire:
            raise BodyError(413, self._wire_msg, self.max_wire)
        for piece in self._through(raw, 0):
            self.decoded += len(piece)
            if self.decoded > self.max_decoded:
                raise BodyError(413, self._decoded_msg, self.max_decoded)
            yield piece

    def finish(self) -> None:
        for inflater in self.inflaters:
            inflater.finish()


async def read_body(
    content: RawStream,
    *,
    content_encoding: str,
    content_length: int | None,
    max_wire: int,
    max_decoded: int,
    deadline: float,
    wire_setting: str,
    decoded_setting: str,
    first_line: Callable[[bytes], None] | None = None,
    first_line_limit: int = 16 * 1024,
) -> bytes:
    """The whole decoded body, or ``BodyError``; see the module docstring for the bounds.

    ``first_line`` (the Sentry relay's key check on the envelope header) is called with the decoded
    body's first line as soon as it is complete, before the rest is read or inflated; a first line
    longer than ``first_line_limit`` is refused (400).
    """
    reader = BodyReader(
        content_encoding,
        max_wire=max_wire,
        max_decoded=max_decoded,
        wire_setting=wire_setting,
        decoded_setting=decoded_setting,
    )
    reader.check_declared(content_length)
    head = bytearray() if first_line is not None else None
    try:
        async with asyncio.timeout(deadline):
            while raw := await content.read(READ_CHUNK):
                for piece in reader.pieces(raw):
                    reader.parts.append(piece)
                    if head is not None and first_line is not None:
                        newline = piece.find(b"\n")
                        head += piece if newline < 0 else piece[:newline]
                        if len(head) > first_line_limit:
                            head = bytearray()  # a header line this long carries no usable key
                            newline = 0
                        if newline >= 0:
                            first_line(bytes(head))
                            head = None
                    if reader.inflaters:
                        await asyncio.sleep(0)  # inflating: let the loop breathe between pieces
            reader.finish()
    except TimeoutError:
        raise BodyError(
            408, f"the body did not arrive within {deadline:g}s (limits.body_timeout): send it faster"
        ) from None
    if head is not None and first_line is not None:
        first_line(bytes(head))
    return b"".join(reader.parts)


def inflate(data: bytes, coding: str, limit: int, setting: str) -> bytes:
    """One-shot bounded inflate (the legacy ``/store/`` body's zlib inside base64); same rules."""
    inflater = Inflater(coding, limit, f"the decompressed body is larger than {limit} bytes ({setting})")
    parts = list(inflater.feed(data))
    inflater.finish()
    return b"".join(parts)
