"""A strict, incremental RFC 9112 request parser for the fuzzer's recording upstream.

Why by hand, and not httptools or aiohttp: the fuzzer asks whether the gateway and the app agree on
where each request ends. The gateway parses with llhttp; an upstream parsing with llhttp too (httptools,
or aiohttp's C parser, which is llhttp as well) would share its every quirk, so a byte sequence that
fools llhttp would fool both the same way and no desync could be seen. This parser shares no code with
llhttp and takes the strictest reading of the grammar wherever RFC 9112 gives a choice: CRLF only, no
obs-fold, no whitespace before the colon, token field names, exactly one Content-Length of digits,
Transfer-Encoding exactly ``chunked``, never both, chunk sizes of hex digits with well-formed extensions,
CRLF after every chunk's data. Anything else raises ``StrictError``: the gateway must never send it.

It is fed bytes as they arrive and yields each completed request; a request whose bytes stop early
never completes (the invariant counts completed requests only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
VCHAR_OBS = frozenset(range(0x21, 0x7F)) | frozenset(range(0x80, 0x100))
FIELD_CONTENT = VCHAR_OBS | {0x20, 0x09}
# Target characters: any visible ASCII but "#". Lenient on purpose, the one place: llhttp lets through
# characters RFC 3986 leaves out ("|", "{", "^", ...) and the gateway relays them as received. They do
# not move a message boundary (no space, control byte or fragment can be in a target here).
TARGET = frozenset(range(0x21, 0x7F)) - {0x23}
HEX = frozenset(b"0123456789abcdefABCDEF")
QDTEXT = frozenset({0x09, 0x20, 0x21}) | frozenset(range(0x23, 0x5C)) | frozenset(range(0x5D, 0x7F))
MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096


class StrictError(Exception):
    """The bytes are not a request this strict reading accepts."""


@dataclass
class Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw_head: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n.lower() == name]
        return values[0] if len(values) == 1 else None


@dataclass
class StrictParser:
    """Feed bytes with ``feed``; it returns the requests completed by them, in order."""

    buffer: bytearray = field(default_factory=bytearray)
    current: Request | None = None
    remaining: int = 0  # body bytes still expected (Content-Length), or of the current chunk
    chunked: bool = False
    state: str = "head"  # head, length, chunk_size, chunk_data, chunk_crlf, trailer
    body: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Request]:
        self.buffer += data
        done: list[Request] = []
        while True:
            before = (len(self.buffer), self.state)
            request = self._step()
            if request is not None:
                done.append(request)
            elif (len(self.buffer), self.state) == before:
                return done  # no progress: more bytes needed

    def _step(self) -> Request | None:
        buf = self.buffer
        if self.state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise StrictError("head too large")
                _no_bare_cr_lf(bytes(buf))
                return None
            head = bytes(buf[: end + 4])
            del buf[: end + 4]
            self.current = _parse_head(head)
            self._frame(self.current)
            if self.state == "head":
                return self._complete()
            return None
        if self.state == "length":
            take = min(self.remaining, len(buf))
            self.body += buf[:take]
            del buf[:take]
            self.remaining -= take
            if self.remaining == 0:
                self.state = "head"
                return self._complete()
            return None
        if self.state == "chunk_size":
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE or b"\n" in buf or b"\r" in buf[:-1]:
                    raise StrictError("bad chunk line")
                return None
            line = bytes(buf[:end])
            del buf[: end + 2]
            size = _chunk_size(line)
            if size == 0:
                self.state = "trailer"
            else:
                self.remaining = size
                self.state = "chunk_data"
            return None
        if self.state == "chunk_data":
            take = min(self.remaining, len(buf))
            self.body += buf[:take]
            del buf[:take]
            self.remaining -= take
            if self.remaining == 0:
                self.state = "chunk_crlf"
            return None
        if self.state == "chunk_crlf":
            if len(buf) < 2:
                if buf and buf[:1] != b"\r":
                    raise StrictError("no CRLF after chunk data")
                return None
            if buf[:2] != b"\r\n":
                raise StrictError("no CRLF after chunk data")
            del buf[:2]
            self.state = "chunk_size"
            return None
        if self.state == "trailer":
            if buf[:2] == b"\r\n":
                del buf[:2]
                self.state = "head"
                return self._complete()
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise StrictError("trailer too large")
                return None
            _fields(bytes(buf[: end + 2]))  # trailer fields: syntax checked, then discarded
            del buf[: end + 4]
            self.state = "head"
            return self._complete()
        raise AssertionError(self.state)

    def _frame(self, request: Request) -> None:
        te = [v for n, v in request.headers if n.lower() == b"transfer-encoding"]
        cl = [v for n, v in request.headers if n.lower() == b"content-length"]
        hosts = [v for n, v in request.headers if n.lower() == b"host"]
        if len(hosts) != 1:
            raise StrictError("Host must appear exactly once")
        if te and cl:
            raise StrictError("Content-Length with Transfer-Encoding")
        if te:
            if len(te) != 1 or te[0].lower() != b"chunked":
                raise StrictError("Transfer-Encoding other than chunked")
            self.state = "chunk_size"
        elif cl:
            if len(cl) != 1 or not cl[0] or not all(c in b"0123456789" for c in cl[0]):
                raise StrictError("bad Content-Length")
            self.remaining = int(cl[0])
            self.state = "length" if self.remaining else "head"
        else:
            self.state = "head"
        self.body = bytearray()

    def _complete(self) -> Request:
        request = self.current
        assert request is not None
        request.body = bytes(self.body)
        self.current = None
        self.body = bytearray()
        return request


def _no_bare_cr_lf(partial: bytes) -> None:
    lines = partial.split(b"\r\n")
    for line in lines[:-1]:
        if b"\r" in line or b"\n" in line:
            raise StrictError("bare CR or LF")
    last = lines[-1]
    if b"\n" in last or b"\r" in last[:-1]:
        raise StrictError("bare CR or LF")


def _parse_head(head: bytes) -> Request:
    line, _, rest = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise StrictError("request line is not three parts separated by single spaces")
    method, target, version = parts
    if not method or not all(c in TCHAR for c in method):
        raise StrictError("bad method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise StrictError("bad version")
    if not target or not all(c in TARGET for c in target):
        raise StrictError("bad target characters")
    if target[:1] != b"/" and not (target == b"*" and method == b"OPTIONS"):
        raise StrictError("not origin-form")
    headers = _fields(rest[:-2])
    return Request(method, target, version, headers, raw_head=head)


def _fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """CRLF-terminated field lines (the final empty line already cut off)."""
    headers: list[tuple[bytes, bytes]] = []
    if not block:
        return headers
    if not block.endswith(b"\r\n"):
        raise StrictError("field block not CRLF-terminated")
    for line in block[:-2].split(b"\r\n"):
        if b"\r" in line or b"\n" in line:
            raise StrictError("bare CR or LF")
        if line[:1] in (b" ", b"\t"):
            raise StrictError("obs-fold")
        name, colon, value = line.partition(b":")
        if not colon or not name or not all(c in TCHAR for c in name):
            raise StrictError("bad field name")
        value = value.strip(b" \t")
        if not all(c in FIELD_CONTENT for c in value):
            raise StrictError("bad field value")
        headers.append((name, value))
    return headers


def _chunk_size(line: bytes) -> int:
    size, semi, ext = line.partition(b";")
    if not size or len(size) > 16 or not all(c in HEX for c in size):
        raise StrictError("bad chunk size")
    if semi:
        _chunk_ext(b";" + ext)
    return int(size, 16)


def _chunk_ext(ext: bytes) -> None:
    """``*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )``, without the BWS (strict)."""
    i = 0
    while i < len(ext):
        if ext[i : i + 1] != b";":
            raise StrictError("bad chunk extension")
        i += 1
        start = i
        while i < len(ext) and ext[i] in TCHAR:
            i += 1
        if i == start:
            raise StrictError("empty chunk extension name")
        if ext[i : i + 1] == b"=":
            i += 1
            if ext[i : i + 1] == b'"':
                i += 1
                while i < len(ext) and ext[i] != 0x22:
                    if ext[i] == 0x5C:
                        i += 1
                    elif ext[i] not in QDTEXT:
                        raise StrictError("bad quoted chunk extension")
                    i += 1
                if i >= len(ext):
                    raise StrictError("unterminated quoted chunk extension")
                i += 1
            else:
                start = i
                while i < len(ext) and ext[i] in TCHAR:
                    i += 1
                if i == start:
                    raise StrictError("empty chunk extension value")
